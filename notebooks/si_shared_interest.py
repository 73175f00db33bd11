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
# # SI: do saliency maps overlap where people looked? (a Shared Interest replication)
# "Shared Interest...Sometimes" (Morrison, Mehra & Perer, CVPR Workshops 2023) asked
# whether two attention-based classifiers (Swin-T, CaiT-S) and two CNNs (ResNet-101,
# EfficientNet-B6) explain ImageNet images where humans look, with two saliency
# techniques: **Grad-CAM** (at one late layer) and **XRAI** (integrated gradients ranked over
# image segments). The ground truth is the human-attention masks of the ML Interpretability
# Benchmark (Mohseni et al.): 100 images of 20 subjects, each mask weighted by how many of
# 10 annotators marked a pixel. Each map is scored with the Shared Interest metrics
# (Boggust et al., CHI 2022): **IoU**, **ground-truth coverage** GTC = |S∩G| / |G| and
# **saliency coverage** SC = |S∩G| / |S| of the binarised saliency S and human mask G.
#
# Both techniques explain the model's **predicted** class (`target: predicted`; the
# benchmark's own class is `target: benchmark`). The paper's text available to us does not
# state its target; the predicted class is the default of both libraries it names, and the
# choice here.
#
# **Binarisation is our choice.** The study does not publish its rule. Both the human mask
# and the saliency are binarised with the Shared Interest code's `binarize_std`: min-max
# each map, keep the pixels >= mean + 1 std (ties kept). The masks are lossy JPEGs, so
# `> 0` would keep compression noise. A percentile rule and a sweep of the saliency
# threshold are parameters; the sweep is shown below.

# %% tags=["parameters"]
# Defaults: the demo profile (params/demo.yaml), paths from the project root, so this
# notebook runs as is in JupyterLab once `python build.py` has made the demo data; a
# build injects its own profile's values after this cell. Run here, the notebook writes its
# tables to report/demo/interactive/tables/ (set tables_dir to change it): the build's
# report/demo/tables/, which the report and the explorer read, stays as the build made it.
from sightline.project import default

shared_interest = default("shared_interest")
extraction = default("extraction")
stats = default("stats")
report = default("report")
seed = default("seed")
tables_dir = default("tables_dir")

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from sightline import data, extract, formatting, plots, saliency, scoring
from sightline import models as registry
from sightline import shared_interest as si
from sightline import stats as st
from sightline.config import SharedInterest

plots.setup()
study = SharedInterest.model_validate(shared_interest)
tables = Path(tables_dir)
tables.mkdir(parents=True, exist_ok=True)
bench = data.load_human_attention(study.dataset.root, strict=study.dataset.strict)
samples = bench.samples
dataset_id = data.human_attention_fingerprint(study.dataset.root)
names = {c.key: extract.model_name(c) for c in study.models}
choice_of = {c.key: c for c in study.models}
rule, mask_rule = study.binarize.saliency, study.binarize.mask
unit = {"std": study.binarize.num_std, "percentile": study.binarize.percentile}
headline, mask_threshold = unit[rule], unit[mask_rule]
thresholds = sorted({*study.binarize.sweep, headline})
settings = saliency.XraiSettings(**study.xrai.model_dump())
display(Markdown(
    f"{len(samples)} images of {len({s.subject for s in samples})} subjects "
    f"({', '.join(sorted({s.subject for s in samples}))}); skipped: "
    f"{ {k: v for k, v in bench.report['counts'].items() if k != 'samples' and v} or 'none'}. "
    f"Models: {', '.join(names.values())}. Saliency binarised by `{rule}` at {headline} "
    f"(sweep {thresholds}), human mask by `{mask_rule}` at {mask_threshold}."
))
plots.random_weights_banner(study.models)

# %% [markdown]
# ## Maps and predictions
# Maps go through the project's one map cache (a store per model and XRAI setting); each
# model's top-1 ImageNet class, from the forward pass of its maps, is kept in the store. A
# prediction is **correct** when it is one of the subject's ImageNet classes
# (`imagenet_subjects.csv`: e.g. `dog` = the 118 dog breeds; `tree` has no class, so its
# correctness is undefined).

