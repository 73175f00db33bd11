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
# Defaults: the demo profile (params/demo.yaml), paths from the project root, so this
# notebook runs as is in JupyterLab once `python build.py` has made the demo data; a
# build injects its own profile's values after this cell. Run here, the notebook writes its
# tables to report/demo/interactive/tables/ (set tables_dir to change it): the build's
# report/demo/tables/, which the report and the explorer read, stays as the build made it.
from sightline.project import default

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
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from sightline import data, extract, formatting, plots, scoring, selection
from sightline import finetune as ft
from sightline import models as registry
from sightline import stats as st
from sightline.config import Execution, Finetune, ModelChoice, Sanity
from sightline.sanity import run_study

plots.setup()
tables = Path(tables_dir)
tables.mkdir(parents=True, exist_ok=True)
P = float(metrics["headline_percentile"])
wc = data.load_dataset(dataset)
samples = wc.samples
dataset_id = data.dataset_fingerprint(dataset)
choices = [ModelChoice(**m) for m in models]
names = {c.key: extract.model_name(c) for c in choices}
plots.random_weights_banner(models)

# %% [markdown]
# ## Fine-tuning and extraction
# The `finetune` runs (linear probe, LoRA, full; see Q2) train first, or come from their
# checkpoints. Every model's maps — frozen and each fine-tuned variant, through the same
# code — come from the HDF5 cache; only what it lacks is computed (one forward pass per
# batch captures every layer's attention), in this process or as Ray tasks (`execution`),
# with the same maps either way. Grad-CAM and Chefer relevance explain the style logit of
# a classifier head: the linear probe's for the frozen model, so a model with no linear
# probe in `finetune.strategies` gets neither (and a CNN then no map at all).

# %%
recipe, engine = Finetune(**finetune), Execution(**execution)
runs = ft.plan(choices, recipe, seed)
if runs and not wc.has_pool:
    display(Markdown(f"No fine-tuning: this {wc.kind} dataset has no labelled training pool, so "
                     "the `finetune.strategies` runs are skipped and the models stay frozen."))
    runs = []
manifests = ft.train_all(runs, ft.splits_for(wc, dataset_id, recipe, [r.seed for r in runs]),
                         recipe, model_seed=seed, execution=engine)
pd.DataFrame(ft.runs_table(manifests)).to_csv(tables / "finetune_runs.csv", index=False)
jobs = ft.map_jobs(choices, manifests, cache_dir=extraction["cache_dir"], dataset_id=dataset_id,
                   seed=seed)
extract.extract_models(samples, list(jobs.values()), batch_size=extraction["batch_size"],
                       device=extraction["device"], seed=seed, execution=engine)
correct_of = {key: extract.style_correct(job, samples, batch_size=extraction["batch_size"],
                                        device=extraction["device"]) for key, job in jobs.items()}
variant_stores = {key: job.store for key, job in jobs.items()}
geometries = {names[c.key]: registry.spec_for(c).geometry for c in choices}
without = [names[c.key] for c in choices if (names[c.key], "frozen") not in variant_stores]
if without:
    display(Markdown(f"No maps for {', '.join(without)}: Grad-CAM is its only method and it has "
                     "no linear probe (add `linear_probe` for it under `finetune.strategies`)."))
VARIANT = "frozen"  # which variant Q1's tables and figures read (Q2 compares them all)
stores = {n: s for (n, v), s in variant_stores.items() if v == VARIANT}
pd.DataFrame([{"model": n, "variant": v, "store": str(s.path)}
              for (n, v), s in variant_stores.items()]).to_csv(tables / "stores.csv", index=False)
baseline_store = extract.store_for(extraction["cache_dir"], dataset_id, "baseline", "none")
extract.extract_baselines(samples, metrics["baselines"], baseline_store, seed=seed)
display(formatting.table(pd.DataFrame(
    [{"model": n, "map kinds": len(s.keys()), "images": len(s.image_ids()),
      "KiB per image": s.nbytes_per_image() / 1024} for n, s in stores.items()]
), digits=1))

