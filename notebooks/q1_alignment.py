# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (sightline)
#     language: python
#     name: python3
#   sightline:
#     needs: []
# ---

# %% [markdown]
# # Q1: do the models look where the experts look?
# Every model's attention / saliency maps — per layer, per head, per method — are scored
# against the expert boxes: IoU of the top-(100 − p)% pixels at a sweep of percentiles p,
# threshold-free coverage (attention mass inside the boxes), AUC and NSS (how well the
# map's values rank box pixels above the rest), the pointing game, and
# continuous distances to a soft box target. Each image is scored against the union of
# its boxes and against each box on its own. Naive baselines go through exactly the
# same path, so every model result reads against them.
#
# Maps are scored in each model's own input frame (its resize / crop), upsampled
# bilinearly from the patch grid to the working resolution; a centre crop drops the
# box parts outside it. With `metrics.frame: common` or `both`, the head-mean maps are
# also scored in a *common frame*: each map placed back on the whole image (zero
# attention where the model's crop saw nothing) against the uncropped boxes, so every
# model and baseline faces the same masks. Each table below says which frame it uses.

# %% tags=["parameters"]
# The demo profile's values (a build injects its own); run here, tables go to report/demo/interactive/tables/.
from sightline.notebook_defaults import default

dataset = default("dataset")
models = default("models")
extraction = default("extraction")
metrics = default("metrics")
stats = default("stats")
report = default("report")
finetune = default("finetune")
execution = default("execution")
sanity = default("sanity")
seed = default("seed")
tables_dir = default("tables_dir")

# %%
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from IPython.display import Markdown, display

from sightline import formatting, plots
from sightline.sanity import run_study
from sightline.studies import Study
from sightline.studies import alignment as q1
from sightline.studies import alignment_figures as figures

plots.setup()
study = Study.from_sections(tables_dir, dataset=dataset, models=models, extraction=extraction,
                            metrics=metrics, stats=stats, report=report, finetune=finetune,
                            execution=execution, sanity=sanity, seed=seed)
P = float(metrics["headline_percentile"])
plots.random_weights_banner(models)

# %% [markdown]
# ## Fine-tuning and extraction
# Where the profile has `finetune` runs (linear probe, LoRA, full; see Q2), they train first
# or come from their checkpoints. Every model's maps — frozen and each fine-tuned variant,
# through the same code — come from the HDF5 cache; only what it lacks is computed (one forward pass per
# batch captures every layer's attention), in this process or as Ray tasks (`execution`),
# with the same maps either way. Class-specific maps (Grad-CAM, Chefer relevance) explain
# one class logit per model, said below: a linear probe's where the model has one in
# `finetune.strategies`, else a classifier's own predicted class.

# %%
maps = q1.extract_maps(study)
study.write_table("finetune_runs.csv", maps.runs)
study.write_table("stores.csv", maps.stores)
for note in maps.notes:
    display(Markdown(note))
display(formatting.table(maps.sizes, digits=1))

# %% [markdown]
# ## Is the map about the model? The randomisation sanity check

# %%
sanity_summary, sanity_flags, sanity_steps = run_study(
    study.params.sanity, study.jobs, study.samples, study.names, cache_dir=extraction["cache_dir"],
    dataset_id=study.dataset_id, seed=seed, device=extraction["device"],
    batch_size=extraction["batch_size"], n_boot=stats["n_boot"])
study.write_table("sanity.csv", sanity_summary)
study.write_table("sanity_flags.csv", sanity_flags)
study.write_table("sanity_steps.csv", sanity_steps)
display(Markdown(q1.randomisation_sentence(sanity_flags, sanity_steps)))

# %% [markdown]
# ## Scoring
# One vectorised sweep per model and method (all layers together); the long table
# `tables/scores.parquet` holds every number below (image_id, model, variant, method, layer,
# head, target, feature, metric, threshold, value; head −1 = mean over heads or a head-less map),
# and `correct`: whether the variant's label head — the frozen model's linear probe, a
# fine-tuned run's head — predicts the image's label. It marks every map of that variant,
# CLS attention included (the probe reads the embedding the maps come from); it is empty for
# the baselines, for a model with no probe and for an image whose label the probe lacks.

# %%
scores = q1.score(study, maps.correct)
study.write_table("scores.parquet", scores.every)
display(Markdown(scores.sentence()))

# %% [markdown]
# The common frame (`tables/scores_common.parquet`, same columns, head-mean maps only):
# a squashing model's frame already is the whole image, so its rows are copied; a
# cropping model's maps are placed on the whole image and scored again.

# %%
if "common" in scores.frames:
    study.write_table("scores_common.parquet", scores.by_frame["common"])
    display(formatting.table(q1.frame_modes(study)))