# %%
variant = f"si-{study.target}-xrai{settings.steps}-{settings.algorithm}"
stores, predictions = {}, []
for choice in study.models:
    store = extract.store_for(extraction["cache_dir"], dataset_id, names[choice.key], variant)
    found = si.extract_study(samples, choice, store, bench.subjects, methods=study.methods,
                             target=study.target, xrai=settings,
                             batch_size=extraction["batch_size"], device=extraction["device"],
                             seed=seed)
    stores[choice.key] = store
    predictions.append(found.assign(model=names[choice.key], key=choice.key))
predictions = pd.concat(predictions, ignore_index=True)
predictions["correct"] = si.correctness(predictions, samples, bench.subjects)
per_image = predictions.pivot(index="image_id", columns="key", values="predicted")
agree = per_image.index[per_image.nunique(axis=1) == 1]
predictions["all_agree"] = predictions["image_id"].isin(agree)
predictions.to_csv(tables / "si_predictions.csv", index=False)
display(formatting.table(predictions.groupby("model")[["correct"]].mean()
                         .rename(columns={"correct": "accuracy"}).assign(images=len(samples))))
display(Markdown(f"All {len(stores)} models predict the same class on **{len(agree)}** of "
                 f"{len(samples)} images (the agreement subset below"
                 f"{'' if len(agree) else ': empty here, so not tested'})."))

# %% [markdown]
# ### What XRAI costs on this CPU
# One image per model at this profile's XRAI settings (2 baselines x steps integrated-
# gradient evaluations, segmentation, region ranking), beside one Grad-CAM, timed on this
# machine when the cache was filled (and kept beside the maps, so a rebuild shows the same
# measurement). At full size and the paper's defaults (100 steps, full ranking) see
# `python build.py bench` (`benchmarks/bench_shared_interest.py`) and docs/benchmarks.md.

# %%
timing = pd.DataFrame([
    {"model": names[choice.key],
     **{f"{method} s/image": seconds for method, seconds in si.method_cost(
         choice, stores[choice.key], samples[0], study.methods, settings, seed=seed,
         device=extraction["device"]).items()}}
    for choice in study.models
]).set_index("model")
display(formatting.table(timing, digits=2))

# %% [markdown]
# ## Scores
# Every map is upsampled to the working resolution in its model's input frame (the human
# mask goes through the same resize / crop), binarised, and scored; rows land in
# `tables/si_scores.parquet` in the project's scores schema (`target` = `human`,
# `feature` = subject, `threshold` = the saliency threshold; `coverage` is the continuous
# SC; `correct`: the prediction is one of the subject's classes, empty where the subject has
# none). Its columns are those of `scores.parquet`, so the same readers work on it.

# %%
R = study.resolution
correct_of = {key: rows.set_index("image_id")["correct"] for key, rows in predictions.groupby("key")}
masks_by_geometry, frames = {}, []
for choice in study.models:
    geometry = registry.spec_for(choice).geometry
    if geometry not in masks_by_geometry:
        masks_by_geometry[geometry] = si.human_masks(samples, geometry, R)
    ids = [s.image_id for s in samples]
    for method in study.methods:
        _, maps = stores[choice.key].read(method, 0, ids)
        frames.append(scoring.mark_correct(
            si.score(maps, masks_by_geometry[geometry], samples, model=names[choice.key],
                     variant="frozen", method=method, layer=0, rule=rule, mask_rule=mask_rule,
                     mask_threshold=mask_threshold, thresholds=thresholds, resolution=R),
            correct_of[choice.key]))
scores = pd.concat(frames, ignore_index=True)
scores.to_parquet(tables / "si_scores.parquet", index=False)
key_of = {name: key for key, name in names.items()}
wide = (scores[np.isclose(scores["threshold"], headline)]
        .pivot_table(index=["image_id", "model", "method"], columns="metric", values="value",
                     observed=True).reset_index())