# %% [markdown]
# ## Is the map about the model? The randomisation sanity check
# For the models in `sanity.models`, the weights are re-initialised from the top down
# (head, last block, ..., first block, stem) and every map is extracted again after each
# step, cached like every other map (Adebayo et al. 2018; `sightline.sanity`, notebook Q4).
# A method whose maps keep a mean Spearman correlation above `sanity.threshold` with the
# original after the whole network is re-initialised is flagged *not model-sensitive*
# beside the leaderboard below.

# %%
sanity_summary, sanity_flags, sanity_steps = run_study(
    Sanity(**sanity), jobs, samples, names, cache_dir=extraction["cache_dir"], dataset_id=dataset_id,
    seed=seed, device=extraction["device"], batch_size=extraction["batch_size"],
    n_boot=stats["n_boot"])
sanity_summary.to_csv(tables / "sanity.csv", index=False)
sanity_flags.to_csv(tables / "sanity_flags.csv", index=False)
sanity_steps.to_csv(tables / "sanity_steps.csv", index=False)
fresh = int((sanity_steps["extracted"] > 0).sum()) if len(sanity_steps) else 0
display(Markdown(f"Randomisation test: {sanity_flags['model'].nunique()} model(s), {fresh} of "
                 f"{len(sanity_steps)} steps extracted in this run (the others from the cache)."))

# %% [markdown]
# ## Scoring
# One vectorised sweep per model and method (all layers together); the long table
# `tables/scores.parquet` holds every number below (image_id, model, variant, method, layer,
# head, target, feature, metric, threshold, value; head −1 = mean over heads or a head-less map),
# and `correct`: whether the variant's style head — the frozen model's linear probe, a
# fine-tuned run's head — predicts the image's style. It marks every map of that variant,
# CLS attention included (the probe reads the embedding the maps come from); it is empty for
# the baselines, for a model with no probe and for an image whose label is no main style.

# %%
R = metrics["resolution"]
percentiles = metrics["percentiles"]
targets_by_geometry = {}
frames = []
for (name, variant), store in [*variant_stores.items(), (("baseline", "baseline"), baseline_store)]:
    geometry = extract.BASELINE_GEOMETRY if name == "baseline" else geometries[name]
    if geometry not in targets_by_geometry:
        targets_by_geometry[geometry] = scoring.build_targets(samples, geometry, R)
    frames.append(scoring.mark_correct(
        scoring.score_store(store, targets_by_geometry[geometry], model=name, variant=variant,
                            percentiles=percentiles, resolution=R),
        correct_of.get((name, variant))))
scores = scoring.tidy(pd.concat(frames, ignore_index=True))
scores.to_parquet(tables / "scores.parquet", index=False)
scores = scores[scores["variant"].isin([VARIANT, "baseline"])]
display(Markdown(f"{len(scores):,} scores: {scores['model'].nunique() - 1} models and the "
                 f"baselines on {len(samples)} images, scored against each image's union of expert "
                 f"regions and each of the {sum(len(s.boxes) for s in samples)} regions on its own."))

# %% [markdown]
# The common frame (`tables/scores_common.parquet`, same columns, head-mean maps only):
# a squashing model's frame already is the whole image, so its rows are copied; a
# cropping model's maps are placed on the whole image and scored again.

