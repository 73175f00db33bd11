# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (sightline)
#     language: python
#     name: python3
#   sightline:
#     needs: [q1_alignment]
#     requires: [training_pool]
# ---

# %% [markdown]
# # Q2: does fine-tuning move attention onto the expert features?
# Each model is trained on the 4-way style task (Romanesque, Gothic, Renaissance,
# Baroque) on the style-labelled pool — never on the annotated images or their
# churches — in up to three ways: a **linear probe** (backbone frozen: a zero-shift
# control), **LoRA** (low-rank adapters on the attention's query / value projections)
# and **full** fine-tuning. The fine-tuned variants' maps went through exactly the same
# extraction and scoring as the frozen models' (Q1's table, column `variant`); here they
# are paired with the frozen maps on the same annotated images.
#
# Grad-CAM targets the style logit of a classifier head: the linear probe's head for the
# frozen model, the fine-tuned head for the fine-tuned variants.

# %% tags=["parameters"]
# The demo profile's values (a build injects its own); run here, tables go to report/demo/interactive/tables/.
from sightline.notebook_defaults import default

dataset = default("dataset")
models = default("models")
extraction = default("extraction")
metrics = default("metrics")
stats = default("stats")
finetune = default("finetune")
report = default("report")
seed = default("seed")
tables_dir = default("tables_dir")

# %%
from IPython.display import Markdown, display

from sightline import formatting, paired_deltas, plots
from sightline.studies import Study
from sightline.studies import positive_control as pc
from sightline.studies import shift as q2

plots.setup()
study = Study.from_sections(tables_dir, dataset=dataset, models=models, extraction=extraction,
                            metrics=metrics, stats=stats, finetune=finetune, seed=seed)
P = float(metrics["headline_percentile"])
manifests = study.train(progress=False)  # all cached (Q1)
scores = study.read_table("scores.parquet")
if not manifests:
    display(Markdown("**No fine-tuning runs in `finetune.strategies`: nothing to compare.**"))

# %% [markdown]
# ## Training
# One stratified, church-disjoint train/val split per seed (recorded with its id in each
# run's manifest), shared by every model and strategy. The best epoch by validation
# accuracy is kept; validation accuracy both selects that epoch and is reported here, so
# it is slightly optimistic. Chance is 0.25 (four balanced-weight classes).

# %%
plots.random_weights_banner(models)

# %%
display(formatting.table(q2.split_table(study.splits), caption=(
    "The pool's train + val images split anew, church-disjoint and stratified by style "
    f"(val_fraction {study.params.finetune.val_fraction}); the dataset's own split files "
    "(00_data) hold a different, smaller val set. The pool's test images stay out of both.")))
runs_table = q2.runs_table(manifests)
study.write_table("finetune_runs.csv", runs_table)
display(formatting.table(q2.training_summary(runs_table)))

# %%
figure = q2.training_curves(manifests)

# %% [markdown]
# ## The shift
# Per model × strategy × method × layer × metric: the mean over annotated images of the
# fine-tuned value (averaged over seeds) minus the frozen value, against each image's
# union of boxes (head mean). Wilcoxon signed-rank and paired t on the per-image Δ,
# bootstrap 95% CI of the mean Δ resampling images (and seeds, with `finetune.seeds` > 1),
# Cohen's d_z, and Holm's
# correction across model × strategy × metric (per method, layer and threshold).
#
# **Verdict rule**, against a smallest effect size of interest per metric (the margin,
# `stats.sesoi`; printed below): *enhanced* if the Holm-adjusted Wilcoxon p < α **and**
# |Δ| reaches the margin, Δ pointing the better way (IoU and coverage up; MSE, KL and EMD
# down); *degraded* the same the other way; *equivalent* (no change worth the name) if two
# one-sided t-tests put Δ inside ±margin (its 90 % t-interval lies inside); *inconclusive*
# otherwise — a significant change smaller than the margin is not an enhancement. All rows
# are in `tables/q2_deltas.csv`.

# %%
plots.random_weights_banner(models)

# %%
deltas = paired_deltas.deltas(scores, headline_percentile=P, sesoi=stats["sesoi"],
                              alpha=stats["alpha"], n_boot=stats["n_boot"], seed=seed)