wide["model"] = wide["model"].astype(str)
wide["method"] = wide["method"].astype(str)
wide["key"] = wide["model"].map(key_of)
wide = wide.merge(predictions[["image_id", "key", "correct", "all_agree"]], on=["image_id", "key"])
lacking = {m: int(wide[m].isna().sum()) for m in ("iou", "sc", "gtc") if m in wide}
display(Markdown(
    f"{len(scores):,} score rows; {int(wide[list(lacking)].isna().any(axis=1).sum())} of "
    f"{len(wide)} maps lack a score at the headline threshold ("
    + ", ".join(f"{m}: {n}" for m, n in lacking.items())
    + "; a flat map, an empty mask, or SC of a map with no salient pixels). Table 1's means "
    "are over the maps that have the score."))

# %% [markdown]
# ## Table 1: ours beside the paper's
# Mean IoU / SC / GTC per technique and model at the headline threshold.

# %%
ours = (wide.groupby(["method", "key"])[["iou", "sc", "gtc"]].mean().reset_index()
        .merge(si.PAPER_TABLE1, on=["method", "key"], suffixes=("", "_paper"), how="left"))
for metric in ("iou", "sc", "gtc"):
    ours[f"{metric}_diff"] = ours[metric] - ours[f"{metric}_paper"]
ours.insert(2, "model", ours["key"].map(names))
ours.insert(3, "images", wide.groupby(["method", "key"])["iou"].count().values)
ours.round(3).to_csv(tables / "si_table1.csv", index=False)
display(formatting.table(ours.drop(columns="key")))

# %% [markdown]
# ### Table 1 by right and wrong predictions
# With `report.split_by_correct`: the same means on the images each model classifies right
# and on those it gets wrong (images whose subject has no ImageNet class are on neither
# side), with the two-sided Mann–Whitney U test of IoU between the two sets of images. A side
# with fewer than 10 images is reported (its means) but not tested.

# %%
if report["split_by_correct"]:
    split_rows = []
    for (method, key), rows in wide.groupby(["method", "key"]):
        right, wrong = rows[rows["correct"] == 1], rows[rows["correct"] == 0]
        test = st.split_comparison(right["iou"], wrong["iou"])
        split_rows.append({
            "method": method, "model": names[key], "n_right": test["n_right"],
            "n_wrong": test["n_wrong"], "iou_right": test["mean_right"],
            "iou_wrong": test["mean_wrong"],
            **{f"{m}_{side}": part[m].mean() for m in ("sc", "gtc")
               for side, part in (("right", right), ("wrong", wrong))},
            "p_mwu": test["p_mwu"], "note": test["note"]})
    table1_by_correct = pd.DataFrame(split_rows)
    table1_by_correct.to_csv(tables / "si_table1_by_correct.csv", index=False)
    display(formatting.table(table1_by_correct, digits=3, caption=(
        "n: images with an IoU score on each side; p: Mann–Whitney U of IoU, right vs wrong, "
        f"only where both sides have {st.MIN_SIDE} images or more.")))
else:
    display(Markdown("Not split (`report.split_by_correct` is off)."))

# %% [markdown]
# ## Distributions
# IoU, GTC and SC per image, by model and technique.

# %%
long = wide.melt(id_vars=["image_id", "model", "method"], value_vars=["iou", "gtc", "sc"],
                 var_name="metric", value_name="score")
grid = sns.catplot(data=long, x="model", y="score", hue="method", col="metric", kind="box",
                   palette=plots.palette(long["method"]), height=2.6, aspect=0.95, sharey=True)
grid.set_xticklabels(rotation=30, ha="right")
plt.show()

# %% [markdown]
# ### Threshold sweep
# Mean IoU as the saliency threshold moves (the human mask stays at its threshold): the
# ranking of models and techniques at the headline threshold is checked against it here.

# %%
sweep = (scores[scores["metric"] == "iou"].groupby(["model", "method", "threshold"],
                                                   observed=True)["value"].mean().reset_index())