# %%
FRAMES = {"model": ["model"], "common": ["common"], "both": ["model", "common"]}[metrics["frame"]]
scores_by_frame = {"model": scores}
if "common" in FRAMES:
    common_targets = scoring.build_targets(samples, scoring.COMMON_FRAME, R)
    common = [scores[(scores["head"] == -1) & scores["model"].isin(
        [n for n in ["baseline", *stores] if n == "baseline" or geometries[n].mode == "squash"])]]
    for name, store in stores.items():
        if geometries[name].mode == "crop":
            common.append(scoring.mark_correct(scoring.score_store_common(
                store, common_targets, geometries[name], model=name, variant="frozen",
                percentiles=percentiles, resolution=R), correct_of.get((name, "frozen"))))
    scores_by_frame["common"] = scoring.tidy(pd.concat(common, ignore_index=True))
    scores_by_frame["common"].to_parquet(tables / "scores_common.parquet", index=False)
    display(formatting.table(pd.DataFrame([{"model": n, "frame": geometries[n].mode,
                                            "common-frame scores": "re-scored"
                                            if geometries[n].mode == "crop" else "= own frame"}
                                           for n in stores])))

# %%
by_metric = {m: rows for m, rows in scores[scores["head"] == -1].groupby("metric", observed=True)}


def pick(metric, threshold=None, *, boxes=False, frame="model"):
    """Head-mean (or head-less) rows of one metric against the union, or single boxes."""
    rows = by_metric[metric] if frame == "model" else scores_by_frame[frame]
    rows = rows[(rows["head"] == -1) & (rows["metric"] == metric)]
    rows = rows[(rows["target"] != "union") if boxes else (rows["target"] == "union")]
    if threshold is not None:
        rows = rows[np.isclose(rows["threshold"], threshold)]
    return rows


def label(frame):
    return frame["model"].astype(str) + " · " + frame["method"].astype(str)


iou = pick("iou", P)
by_layer = (iou.groupby(["model", "method", "layer"], observed=True)["value"].mean()
            .rename("iou").reset_index())
best = by_layer.loc[by_layer.groupby(["model", "method"], observed=True)["iou"].idxmax()]
best = best.assign(label=label(best)).reset_index(drop=True)
# One headline map per model (its best method and layer, in-sample) and per baseline, and
# its cross-fitted IoU: method and layer chosen on half the images, scored on the other.
model_choice, _ = selection.cross_fit(iou[iou["model"] != "baseline"], by=["model", "variant"],
                                      candidate=["method", "layer"], seed=seed)
headline = pd.concat([
    model_choice.rename(columns={"in_sample": "iou"}),
    best[best["model"] == "baseline"].assign(cross_fit=lambda b: b["iou"]),
]).sort_values("cross_fit", ascending=False).reset_index(drop=True)
headline = headline.assign(label=label(headline))
key = ["model", "method", "layer"]

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
def per_image(metric, row, threshold=None):
    """One map's per-image values (model frame) of the in-sample best layer of ``row``."""
    rows = pick(metric, threshold)
    rows = rows[(rows["model"] == row.model) & (rows["method"] == row.method)
                & (rows["layer"] == row.layer)]
    return rows.set_index("image_id")["value"]


honest = {}  # frame -> (per group summary, per image cross-fitted values)
for frame in FRAMES:
    honest[frame] = selection.cross_fit(pick("iou", P, frame=frame),
                                        by=["model", "variant", "method"], candidate=["layer"],
                                        seed=seed)
summary_model, per_image_model = honest[FRAMES[0]]
board = []
for row in summary_model.itertuples():
    held_out = per_image_model[(per_image_model["model"] == row.model)
                               & (per_image_model["method"] == row.method)]["value"]
    low, high = st.bootstrap_ci(held_out.to_numpy(), n_boot=stats["n_boot"], seed=seed)
    entry = {
        "model": row.model, "method": row.method,
        f"IoU@{P:g} cross-fitted": row.cross_fit, "CI low": low, "CI high": high,
        "best layer (in-sample)": row.layer, f"IoU@{P:g} in-sample": row.in_sample,
        "optimism": row.optimism, "layer stability": row.stability,
    }
    if len(FRAMES) > 1:
        other = honest[FRAMES[1]][0].set_index(["model", "method"])
        entry[f"IoU@{P:g} cross-fitted, {FRAMES[1]} frame"] = other.loc[(row.model, row.method),
                                                                       "cross_fit"]
    entry.update({
        f"IoU@{P:g} / max": per_image("iou_rel", row, P).mean(),
        "coverage": per_image("coverage", row).mean(),
        "AUC": per_image("auc", row).mean(), "NSS": per_image("nss", row).mean(),
        "pointing game": per_image("pointing_game", row).mean(),
        "n": int(row.n), "kind": "baseline" if row.model == "baseline" else "model",
    })
    board.append(entry)
