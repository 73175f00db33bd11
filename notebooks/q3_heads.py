# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (sightline)
#     language: python
#     name: python3
#   sightline:
#     needs: [q1_alignment]
#     requires: [attention_heads]
# ---

# %% [markdown]
# # Q3: do single attention heads specialise?
# Do individual heads align with the expert boxes better than their siblings, and with
# which feature types? Read from the Q1 metrics table (no map is recomputed).
#
# Readouts: for CLS-token models (DINOv2, DINOv3, MAE, CLIP) a head's map is its CLS
# attention row over the patches (method `cls`). The SigLIP family has no CLS token:
# its heads are the pooling head's probe heads (method `probe`), a different readout
# that sits after the last block — comparable within a model, not head-for-head with
# CLS heads. All scores are in each model's own input frame (`tables/scores.parquet`).

# %% tags=["parameters"]
# The demo profile's values (a build injects its own); run here, tables go to report/demo/interactive/tables/.
from sightline.notebook_defaults import default

dataset = default("dataset")
models = default("models")
metrics = default("metrics")
heads = default("heads")
stats = default("stats")
report = default("report")
seed = default("seed")
tables_dir = default("tables_dir")

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from sightline import formatting, plots
from sightline.studies import Study
from sightline.studies import heads as hd

plots.setup()
study = Study.from_sections(tables_dir, dataset=dataset, models=models, metrics=metrics,
                            heads=heads, stats=stats, report=report, seed=seed)
P, ALPHA = study.params.metrics.headline_percentile, study.params.stats.alpha
budget = {"n_permutations": study.params.heads.n_permutations, "alpha": ALPHA}
scores = hd.head_scores(study.read_table("scores.parquet"), variant="frozen")  # or e.g. "full.s0"
display(Markdown(hd.summary(scores)))
plots.random_weights_banner(study.choices)

# %% [markdown]
# ## Head rankings
# Per model: every (layer, head) by its mean IoU at the headline percentile against the union of boxes, its
# mean rank among the model's heads per image (1 = best) and how often it is in an
# image's top 3. Heatmaps show the mean per layer × head.

# %%
ranking = hd.head_ranking(scores, metric="iou", threshold=P)
display(formatting.table(ranking.groupby(["model", "method"]).head(3).drop(columns=["variant"])))
hd.ranking_heatmaps(ranking, P)
plt.show()

# %% [markdown]
# ## How concentrated is alignment — and is it more than chance?
# Best head vs the median head, the share of the total held by the top 5 heads, and a
# permutation test: heads shuffled within each image (are the best heads better than
# the best of exchangeable heads?). The best of a hundred or more heads, scored on the
# images it was picked on, is optimistic; `best_cross_fit` is its honest counterpart:
# over 100 seeded halvings of the images the head is chosen on one half and scored on
# the other (and back), averaged (`sightline.selection`); `head_stability` is how often
# the halves chose the in-sample best head.
# `p_holm` adjusts the permutation p over the table's rows. A permutation p is at least
# 1 / (n + 1), so with m tests Holm's smallest p is m / (n + 1): the number of
# permutations (`heads.n_permutations`) must exceed m / α − 1 for any effect, however
# strong, to pass; the line under each test table says whether it does.

# %%
concentrated = hd.concentration_table(scores, ranking, percentile=P, seed=seed,
                                      n_permutations=budget["n_permutations"])
study.write_table("head_concentration.csv", concentrated)
display(hd.concentration_view(concentrated))
display(Markdown(hd.resolution_note(len(concentrated), "(one per row)", **budget)))
untrained = [study.names[c.key] for c in study.choices if c.weights == "random"]
if note := hd.random_weight_note(concentrated, untrained, ALPHA):
    display(Markdown(note))

# %% [markdown]
# ## Heads × feature types
# Mean single-box IoU (headline percentile) of each head on each feature type with at least
# `heads.min_boxes` boxes; the best head per feature type; and the specialisation
# test: feature labels shuffled across boxes, statistic = how far the most lifted head
# stands out on this feature beyond its own average (so a head good at everything is
# no specialist). `best_cross_fit`: the best head per feature type chosen on the boxes
# of half the images and scored on the other half's, as above.

# %%
features = hd.feature_heads(scores, percentile=P, min_boxes=study.params.heads.min_boxes,
                            n_permutations=budget["n_permutations"], seed=seed)
study.write_table("best_head_per_feature.csv", features.best)
if features.skipped:
    display(Markdown(features.skipped))
else:
    display(features.view())
    if features.tests():
        display(Markdown(hd.resolution_note(
            features.tests(), "per model and readout (one per feature type)", **budget)))
    hd.feature_heatmaps(features.matrix, P)
    plt.show()

# %% [markdown]
# ## The tidy heads table
# `tables/heads.parquet`: per model, variant, method, layer, head and feature (or
# union), the mean score and rank statistics for IoU at the headline percentile and coverage. Fine-tuned
# variants drop into the same table through the `variant` column.

# %%
heads_table = hd.tidy_table(scores, percentile=P, min_boxes=study.params.heads.min_boxes)
study.write_table("heads.parquet", heads_table)
display(Markdown(f"{len(heads_table):,} rows."))

# %% [markdown]
# ## The best head at work
# For each model, its best head's map on the images where it wins most and fails most.

# %%
picks = hd.gallery_picks(scores, concentrated, percentile=P, size=study.params.report.gallery_size)
stores = study.read_table("stores.csv").set_index(["model", "variant"])["store"]
hd.best_head_gallery(picks, samples=study.samples, stores=stores, geometries=study.geometries)
plt.show()