grid = sns.relplot(data=sweep, x="threshold", y="value", hue="model", style="method",
                   palette=plots.palette(sweep["model"]),
                   kind="line", markers=True, height=3.2, aspect=1.6)
grid.set_axis_labels(f"saliency threshold ({rule})", "mean IoU")
plt.show()

# %% [markdown]
# ## Tests
# - **Technique** (Grad-CAM vs XRAI, IoU): each Grad-CAM map has an XRAI twin on the same
#   image and model, so the **paired t-test** over (image, model) pairs is the right test,
#   with its effect size **Cohen's d_z** = mean / sd of the per-pair differences
#   Grad-CAM − XRAI (signed like t; t = d_z √n); **Welch's t-test** treats the two sets as
#   independent, as a comparison of two means like the paper's does, and is given for
#   comparison, with Cohen's d on the pooled sd (same sign convention).
# - **Model**, per technique: one-way ANOVA and Tukey HSD, as the paper (between-groups;
#   the images repeat across models, so it ignores that pairing, like the paper).
# - **Technique x model**: two-way ANOVA with interaction; effect sizes are partial eta².
# The same on the subset of images where all models predict the same class.

# %%
def tests_on(frame, subset):
    rows = []
    pairs = frame.pivot_table(index=["image_id", "model"], columns="method", values="iou",
                              observed=True)
    if {"gradcam", "xrai"} <= set(pairs.columns):
        pairs = pairs[["gradcam", "xrai"]].dropna()
        if len(pairs) >= 3:
            t = st.paired_comparison(pairs["gradcam"], pairs["xrai"])
            rows.append({"subset": subset, "test": "paired t", "term": "gradcam - xrai",
                         "statistic": t["t"], "dof": f"{t['n'] - 1:d}", "p": t["p_t"],
                         "effect": "cohen d_z", "effect_size": t["d_z"], "n": t["n"],
                         "mean_a": t["mean_a"], "mean_b": t["mean_b"]})
            w = st.ttest_ind(frame.loc[frame["method"] == "gradcam", "iou"],
                             frame.loc[frame["method"] == "xrai", "iou"])
            rows.append({"subset": subset, "test": "Welch t", "term": "gradcam - xrai",
                         "statistic": w["t"], "dof": f"{w['dof']:.1f}", "p": w["p"],
                         "effect": "cohen d (pooled sd)", "effect_size": w["cohen_d"],
                         "n": w["n"], "mean_a": w["mean_a"], "mean_b": w["mean_b"]})
    for method, group in frame.groupby("method"):
        if group["model"].nunique() < 2 or group.groupby("model")["iou"].count().min() < 2:
            continue
        anova, tukey = st.anova_tukey(group, "iou", "model")
        a = anova.iloc[0]
        rows.append({"subset": subset, "test": "one-way ANOVA", "term": f"model | {method}",
                     "statistic": a["F"], "dof": f"{a['ddof1']:g}, {a['ddof2']:g}", "p": a["p_unc"],
                     "effect": "partial eta2", "effect_size": a["np2"], "n": a["n"]})
        for t in tukey.itertuples():  # n: the maps of the two models compared
            rows.append({"subset": subset, "test": "Tukey HSD", "term": f"{t.A} - {t.B} | {method}",
                         "statistic": t.T, "p": t.p_tukey, "effect": "hedges g",
                         "effect_size": t.hedges, "n": t.n, "mean_a": t.mean_A, "mean_b": t.mean_B})
    if frame["method"].nunique() == 2 and frame["model"].nunique() >= 2 and len(frame) > 8:
        two_way = st.anova_two_way(frame, "iou", ["method", "model"])
        for r in two_way[two_way["Source"] != "Residual"].itertuples():
            rows.append({"subset": subset, "test": "two-way ANOVA", "term": r.Source,
                         "statistic": r.F, "dof": f"{r.DF:g}", "p": r.p_unc, "effect": "partial eta2",
                         "effect_size": r.np2, "n": r.n})
    return pd.DataFrame(rows)