by_layer = q1.layers(scores, P)
headline = q1.headline(scores, P, seed=seed)

# %% [markdown]
# ## Leaderboard
# Best layer per model and method at the headline percentile against the union of boxes
# (head mean). Choosing the best of many layers on the same images it is reported on is
# optimistic, so the headline number is **cross-fitted**: over 100 seeded halvings of the
# images, the layer is chosen on one half and scored on the other (and back); an image's
# cross-fitted IoU is the mean of its held-out scores, the estimate their mean over
# images, and the 95% CI a bootstrap over images of those values. Next to it: the
# in-sample best layer and its IoU, the optimism (in-sample − cross-fitted), how often
# the halves chose that layer, and at that layer the IoU as a fraction of the best any
# map could reach, coverage, the threshold-free ranking scores AUC (the map's values as a
# classifier of box pixels: 0.5 is chance) and NSS (mean z-scored map inside the boxes: 0 is
# chance), and the pointing game. Baselines (one map each: nothing to
# select) are in the same table, grey in the figure. Frame: each model's own; with
# `metrics.frame` common or both, the cross-fitted IoU in the common frame too. When the
# randomisation check ran on these same (frozen) weights (`sanity.models`), two last columns
# give it, empty for the maps not tested: the mean Spearman correlation with the original
# maps after the whole network was re-initialised (at the method's most similar layer), and
# `not_model_sensitive` when that exceeds `sanity.threshold`.

# %%
board = q1.leaderboard(scores, P, sanity_flags=sanity_flags, n_boot=stats["n_boot"], seed=seed)
leaderboard = board.table
study.write_table("leaderboard.csv", leaderboard)
for note in board.notes():
    display(Markdown(note))
display(formatting.table(leaderboard.drop(columns="kind"), caption=board.caption()))
display(Markdown(board.optimism()))

fig = figures.leaderboard(board)

# %% [markdown]
# ### Right and wrong predictions

# %%
if report["split_by_correct"]:
    display(Markdown(q1.BY_CORRECT_INTRO))
    split, no_probe = q1.by_correct(board, maps.correct)
    study.write_table("leaderboard_by_correct.csv", split)
    caption = q1.by_correct_caption(board, no_probe)
    display(formatting.table(split, digits=4, caption=caption) if len(split) else Markdown(caption))
else:
    display(Markdown("Not split (`report.split_by_correct` is off)."))

# %% [markdown]
# ### Beside the reference study
# The published numbers beside ours, where they are comparable.

# %%
comparison = q1.reference_comparison(study, headline, P)
study.write_table("reference_comparison.csv", comparison)
if q1.comparable(study):
    display(formatting.table(comparison, caption=q1.reference_note(study)))
else:  # numbers side by side would invite a comparison that means nothing
    display(Markdown(q1.reference_note(study)))

# %% [markdown]
# ## Layer by layer
# IoU at the headline percentile against the union, per layer (head mean), one panel
# per method; dashed lines are the baselines. Model frame.

# %%
study.write_table("iou_by_layer.csv", by_layer)
fig = figures.layers(by_layer, P)

# %% [markdown]
# ## The threshold sweep
# IoU at every percentile for each model's headline map and the baselines; the black
# line is the mean best IoU any map could reach given the boxes' areas (`max_iou`).
# Model frame. The percentile is fixed by the params (no best threshold is picked).

# %%
sweep_table, ceiling = q1.threshold_sweep(scores, headline)
study.write_table("threshold_sweep.csv", sweep_table)
fig, ax = plt.subplots(figsize=(plots.PAGE_WIDTH, 4), layout="constrained")
method_of = dict(zip(headline["label"], headline["method"], strict=True))
colours = plots.palette(headline["label"])  # one headline map per model: a colour per model
styles = plots.line_styles(headline.loc[headline["model"] != "baseline", "method"])
for label, rows in sweep_table.groupby("label", observed=True):
    ax.plot(rows["threshold"], rows["iou"], marker="o", ms=3, label=label, color=colours[label],
            ls="--" if plots.is_baseline(label) else styles[method_of[label]])
ax.plot(ceiling.index, ceiling.to_numpy(), color="black", lw=2, label="max IoU")
fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside right upper")
ax.set_xlabel("percentile p (the top 100 − p % of pixels are kept)")
ax.set_ylabel("IoU against the union")
plt.show()