HEADLINE = f"IoU@{P:g} cross-fitted"
SANITY = "Spearman after full randomisation"
leaderboard = pd.DataFrame(board).sort_values(HEADLINE, ascending=False, ignore_index=True)
tested = sanity_flags[sanity_flags["variant"] == VARIANT]  # the weights this table's maps are of
if len(tested):
    leaderboard = leaderboard.merge(
        tested.rename(columns={"mean": SANITY})[["model", "method", SANITY, "not_model_sensitive"]],
        on=["model", "method"], how="left")
leaderboard.to_csv(tables / "leaderboard.csv", index=False)
display(Markdown(f"Frame of the headline column: **{FRAMES[0]}**."))
if len(sanity_flags) and not len(tested):
    display(Markdown(
        f"The randomisation check ran on {', '.join(sorted(set(sanity_flags['variant'])))} "
        f"weights, not on the {VARIANT} ones this table scores, so it has no columns here: "
        "its verdicts are in the section above and in Q4."))
unscored = leaderboard[leaderboard["n"] < len(samples)]
display(formatting.table(leaderboard.drop(columns="kind"), caption=(
    f"n: images with a score, of {len(samples)}"
    + (" (" + ", ".join(f"{r.model} · {r.method} {r.n}" for r in unscored.itertuples())
       + ": on the others the map is zero everywhere — Grad-CAM clips negative evidence to 0 — "
       "and an all-zero map has no top pixels, so no score)" if len(unscored) else "")
    + ". Cross-fitted: the layer chosen on one half of the images, scored on the other, "
    f"over {selection.N_SPLITS} seeded halvings.")))
optimism = leaderboard[leaderboard["kind"] == "model"]["optimism"]
display(Markdown(f"In-sample selection of the best layer overstates IoU@{P:g} by "
                 f"{optimism.mean():.3f} on average (up to {optimism.max():.3f}) on these "
                 f"{int(leaderboard['n'].max())} images."))

fig, ax = plt.subplots(figsize=(8, 0.28 * len(leaderboard) + 1))
values = leaderboard[HEADLINE]
ax.barh(label(leaderboard), values,
        color=np.where(leaderboard["kind"] == "baseline", "#999999", "#4c72b0"),
        xerr=[values - leaderboard["CI low"], leaderboard["CI high"] - values])
ax.scatter(leaderboard[f"IoU@{P:g} in-sample"], label(leaderboard), marker="|", s=120,
           color="black", zorder=3, label="in-sample best layer")
ax.invert_yaxis()
ax.legend(fontsize=8, loc="lower right")
ax.set_xlabel(f"IoU@{P:g} against the union of boxes (cross-fitted best layer, 95% CI; "
              f"{FRAMES[0]} frame)")
fig.tight_layout()

# %% [markdown]
# ### Right and wrong predictions
# With `report.split_by_correct`: each model's leaderboard maps on the images its linear
# probe classifies right and on those it gets wrong (the cross-fitted per-image IoU of the
# headline column), with the Mann–Whitney U test between the two sets of images. A side with
# fewer than 10 images is reported (its mean) but not tested. Models with no probe, and the
# baselines, have no prediction and are left out. The p-values are per row and uncorrected
# for the number of rows: read them as a screen, not as findings.