tests = pd.concat([tests_on(wide, "all images"),
                   tests_on(wide[wide["all_agree"]], "all models agree")], ignore_index=True)
tests.to_csv(tables / "si_tests.csv", index=False)
display(formatting.table(tests.drop(columns=["mean_a", "mean_b"], errors="ignore"), digits=4))

# %% [markdown]
# ## Best and worst images per model
# Each model's best and worst image by IoU (mean of the techniques), with the human mask
# (white outline: its binarised region) and both maps.

# %%
by_id = {s.image_id: s for s in samples}
mean_iou = wide.groupby(["model", "image_id"])["iou"].mean().dropna().reset_index()
picks = []
for model, group in mean_iou.groupby("model"):
    ordered = group.sort_values("iou")
    picks += [(model, "best", r) for r in ordered.tail(1).itertuples()]
    picks += [(model, "worst", r) for r in ordered.head(1).itertuples()]


def show_pick(axes, model, label, row):
    key = key_of[model]
    sample = by_id[row.image_id]
    geometry = registry.spec_for(choice_of[key]).geometry
    frame = geometry.frame_image(data.load_image(sample.path))
    human = masks_by_geometry[geometry][samples.index(sample)]
    plots.show_image(axes[0], frame, f"{label}\n{row.image_id}")
    axes[0].imshow(human, cmap="gray", alpha=0.6, extent=(0, frame.size[0], frame.size[1], 0))
    truth = si.binarize(human[None], mask_rule, mask_threshold)[0]
    for ax, method in zip(axes[1:], study.methods, strict=True):
        _, maps = stores[key].read(method, 0, [row.image_id])
        value = wide.loc[(wide["model"] == model) & (wide["image_id"] == row.image_id)
                         & (wide["method"] == method), "iou"].iloc[0]
        plots.overlay(ax, frame, maps[0, 0], np.zeros((0, 4)), f"{method}\nIoU {value:.2f}")
        ax.contour(np.linspace(0, frame.size[0], R), np.linspace(0, frame.size[1], R), truth,
                   levels=[0.5], colors="white", linewidths=1)


picked_models = list(dict.fromkeys(model for model, _, _ in picks))
width = 1 + len(study.methods)  # one row per model: its best image, then its worst
fig, axes = plt.subplots(len(picked_models), 2 * width, squeeze=False, layout="constrained",
                         figsize=(plots.PAGE_WIDTH, 1.75 * len(picked_models) + 0.2))
for model, label, row in picks:
    row_axes = axes[picked_models.index(model)]
    show_pick(row_axes[(0 if label == "best" else width):][:width], model, label, row)
    row_axes[0].set_ylabel(model, fontsize=8)
plt.show()

# %% [markdown]
# ## Shared Interest cases
# Each (image, model, technique) gets a case of the Shared Interest taxonomy from its
# IoU, SC and GTC and whether the prediction is correct: **human aligned** (high IoU, or
# both coverages high) / **confuser** if wrong; **sufficient subset** (high SC, low GTC:
# the saliency lies inside the human region but covers only part of it) / *insufficient
# subset*; **sufficient context** (high GTC, low SC: the human region and more) / *context
# confusion*; **context dependent** (both low: mostly elsewhere) / *distractor*. "High"
# means >= the `cases` thresholds (IoU >= 0.5, coverage >= 0.5 by default): Boggust et al.
# define the cases by these score regions; the cut-off values are ours, as parameters.

# %%
wide["case"] = si.cases(wide["iou"], wide["gtc"], wide["sc"], wide["correct"],
                        iou_high=study.cases.iou_high, coverage_high=study.cases.coverage_high)
case_table = (wide.groupby(["method", "model", "case"]).size().unstack("case", fill_value=0)
              .reindex(columns=[c for c in (*si.CORRECT_CASES, *si.INCORRECT_CASES)
                                if c in set(wide["case"].dropna())], fill_value=0))
case_table.to_csv(tables / "si_cases.csv")
display(formatting.table(case_table))