study.write_table("q2_deltas.csv", deltas)
display(Markdown(q2.margins_sentence(stats["sesoi"], deltas)))
headline = q2.headline(deltas, study.specs, P)
display(formatting.table(q2.fine_tuned(headline)[q2.SHOWN], digits=4))
if probe_rows := q2.probe_sentence(headline):
    display(Markdown(probe_rows))
if dataset["kind"] == "synthetic":
    display(Markdown(q2.LAST_LAYER_NOTE))

# %%
figure = q2.verdict_bars(headline, stats["sesoi"]["iou"], P)

# %% [markdown]
# ### The shift on right and wrong predictions
# With `report.split_by_correct`: the same Δ on the images the fine-tuned model's style head
# classifies right (in every seed) and on those it gets wrong (in every seed), for the
# headline maps at the headline percentile, with the two-sided Mann–Whitney U test of the
# per-image Δ between the two sets of images. A side with fewer than 10 images is reported
# (its mean Δ) but not tested. Linear probes are left out (Δ = 0); every row, all maps and
# layers, is in `tables/q2_deltas_by_correct.csv`.

# %%
if report["split_by_correct"]:
    by_correct = paired_deltas.deltas_by_correct(scores, headline_percentile=P)
    study.write_table("q2_deltas_by_correct.csv", by_correct)
    display(formatting.table(q2.headline_rows(by_correct, study.specs).drop(columns="threshold"),
                             digits=4, caption=q2.BY_CORRECT_CAPTION))
else:
    display(Markdown("Not split (`report.split_by_correct` is off)."))

# %% [markdown]
# ### Across the threshold sweep
# ΔIoU at every percentile for the headline maps (each model's own map at its last layer).

# %%
figure = q2.sweep_figure(deltas, study.specs)

# %% [markdown]
# ## The positive control (synthetic data only)
# On the demo data the style is planted: the generator draws everything but the
# diagnostic parts (sky, ground, wall and outline, tower, trees, door, plaques, colours,
# brightness) the same way for every style, and the parts are exactly the expert boxes.
# So a model that learns the styles *must* use the parts, and its attention should move
# onto the boxes. Unlike the rest of this notebook, this is a finding: trained from random
# weights, the models learn or fail to learn from this data alone.
#
# **The protocol, fixed before looking at the numbers.**
#
# 1. **Gate: did the run learn?** Accuracy on the pool's held-out test split (never
#    trained on and never used to pick the epoch; validation accuracy, which picks it, is
#    the maximum over epochs and reads above chance even for a model that learned
#    nothing), one-sided binomial test against chance (0.25) at α. The generator also
#    re-renders the very same images with the parts left out (same random stream: every
#    other pixel equal); the full run's model and recipe trained on those (the
#    *parts-removed twin*) must fail the gate.
# 2. **One primary endpoint per run that passes the gate**: coverage (attention mass inside
#    the union of boxes) of the run's own map (CLS attention for a ViT, Grad-CAM of the
#    style logit for a CNN), trained against untrained (its starting point), paired on the
#    annotated images, Wilcoxon signed-rank, Holm over these primary tests only. The map is
#    read at its best layer **chosen out of fold** (two-fold cross-fitting over 100 seeded
#    halvings of the images: each image's value comes from the layer that was best for the
#    trained model on the *other* half; the untrained model is read at that same layer).
#    The verdict needs Holm p < α **and** |Δ| ≥ the smallest effect size of interest
#    (`stats.sesoi`); *equivalent* needs the 90 % t-interval inside ±margin (TOST).
# 3. **Null controls: runs that fail the gate** (expected: LoRA on a random backbone and
#    the parts-removed twin; a run that passes the gate is a primary test whatever was
#    expected of it, as the table's `role` says) are tested for *no* movement: the same
#    endpoint, read by TOST against the same margin (*equivalent* is the expected outcome).
# 4. **Everything else is secondary** (IoU@p, the other map kinds, against the centre
#    baseline): raw p and CIs, no verdict.

# %%
control = pc.run(study, scores)
if control:
    study.write_table("q2_positive_control_accuracy.csv", control.accuracy)
    display(formatting.table(control.accuracy, digits=4))
else:
    display(Markdown(pc.absence(study)))