# %%
if report["split_by_correct"]:
    split_rows = []
    for row in summary_model.itertuples():
        correct = correct_of.get((row.model, VARIANT))
        if correct is None:
            continue
        held_out = per_image_model[(per_image_model["model"] == row.model)
                                   & (per_image_model["method"] == row.method)]
        side = held_out["image_id"].map(correct)  # True, False or None (no main style)
        split_rows.append({"model": row.model, "method": row.method, **st.split_comparison(
            held_out["value"][side.eq(True)], held_out["value"][side.eq(False)])})
    by_correct = pd.DataFrame(split_rows, columns=["model", "method", "n_right", "n_wrong",
                                                   "mean_right", "mean_wrong", "diff", "p_mwu",
                                                   "note"])
    by_correct.to_csv(tables / "leaderboard_by_correct.csv", index=False)
    no_probe = sorted({r.model for r in summary_model.itertuples()
                       if r.model != "baseline" and correct_of.get((r.model, VARIANT)) is None})
    display(formatting.table(by_correct, digits=4, caption=(
        f"{HEADLINE} on the images the probe gets right / wrong (n images per side); diff: "
        "mean right − mean wrong; p: "
        f"two-sided Mann–Whitney U, only where both sides have {st.MIN_SIDE} images or more"
        + (f". No probe, no prediction: {', '.join(no_probe)}" if no_probe else "") + ".")))
else:
    display(Markdown("Not split (`report.split_by_correct` is off)."))

# %% [markdown]
# ### Beside the reference study
# Published frozen best-layer IoU@90 on the 139 real images (ssl_wikichurches; chosen
# in-sample, like our in-sample column). Only comparable in the `wikichurches` profile
# with pretrained weights; on the demo the models are random and the data synthetic.
# Ours: each model's headline map (best method and layer), model frame.

# %%
REFERENCE_IOU90 = {"dinov3": 0.133, "resnet50": 0.090, "dinov2": 0.082, "siglip": 0.074,
                   "mae": 0.070, "clip": 0.049, "siglip2": 0.047,
                   "dinov2_reg": 0.082, "resnet50_tv": 0.090}  # the study's own checkpoints
ours = headline.set_index("model")
comparison = pd.DataFrame({
    "model": [names[c.key] for c in choices],
    "weights": [c.weights for c in choices],
    "ours: best method · layer": [f"{ours.loc[names[c.key], 'method']} · "
                                  f"{ours.loc[names[c.key], 'layer']}" for c in choices],
    f"ours: IoU@{P:g} in-sample": [ours.loc[names[c.key], "iou"] for c in choices],
    f"ours: IoU@{P:g} cross-fitted": [ours.loc[names[c.key], "cross_fit"] for c in choices],
    "reference study IoU@90": [REFERENCE_IOU90.get(c.key, np.nan) for c in choices],
})
comparison.to_csv(tables / "reference_comparison.csv", index=False)
if dataset["kind"] != "wikichurches" or all(c.weights == "random" for c in choices):
    display(Markdown(  # numbers side by side would invite a comparison that means nothing
        "Not shown: this profile scores random-weight models on synthetic data, so its numbers "
        "are not comparable with the published ones (both are in "
        "`tables/reference_comparison.csv`)."))
else:
    display(formatting.table(comparison, caption=(
        f"Cross-fitted: each model's method and layer chosen together on one half of the "
        f"{len(samples)} images and scored on the other, over {selection.N_SPLITS} seeded "
        "halvings (the leaderboard chooses only the layer, per method).")))

# %% [markdown]
# ## Layer by layer
# IoU at the headline percentile against the union, per layer (head mean), one panel
# per method; dashed lines are the baselines. Model frame.

# %%
layered = by_layer[by_layer["model"] != "baseline"]
methods_present = sorted(layered["method"].unique())
cols = min(3, len(methods_present))
rows_n = int(np.ceil(len(methods_present) / cols))
fig, axes = plt.subplots(rows_n, cols, figsize=(plots.PAGE_WIDTH, 2.4 * rows_n + 1.2),
                         squeeze=False, sharey=True, layout="constrained")