# %%
examples = (wide.dropna(subset=["case"]).sort_values("iou", ascending=False)
            .groupby("case").head(1).head(8))
if len(examples):
    cols = min(4, len(examples))
    rows_n = int(np.ceil(len(examples) / cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(plots.PAGE_WIDTH, 2.3 * rows_n), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(examples):]:
        ax.axis("off")
    for ax, row in zip(axes.flat, examples.itertuples(), strict=False):
        sample = by_id[row.image_id]
        geometry = registry.spec_for(choice_of[row.key]).geometry
        frame = geometry.frame_image(data.load_image(sample.path))
        _, maps = stores[row.key].read(row.method, 0, [row.image_id])
        truth = si.binarize(masks_by_geometry[geometry][samples.index(sample)][None], mask_rule,
                            mask_threshold)[0]
        plots.overlay(ax, frame, maps[0, 0], np.zeros((0, 4)),
                      f"{row.case}\n{row.model} {row.method}\n{row.image_id}")
        ax.contour(np.linspace(0, frame.size[0], R), np.linspace(0, frame.size[1], R), truth,
                   levels=[0.5], colors="white", linewidths=1)
    plt.show()

# %% [markdown]
# ## The paper beside ours
# The paper's Table 1 (mean IoU / SC / GTC, 100 images) next to ours, and its headline
# test: mean IoU of Grad-CAM (0.192) vs XRAI (0.145), t-test p < 0.001.

# %%
side = ours[["method", "model", "iou_paper", "iou", "sc_paper", "sc", "gtc_paper", "gtc"]]
display(formatting.table(side))
means = wide.groupby("method")["iou"].mean()
paired = tests[(tests["subset"] == "all images") & (tests["test"] == "paired t")]
welch = tests[(tests["subset"] == "all images") & (tests["test"] == "Welch t")]
lines = []
if {"gradcam", "xrai"} <= set(means.index):
    lines.append(f"- Mean IoU: Grad-CAM **{means['gradcam']:.3f}** (paper "
                 f"{si.PAPER_HEADLINE['gradcam']}), XRAI **{means['xrai']:.3f}** (paper "
                 f"{si.PAPER_HEADLINE['xrai']}); paper: Grad-CAM higher, p "
                 f"{si.PAPER_HEADLINE['p']}.")
    if len(paired):
        p_row, w_row = paired.iloc[0], welch.iloc[0]
        direction = "higher" if means["gradcam"] > means["xrai"] else "lower"
        reading = (f"Grad-CAM's IoU is significantly {direction}" if p_row["p"] < 0.05 else
                   f"no significant difference (Grad-CAM {direction} in the mean)")
        lines.append(f"- Here {reading}: paired t = {p_row['statistic']:.2f}, "
                     f"p = {p_row['p']:.3g}, Cohen's d_z = {p_row['effect_size']:+.2f} "
                     f"(Grad-CAM − XRAI, n = {p_row['n']} pairs); Welch t = "
                     f"{w_row['statistic']:.2f}, p = {w_row['p']:.3g}, Cohen's d (pooled sd) = "
                     f"{w_row['effect_size']:+.2f}.")
compared = ours.dropna(subset=["iou_paper"])
if len(compared):
    worst = compared.loc[compared["iou_diff"].abs().idxmax()]
    lines.append(f"- Largest IoU difference from Table 1: {worst['method']} {worst['model']} "
                 f"({worst['iou']:.3f} vs {worst['iou_paper']:.3f}); mean absolute difference "
                 f"{compared['iou_diff'].abs().mean():.3f}.")
weights = {c.weights for c in study.models}
if weights != {"pretrained"}:
    lines.append("- **These models have random weights** (offline demo profile): the numbers "
                 "show the pipeline, not the science; differences from the paper are expected.")
lines.append(f"- Binarisation: ours (`{rule}` at {headline} for the saliency, `{mask_rule}` at "
             f"{mask_threshold} for the human mask), not the paper's unpublished rule; the "
             "sweep above shows how the comparison moves with it.")
display(Markdown("\n".join(lines)))