# %%
if control:
    study.write_table("q2_positive_control.csv", control.table)
    display(Markdown("**Primary endpoints and null controls** (coverage of each run's own map "
                     "at its out-of-fold layer, trained − untrained):"))
    display(formatting.table(control.endpoints.drop(columns=["p_ttest"]), digits=4))
    display(Markdown(f"Secondary comparisons ({len(control.secondary)} rows: raw p, no "
                     "verdict) are in `tables/q2_positive_control.csv`; the largest per run:"))
    display(formatting.table(control.largest_secondary(), digits=4))

# %%
if control:
    display(Markdown(control.summary()))
    display(Markdown("Per style, Δ coverage at the chosen layer (in sample, a picture not a "
                     "test: a run that learned some styles only moves on those):"))
    display(control.per_style(study.dataset))

# %%
if control:  # a heading only where the control ran: no empty section on other data
    display(Markdown(
        "### Layer by layer\nMean IoU@p against the union per layer, untrained (dashed) and "
        "trained (solid), for each trained run's per-layer maps (a ViT's CLS attention and "
        "rollout, a CNN's Grad-CAM per stage; a ViT's Grad-CAM has one layer and is in the "
        "table above); grey: the centre baseline. In sample: a picture of where things moved, "
        "not a test."))
    figure = pc.layer_figure(scores, pc.trained_runs(manifests), study.specs, P)

# %% [markdown]
# ## Where attention moved
# ### By style and by feature type
# Headline maps: per style, the mean ΔIoU against the union; per feature type, the mean
# ΔIoU against each box on its own, with a Kruskal–Wallis test of whether the feature
# types moved differently. The test treats every box as independent, though the boxes of
# one image share its map: read its p as a screen, not as a confirmatory test.

# %%
plots.random_weights_banner(models)

# %%
per_image = q2.headline_deltas(scores, study.specs, P, boxes=False)
if len(per_image) and study.dataset.has_labels:
    by_style, caption = q2.by_style(per_image, study.dataset, P)
    display(formatting.table(by_style, caption=caption))
per_box = q2.headline_deltas(scores, study.specs, P, boxes=True)
if len(per_box):
    by_feature, caption = q2.by_feature(per_box, P)
    study.write_table("q2_deltas_by_feature.csv", by_feature.reset_index())
    display(formatting.table(by_feature, caption=caption))

# %% [markdown]
# ### Shift maps
# Fine-tuned minus frozen map (both min–max scaled per image) on example images: red where
# the fine-tuned model looks more, blue where it looks less; the expert boxes on top. Each
# model's own map at its last layer, or on the demo data at the layer the positive control
# chose out of fold for IoU.

# %%
examples = [s.image_id for s in study.samples[: report["gallery_size"]]]
figures = q2.shift_maps(study, pc.trained_runs(manifests), examples,
                        control and control.chosen_layers(f"iou@{P:g}"))

# %% [markdown]
# ### Best layer before and after, and the heads that changed most
# The layer with the highest mean IoU@p (union, head mean) per method, frozen vs
# fine-tuned (selected on these same images, so optimistic for both); and for per-head
# maps (CLS / probe attention) the heads whose mean IoU@p moved most.

# %%
best = q2.best_layers(scores, P)
if len(best):
    display(formatting.table(best))
changed = q2.heads_changed(scores, P)
if len(changed):
    display(formatting.table(changed))

# %% [markdown]
# ## Does a better classifier look more where the experts look?
# Held-out test accuracy (the pool's test split; mean over seeds) against ΔIoU@p of every
# map kind at its last layer, per fine-tuned run. Linear probes are left out: their
# attention maps, and their Grad-CAM (the frozen model's Grad-CAM reads the same probe
# head), equal the frozen model's by construction, so their Δ is 0 whatever the accuracy.
# A rank correlation is given only over at least 6 runs (each run's own map kind), never
# over map kinds of the same run as if they were independent.

# %%
plots.random_weights_banner(models)

# %%
accuracy = q2.held_out_accuracy(manifests, study.dataset, control and control.evaluations)
points = q2.accuracy_points(deltas, accuracy, P)
if len(points):
    figure = q2.accuracy_figure(points, P)
    display(Markdown(q2.accuracy_sentence(points, study.specs)))