baseline_rows = best[best["model"] == "baseline"]
colours = plots.palette([*layered["model"].unique(), *baseline_rows["method"]])
dashes = dict(zip(sorted(baseline_rows["method"]), ["--", ":", "-.", (0, (5, 2))], strict=False))
for ax, method in zip(axes.flat, methods_present, strict=False):
    sub = layered[layered["method"] == method]
    for model, rows in sub.groupby("model", observed=True):
        ax.plot(rows["layer"], rows["iou"], marker="o", ms=3, color=colours[model], label=model)
    for b in baseline_rows.itertuples():
        ax.axhline(b.iou, ls=dashes[b.method], lw=1, color=colours[b.method])
    ax.set_title(method, fontsize=9)
    ax.set_xlabel("layer", fontsize=8)
    ax.set_xticks(sorted(sub["layer"].unique()))
    ax.tick_params(labelsize=7)
    ax.set_ylabel(f"IoU@{P:g}", fontsize=8)
for ax in axes.flat[len(methods_present):]:
    ax.axis("off")
handles = [plt.Line2D([], [], color=colours[m], marker="o", label=m)
           for m in sorted(layered["model"].unique())]
handles += [plt.Line2D([], [], color=colours[b], ls=dashes[b], label=f"baseline: {b}")
            for b in sorted(baseline_rows["method"])]
fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8)
by_layer.to_csv(tables / "iou_by_layer.csv", index=False)

# %% [markdown]
# ## The threshold sweep
# IoU at every percentile for each model's headline map and the baselines; the black
# line is the mean best IoU any map could reach given the boxes' areas (`max_iou`).
# Model frame. The percentile is fixed by the params (no best threshold is picked).

# %%
sweep_rows = pick("iou").merge(headline[key + ["label"]], on=key)
sweep_table = (sweep_rows.groupby(["label", "threshold"], observed=True)["value"].mean()
               .rename("iou").reset_index())
sweep_table.to_csv(tables / "threshold_sweep.csv", index=False)
ceiling = pick("iou").merge(pick("iou_rel"), on=["image_id", *key, "threshold"])
ceiling = (ceiling.assign(max_iou=ceiling["value_x"] / ceiling["value_y"])
           .groupby("threshold")["max_iou"].mean())
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
# ## By image label and by feature type
# Headline maps only. Per image label (WikiChurches: the style; only where the dataset
# has labels): IoU against the union; per feature type: each region on its own as the
# target (feature types with fewer than 3 regions are left out). Model frame.

# %%
label_of = {s.image_id: s.label for s in samples}
head_iou = iou.merge(headline[key + ["label"]], on=key)
per_style = head_iou.assign(image_label=head_iou["image_id"].map(label_of)).pivot_table(
    index="label", columns="image_label", values="value", aggfunc="mean", observed=True)
per_style.columns.name = None
if wc.has_labels:
    per_style.to_csv(tables / "iou_by_style.csv")
box_iou = pick("iou", P, boxes=True).merge(headline[key + ["label"]], on=key)
counts = box_iou.groupby("feature", observed=True)["image_id"].size() / len(headline)
per_feature = box_iou[box_iou["feature"].isin(counts[counts >= 3].index)].pivot_table(
    index="label", columns="feature", values="value", aggfunc="mean", observed=True)
per_feature.to_csv(tables / "iou_by_feature.csv")
scale = {"vmin": 0, "vmax": float(np.nanmax([t.max().max() for t in (per_style, per_feature)
                                            if t.size] or [1.0]))}