# %% [markdown]
# ## Other binarisation conventions
# Papers threshold maps differently: DINO keeps the smallest set of pixels holding 60 % of a
# map's mass, Grad-CAM boxes the largest component above 15 % of the maximum, others use
# Otsu's threshold or Shared Interest's mean + 1 std (`metrics.rules`; definitions in
# docs/methods.md). Each rule's IoU is in `tables/scores.parquet` (`iou_mass`, `iou_max`,
# `iou_otsu`, `iou_std`); here each map's best layer under each, and how far the rankings
# agree (`tables/conventions.csv`, `tables/conventions_tau.csv`).

# %%
conventions, taus, sentence = q1.conventions(scores, P)
study.write_table("conventions.csv", conventions)
study.write_table("conventions_tau.csv", taus)
display(Markdown(sentence))
if len(taus):
    display(formatting.table(conventions, digits=3))
    display(formatting.table(taus, digits=3))

# %% [markdown]
# ## By image label and by feature type
# Headline maps only. Per image label (only where the dataset has labels): IoU against
# the union; per feature type: each region on its own as the
# target (feature types with fewer than 3 regions are left out). Model frame.

# %%
union_iou = q1.headline_iou(scores, headline, P)
per_style = q1.by_image_label(union_iou, {s.image_id: s.label for s in study.samples})
if study.dataset.has_labels:
    study.write_table("iou_by_style.csv", per_style.reset_index())
per_feature = q1.by_feature(q1.headline_iou(scores, headline, P, boxes=True), len(headline))
study.write_table("iou_by_feature.csv", per_feature.reset_index())
scale = {"vmin": 0, "vmax": float(np.nanmax([t.max().max() for t in (per_style, per_feature)
                                            if t.size] or [1.0]))}
panels = [(table, title, annotate) for table, title, annotate in (
    (per_style, f"by {study.dataset.label_name} (union)", True),
    (per_feature, "by feature type (single regions; values in tables/iou_by_feature.csv)", False))
    if table.size]
for grid, title, annotate in panels:
    fig, ax = plt.subplots(figsize=(plots.PAGE_WIDTH, 0.3 * len(grid) + 1.6),
                           layout="constrained")
    sns.heatmap(grid, annot=annotate, fmt=".2f", cmap="viridis", ax=ax, annot_kws={"fontsize": 8},
                cbar_kws={"label": f"IoU@{P:g}", "shrink": 0.8}, **scale)
    ax.set_title(f"IoU@{P:g} {title}", fontsize=10)
    ax.set_ylabel("")
    ax.set_xlabel("")
    ax.tick_params(labelsize=8)
if not panels:
    display(Markdown("No image labels, and no feature type with 3 regions or more: no breakdown."))

# %% [markdown]
# ## Which differences are real?
# Paired tests on the same images between the headline maps of all models and the
# baselines (IoU at the headline percentile, union): a Friedman test across all of
# them, then every pair with the Wilcoxon signed-rank test and the paired t-test, the
# bootstrap CI of the mean difference, paired effect sizes (rank-biserial r, Cohen's
# d_z), and Holm's correction within this family of pairs. The Wilcoxon test is run as
# `scipy.stats.wilcoxon(a, b, zero_method="wilcox", correction=True)` (pingouin's
# default): zero differences dropped; an exact p up to 50 pairs without ties; beyond
# that the normal approximation with tie correction **and a continuity correction**, so
# p is slightly larger (about the 4th digit) than plain scipy's default.
#
# Frame: the common frame when scored (`metrics.frame` common or both), so every map is
# judged against the same uncropped masks; otherwise each model's own frame. The
# headline maps are chosen on these images (see the leaderboard's optimism column).
# The table shows the 15 smallest p-values; all pairs are in `tables/model_pairs.csv`.

# %%
tests = q1.paired_tests(scores, headline, P, n_boot=stats["n_boot"], seed=seed)
for sentence in tests.sentences():
    display(Markdown(sentence))
study.write_table("model_pairs.csv", tests.pairs)
shown = ["a", "b", "n", "mean_diff", "ci_low", "ci_high", "p_wilcoxon", "p_holm", "rbc", "d_z"]
display(formatting.table(tests.pairs.sort_values("p_wilcoxon")[shown].head(15), digits=4))

# %% [markdown]
# ## Gallery: best, median and worst images
# Images ranked by the mean headline IoU over models; each row shows every model's
# headline map in its own input frame, with the expert boxes.

# %%
for kind, ids in q1.gallery(union_iou, report["gallery_size"]).items():
    fig = figures.gallery(study, headline, union_iou, kind, ids, P)

# %% [markdown]
# ## Summary table
# The main metrics for the headline maps (head mean, union; mean over images); every
# metric and threshold is in `tables/summary.csv`. Coverage is also the energy-based
# pointing game.

# %%
summary = q1.summary(scores, headline)
study.write_table("summary.csv", summary.reset_index())
display(formatting.table(summary.T[q1.summary_metrics(summary, P)]))