panels = [(table, title, annotate) for table, title, annotate in (
    (per_style, f"by {wc.label_name} (union)", True),
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
test_frame = "common" if "common" in FRAMES else "model"
paired = pick("iou", P, frame=test_frame).merge(headline[key + ["label"]], on=key)
paired = paired[["image_id", "label", "value"]]
display(Markdown(f"Frame of the paired tests: **{test_frame}**."))
omnibus = st.omnibus(paired, value="value", group="label", subject="image_id")
display(Markdown(
    f"Friedman across {omnibus['k']} maps on {omnibus['n']} images: Q = "
    f"{omnibus['statistic']:.2f}, p = {omnibus['p']:.3g}, Kendall's W = "
    f"{omnibus['kendall_w']:.2f}."))
pairs = st.pairwise_comparisons(paired, value="value", group="label", subject="image_id",
                                n_boot=stats["n_boot"], seed=seed)
pairs.to_csv(tables / "model_pairs.csv", index=False)
shown = ["a", "b", "n", "mean_diff", "ci_low", "ci_high", "p_wilcoxon", "p_holm", "rbc", "d_z"]
display(formatting.table(pairs.sort_values("p_wilcoxon")[shown].head(15), digits=4))

# %% [markdown]
# ## Gallery: best, median and worst images
# Images ranked by the mean headline IoU over models; each row shows every model's
# headline map in its own input frame, with the expert boxes.

# %%
model_rows = [r for r in headline.itertuples() if r.model != "baseline"]
ranking = head_iou[head_iou["model"] != "baseline"].groupby("image_id")["value"].mean().sort_values()
g = report["gallery_size"]
picked = {"worst": list(ranking.index[:g]),
          "median": list(ranking.index[len(ranking) // 2 - g // 2:][:g]),
          "best": list(ranking.index[-g:][::-1])}
by_id = {s.image_id: s for s in samples}
cols = min(4, len(model_rows))
per_image = int(np.ceil(len(model_rows) / cols))  # rows of maps per image
for kind, ids in picked.items():
    fig = plt.figure(figsize=(plots.PAGE_WIDTH, 2.1 * per_image * len(ids) + 0.4),
                     layout="constrained")
    fig.suptitle(f"{kind} images (IoU@{P:g} per map)")
    for subfig, image_id in zip(fig.subfigures(len(ids), 1, squeeze=False)[:, 0], ids,
                                strict=True):
        subfig.suptitle(image_id, fontsize=9)
        axes = subfig.subplots(per_image, cols, squeeze=False)
        sample = by_id[image_id]
        image = data.load_image(sample.path)
        for ax, row in zip(axes.flat, model_rows, strict=False):
            geometry = geometries[row.model]
            _, maps = stores[row.model].read(row.method, row.layer, [image_id])
            xyxy = geometry.boxes_to_frame(sample.boxes_ltwh(), sample.width, sample.height)
            score = head_iou.set_index([*key, "image_id"])["value"][
                (row.model, row.method, row.layer, image_id)]
            plots.overlay(ax, geometry.frame_image(image), maps[0, -1], xyxy,
                          title=f"{row.model}\n{row.method} L{row.layer}: {score:.2f}")
        for ax in axes.flat[len(model_rows):]:
            ax.axis("off")

# %% [markdown]
# ## Summary table
# The main metrics for the headline maps (head mean, union; mean over images); every
# metric and threshold is in `tables/summary.csv`. Coverage is also the energy-based
# pointing game.

# %%
summary = scores[(scores["target"] == "union") & (scores["head"] == -1)].merge(
    headline[key + ["label"]], on=key)
summary = summary.assign(name=np.where(summary["threshold"].isna(), summary["metric"].astype(str),
                                       summary["metric"].astype(str) + "@"
                                       + summary["threshold"].map("{:g}".format)))
summary = summary.pivot_table(index="name", columns="label", values="value", aggfunc="mean",
                              observed=True)
summary.to_csv(tables / "summary.csv")
headline_metrics = [f"iou@{P:g}", f"iou_rel@{P:g}", f"gtc@{P:g}", f"sc@{P:g}", "iou@50",
                    "coverage", "auc", "nss", "pointing_game", "mse", "kl", "emd"]
display(formatting.table(summary.T[[m for m in headline_metrics if m in summary.index]]))
