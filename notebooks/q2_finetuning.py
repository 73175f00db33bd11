# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (sightline)
#     language: python
#     name: python3
#   sightline:
#     needs: [q1_alignment]
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
# Defaults: the demo profile (params/demo.yaml), paths from the project root, so this
# notebook runs as is in JupyterLab once `python build.py` has made the demo data; a
# build injects its own profile's values after this cell. Run here, the notebook writes its
# tables to report/demo/interactive/tables/ (set tables_dir to change it): the build's
# report/demo/tables/, which the report and the explorer read, stays as the build made it.
from sightline.project import default

dataset = default("dataset")
models = default("models")
metrics = default("metrics")
stats = default("stats")
finetune = default("finetune")
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
from scipy import stats as sps

from sightline import cache, data, formatting, plots, selection, shift, synthetic
from sightline import finetune as ft
from sightline import models as registry
from sightline import stats as st
from sightline.config import Finetune, ModelChoice

plots.setup()
tables = Path(tables_dir)
P = float(metrics["headline_percentile"])
ALPHA = stats["alpha"]
recipe = Finetune(**finetune)
choices = [ModelChoice(**m) for m in models]
wc = data.load_dataset(dataset)
dataset_id = data.dataset_fingerprint(dataset["root"])
runs = ft.plan(choices, recipe, seed)
splits = ft.splits_for(wc, dataset_id, recipe, [r.seed for r in runs])
manifests = ft.train_all(runs, splits, recipe, model_seed=seed, progress=False)  # all cached (Q1)
runs_table = pd.DataFrame(ft.runs_table(manifests))
scores = pd.read_parquet(tables / "scores.parquet")
stores = pd.read_csv(tables / "stores.csv").set_index(["model", "variant"])["store"]
spec_of = {r["model"]["name"]: registry.REGISTRY[r["model"]["choice"]["key"]] for r in manifests}
if not manifests:
    display(Markdown("**No fine-tuning runs in `finetune.strategies`: nothing to compare.**"))

# %% [markdown]
# ## Training
# One stratified, church-disjoint train/val split per seed (recorded with its id in each
# run's manifest), shared by every model and strategy. The best epoch by validation
# accuracy is kept; validation accuracy both selects that epoch and is reported here, so
# it is slightly optimistic. Chance is 0.25 (four balanced-weight classes).

# %%
split_rows = [{"seed": s.seed, "split id": s.id, "train": len(s.train), "val": len(s.val)}
              for s in splits.values()]
display(formatting.table(pd.DataFrame(split_rows), caption=(
    "The pool's train + val images split anew, church-disjoint and stratified by style "
    f"(val_fraction {recipe.val_fraction}); the dataset's own split files (00_data) hold a "
    "different, smaller val set. The pool's test images stay out of both.")))
runs_table.to_csv(tables / "finetune_runs.csv", index=False)
summary = (runs_table.groupby(["model", "strategy"])
           .agg(seeds=("seed", "size"), val_accuracy=("val_accuracy", "mean"),
                val_accuracy_sd=("val_accuracy", "std"), val_macro_f1=("val_macro_f1", "mean"),
                best_epoch=("best_epoch", "mean"), wall_time_s=("wall_time_s", "sum"),
                trainable_params=("trainable_params", "first"),
                checkpoint_mib=("checkpoint_mib", "first"))
           .reset_index())
display(formatting.table(summary))

# %%
curves = pd.DataFrame([{**h, "model": m["model"]["name"], "strategy": m["strategy"],
                        "seed": m["seed"]} for m in manifests for h in m["history"]])
if len(curves):
    fig, axes = plt.subplots(1, 2, figsize=(plots.PAGE_WIDTH + 1.5, 3.4), layout="constrained")
    curves["run"] = curves["model"] + " · " + curves["strategy"]
    colours = plots.palette(curves["run"])
    sns.lineplot(data=curves, x="epoch", y="train_loss", hue="run", palette=colours, ax=axes[0],
                 legend=False)
    sns.lineplot(data=curves, x="epoch", y="val_accuracy", hue="run", palette=colours, ax=axes[1])
    axes[1].axhline(0.25, color="grey", ls="--", lw=0.8)
    axes[0].set_title("training loss (class-weighted CE)", fontsize=10)
    axes[1].set_title("validation accuracy (dashed: chance)", fontsize=10)
    for ax in axes:
        plots.integer_ticks(ax)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))

# %% [markdown]
# ## The shift
# Per model × strategy × method × layer × metric: the mean over annotated images of the
# fine-tuned value (averaged over seeds) minus the frozen value, against each image's
# union of boxes (head mean). Wilcoxon signed-rank and paired t on the per-image Δ,
# bootstrap 95% CI of the mean Δ resampling images and seeds, Cohen's d_z, and Holm's
# correction across model × strategy × metric (per method, layer and threshold).
#
# **Verdict rule**: *enhanced* if the Holm-adjusted Wilcoxon p < α and Δ points the
# better way (IoU and coverage up; MSE, KL and EMD down), *degraded* if p < α the other
# way, *preserved* otherwise (no detectable change — see the CI for how large a change is
# still compatible). All rows are in `tables/q2_deltas.csv`.

# %%
deltas = shift.deltas(scores, headline_percentile=P, alpha=ALPHA, n_boot=stats["n_boot"],
                      seed=seed)
deltas.to_csv(tables / "q2_deltas.csv", index=False)
HEADLINE_METHOD = {"cls": "cls", "probe": "probe", "cnn": "gradcam"}


def headline_rows(table):
    """Each model's own map (CLS / probe attention; Grad-CAM for a CNN) at its last layer,
    and its Grad-CAM."""
    keep = []
    for (model, method), rows in table.groupby(["model", "method"]):
        own = HEADLINE_METHOD[spec_of[model].readout]
        if method in (own, "gradcam"):
            keep.append(rows[rows["layer"] == rows["layer"].max()])
    return pd.concat(keep) if keep else table.iloc[:0]


headline = headline_rows(deltas)
headline = headline[np.isclose(headline["threshold"], P) | headline["threshold"].isna()]
shown = ["model", "strategy", "method", "layer", "metric", "mean_frozen", "mean_finetuned",
         "delta", "ci_low", "ci_high", "p_wilcoxon", "p_holm", "d_z", "verdict"]
display(formatting.table(headline[headline["strategy"] != "linear_probe"][shown], digits=4))
display(Markdown("Linear probe rows (attention maps bit-identical to the frozen model's by "
                 "construction): " + ", ".join(
                     f"{k}: {v}" for k, v in headline[headline["strategy"] == "linear_probe"]
                     .groupby("method")["delta"].agg(lambda d: f"max |Δ| = {d.abs().max():.2g}")
                     .items())))

# %%
iou_rows = headline[(headline["metric"] == "iou") & (headline["strategy"] != "linear_probe")]
if len(iou_rows):
    labels = iou_rows["model"] + " · " + iou_rows["strategy"] + " · " + iou_rows["method"]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(iou_rows) + 1.2))
    colours = iou_rows["verdict"].map({"enhanced": "#4c72b0", "preserved": "#999999",
                                       "degraded": "#c44e52"})
    ax.barh(labels, iou_rows["delta"], color=colours,
            xerr=[iou_rows["delta"] - iou_rows["ci_low"], iou_rows["ci_high"] - iou_rows["delta"]])
    ax.axvline(0, color="black", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel(f"ΔIoU@{P:g} (fine-tuned − frozen, 95% CI); blue enhanced, red degraded")
    fig.tight_layout()

# %% [markdown]
# ### Across the threshold sweep
# ΔIoU at every percentile for the headline maps (each model's own map at its last layer).

# %%
sweep = headline_rows(deltas[deltas["metric"] == "iou"])
sweep = sweep[sweep["strategy"] != "linear_probe"]
if len(sweep):
    sweep = sweep.assign(run=sweep["model"] + " · " + sweep["strategy"] + " · " + sweep["method"])
    fig, ax = plt.subplots(figsize=(plots.PAGE_WIDTH, 3.4), layout="constrained")
    sns.lineplot(data=sweep, x="threshold", y="delta", hue="run", palette=plots.palette(sweep["run"]),
                 marker="o", ax=ax)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("percentile p")
    ax.set_ylabel("ΔIoU@p")
    ax.get_legend().remove()
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside right upper")

# %% [markdown]
# ## The positive control (synthetic data only)
# On the demo data the style is planted: the generator draws everything but the
# diagnostic parts (sky, ground, wall and outline, tower, trees, door, plaques, colours,
# brightness) the same way for every style, and the parts are exactly the expert boxes.
# So a model that learns the styles *must* use the parts, and its attention should move
# onto the boxes. Two checks make that claim testable:
#
# 1. **The style is in the parts only.** The generator re-renders the very same images
#    with the parts left out (same random stream: every other pixel is equal). The same
#    model, recipe and split trained on those must stay at chance. Accuracy is measured on
#    the pool's test split, held out from training *and* from picking the best epoch
#    (validation accuracy, which picks it, is the maximum over epochs and so reads above
#    chance even for a model that learned nothing).
# 2. **Attention moved onto the boxes.** Each fine-tuned model's maps against the
#    untrained model's (its starting point) and against the centre-Gaussian baseline, paired
#    on the annotated images, with Holm's correction over the whole table. Every map kind
#    of the model (CLS attention, rollout, Grad-CAM of the style logit, ...) is read at its
#    best layer **chosen out of fold**, as Q1's honest selection does: two-fold
#    cross-fitting over 100 seeded halvings of the images, so each image's value comes from
#    the layer that was best for the trained model on the *other* half, and the untrained
#    model is read at that same layer. (Where in the network attention moved differs by
#    method and layer; the layer view after the table shows every layer. A first version
#    read only the last layer, where a from-scratch ViT's CLS attention did not move while
#    its earlier layers' and the rollout did; a CNN's last stage is a coarse 7 × 7 grid.)
#    The paired tests treat the cross-fitted values as ordinary paired observations.

# %%
synthetic_data = dataset["kind"] == "synthetic"
trained = [m for m in manifests if m["strategy"] in ("full", "lora")]
if synthetic_data and trained:
    twin_root = Path(dataset["root"]).with_name(Path(dataset["root"]).name + "-noparts")
    synthetic.make_synthetic(twin_root, n_annotated=dataset.get("n_annotated", 24),
                             n_pool=dataset.get("n_pool", 96), seed=seed,
                             image_size=tuple(dataset.get("image_size", (320, 256))), parts=False)
    twin = data.load_wikichurches(twin_root)
    control = next((m for m in trained if m["strategy"] == "full"), trained[0])
    twin_split = ft.make_split(twin, data.dataset_fingerprint(twin_root), control["seed"],
                               recipe.val_fraction)
    assert [i for i, *_ in twin_split.train] == [i for i, *_ in splits[control["seed"]].train]
    twin_run = ft.train_run(ModelChoice(**control["model"]["choice"]), control["strategy"],
                            control["seed"], twin_split, recipe, recipe.checkpoint_dir,
                            model_seed=seed, progress=False)
    # Accuracy on the pool's held-out test split: never trained on and never used to pick
    # the epoch (validation accuracy picks it, so it is optimistic, most of all at chance).
    held_out = ft.test_items(wc)
    accuracy_of = {m["dir"]: ft.evaluate_run(m, held_out) for m in trained}
    accuracy_of[twin_run["dir"]] = ft.evaluate_run(twin_run, ft.test_items(twin))
    rows = []
    for label, run in [*(("with the parts", m) for m in trained), ("parts left out", twin_run)]:
        test = accuracy_of[run["dir"]]
        p = sps.binomtest(test["correct"], test["n"], 0.25, alternative="greater").pvalue
        rows.append({"images": label, "model": run["model"]["name"], "variant": run["variant"],
                     "val accuracy (picks the epoch)": run["val_accuracy"],
                     "test accuracy": test["accuracy"], "test macro-F1": test["macro_f1"],
                     "n test": test["n"], "p (test accuracy > chance, binomial)": p})
    accuracy_table = pd.DataFrame(rows)
    display(formatting.table(accuracy_table))

# %%
def union_layers(model, variant, method, metric, threshold, images):
    """Per-image values against the union (head mean): images x layers."""
    rows = scores[(scores["model"] == model) & (scores["variant"] == variant)
                  & (scores["method"] == method) & (scores["target"] == "union")
                  & (scores["head"] == -1) & (scores["metric"] == metric)]
    if threshold is not None:
        rows = rows[np.isclose(rows["threshold"], threshold)]
    wide = rows.pivot_table(index="image_id", columns="layer", values="value", observed=True)
    return wide.reindex(images)


if synthetic_data and trained:
    images = sorted(s.image_id for s in wc.samples)
    first = selection.halvings(len(images), seed=seed)
    centre = {metric: union_layers("baseline", "baseline", "centre_gaussian", metric, threshold,
                                   images).iloc[:, 0].to_numpy()
              for metric, threshold in (("iou", P), ("coverage", None))}
    control_rows = []
    for m in trained:
        name, variant = m["model"]["name"], m["variant"]
        own = scores[(scores["model"] == name) & (scores["variant"] == variant)]
        for method in sorted(set(own["method"])):
            for metric, threshold in (("iou", P), ("coverage", None)):
                tuned = union_layers(name, variant, method, metric, threshold, images)
                untrained = union_layers(name, "frozen", method, metric, threshold, images)
                held_tuned, chosen = selection.cross_fit_arrays(tuned.to_numpy()[None], first)
                held_untrained = selection.read_at_choices(
                    untrained.reindex(columns=tuned.columns).to_numpy()[None], chosen, first)
                layers = pd.Series(tuned.columns[chosen[chosen >= 0]])
                layer = int(layers.mode().iloc[0])
                for against, reference in (("untrained", held_untrained[0]),
                                           ("centre baseline", centre[metric])):
                    r = st.paired_shift(reference, held_tuned[0], n_boot=stats["n_boot"],
                                        seed=seed)
                    control_rows.append({
                        "model": name, "variant": variant,
                        "test_accuracy": accuracy_of[m["dir"]]["accuracy"],
                        "method": method, "layer": layer,
                        "layer_stability": float((layers == layer).mean()),
                        "metric": metric if threshold is None else f"{metric}@{threshold:g}",
                        "against": against, "reference": r["mean_b"], "fine_tuned": r["mean_a"],
                        "delta": r["mean_diff"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                        "p_wilcoxon": r["p_wilcoxon"], "p_ttest": r["p_t"], "d_z": r["d_z"]})
    control_table = pd.DataFrame(control_rows)
    control_table["p_holm"] = st.holm(control_table["p_wilcoxon"].to_numpy())

    def outcome(row):
        if row["p_holm"] >= ALPHA:
            return "no detectable difference"
        return "higher" if row["delta"] > 0 else "lower"

    control_table["outcome"] = control_table.apply(outcome, axis=1)
    control_table.to_csv(tables / "q2_positive_control.csv", index=False)
    display(formatting.table(control_table, digits=4))
    lines = []
    for (name, variant), rows in control_table.groupby(["model", "variant"], sort=False):
        parts = []
        for against, group in rows.groupby("against", sort=False):
            counts = group["outcome"].value_counts()
            parts.append(f"vs the {against}: higher in {counts.get('higher', 0)}, lower in "
                         f"{counts.get('lower', 0)} of {len(group)}")
        top = rows[rows["against"] == "untrained"].nlargest(1, "delta").iloc[0]
        lines.append(
            f"- {name} **{variant}** (test accuracy {top['test_accuracy']:.2f}, chance 0.25): "
            + "; ".join(parts) + f". Largest shift: {top['method']} (layer {top['layer']}) "
            f"{top['metric']} {top['reference']:.3f} → {top['fine_tuned']:.3f}, "
            f"Δ = {top['delta']:+.3f} [{top['ci_low']:+.3f}, {top['ci_high']:+.3f}], "
            f"Holm p = {top['p_holm']:.2g}.")
    display(Markdown(f"**The positive control** (Holm over the table's {len(control_table)} "
                     f"tests, α = {ALPHA}):\n" + "\n".join(lines)))

# %% [markdown]
# ### Layer by layer
# Mean IoU@p against the union per layer, untrained (dashed) and trained (solid), for each
# trained run's per-layer maps (a ViT's CLS attention and rollout, a CNN's Grad-CAM per
# stage; a ViT's Grad-CAM has one layer and is in the table above); grey: the centre
# baseline. In sample: a picture of where things moved, not a test.

# %%
if synthetic_data and trained:
    union_iou = scores[(scores["target"] == "union") & (scores["head"] == -1)
                       & (scores["metric"] == "iou") & np.isclose(scores["threshold"], P)]
    centre_iou = union_iou.loc[union_iou["method"] == "centre_gaussian", "value"].mean()
    fig, axes = plt.subplots(1, len(trained), figsize=(plots.PAGE_WIDTH + 1, 3.6),
                             squeeze=False, layout="constrained")
    colours = plots.palette(union_iou.loc[union_iou["model"].isin(
        [m["model"]["name"] for m in trained]), "method"].unique())
    for ax, m in zip(axes[0], trained, strict=True):
        name = m["model"]["name"]
        rows = union_iou[(union_iou["model"] == name)
                         & union_iou["variant"].isin(["frozen", m["variant"]])
                         & ((union_iou["method"] != "gradcam")
                            | (spec_of[name].readout == "cnn"))]
        means = rows.groupby(["method", "variant", "layer"], observed=True)["value"].mean()
        for (method, variant), line in means.groupby(level=["method", "variant"]):
            ax.plot(line.index.get_level_values("layer"), line.to_numpy(), marker="o",
                    ls="--" if variant == "frozen" else "-", ms=3, color=colours[method],
                    label=f"{method} · {'untrained' if variant == 'frozen' else variant}")
        ax.axhline(centre_iou, color=plots.palette(["centre_gaussian"])["centre_gaussian"], lw=1,
                   ls=":", label="centre baseline")
        ax.set_title(f"{name} · {m['variant']}", fontsize=9)
        ax.set_xlabel("layer", fontsize=8)
        ax.set_ylabel(f"IoU@{P:g} (union)", fontsize=8)
        ax.set_xticks(sorted(rows["layer"].unique()))  # whole layers only
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6.5)

# %% [markdown]
# ## Where attention moved
# ### By style and by feature type
# Headline maps: per style, the mean ΔIoU against the union; per feature type, the mean
# ΔIoU against each box on its own, with a Kruskal–Wallis test of whether the feature
# types moved differently.

# %%
def headline_deltas(boxes):
    """Per-target Δ of IoU@p of each model's headline maps (fine-tuned variants only)."""
    frame = shift.target_deltas(scores, metric="iou", threshold=P, boxes=boxes)
    if frame.empty:
        return frame
    frame = headline_rows(frame)
    return frame[frame["strategy"] != "linear_probe"]


style_of = {s.image_id: s.style for s in wc.samples}
per_image = headline_deltas(boxes=False)
if len(per_image):
    by_style = per_image.assign(style=per_image["image_id"].map(style_of)).pivot_table(
        index=["model", "strategy", "method"], columns="style", values="delta", aggfunc="mean")
    display(formatting.table(by_style))
per_box = headline_deltas(boxes=True)
if len(per_box):
    by_feature = per_box.pivot_table(index=["model", "strategy", "method"], columns="feature",
                                     values="delta", aggfunc="mean")
    tests = []
    for (model, strategy, method), rows in per_box.groupby(["model", "strategy", "method"]):
        counts = rows["feature"].value_counts()
        rows = rows[rows["feature"].isin(counts[counts >= 3].index)]
        if rows["feature"].nunique() >= 2:
            result = st.omnibus(rows, value="delta", group="feature")
            tests.append({"model": model, "strategy": strategy, "method": method,
                          "Kruskal-Wallis H": result["statistic"], "p": result["p"]})
    if tests:
        by_feature = by_feature.join(pd.DataFrame(tests).set_index(["model", "strategy",
                                                                     "method"]))
    by_feature.to_csv(tables / "q2_deltas_by_feature.csv")
    display(formatting.table(by_feature))

# %% [markdown]
# ### Shift maps
# Fine-tuned minus frozen map (both min–max scaled per image) on example images: red where
# the fine-tuned model looks more, blue where it looks less; the expert boxes on top. Each
# model's own map at its last layer, or on the demo data at the layer the positive control
# chose out of fold for IoU.

# %%
by_id = {s.image_id: s for s in wc.samples}
examples = [s.image_id for s in wc.samples[: report["gallery_size"]]]
shown_runs = [m for m in trained if (m["model"]["name"], m["variant"]) in stores.index]
for m in shown_runs:
    name, variant = m["model"]["name"], m["variant"]
    spec = spec_of[name]
    method = HEADLINE_METHOD[spec.readout]
    before_store = cache.MapStore(stores[(name, "frozen")])
    after_store = cache.MapStore(stores[(name, variant)])
    layer = max(layer for mth, layer in after_store.keys() if mth == method)
    if synthetic_data and trained:
        chosen = control_table[(control_table["model"] == name)
                               & (control_table["variant"] == variant)
                               & (control_table["method"] == method)
                               & (control_table["metric"] == f"iou@{P:g}")]
        layer = int(chosen["layer"].iloc[0]) if len(chosen) else layer
    _, before = before_store.read(method, layer, examples)
    _, after = after_store.read(method, layer, examples)
    fig, axes = plt.subplots(len(examples), 3, figsize=(7.5, 2.6 * len(examples)), squeeze=False)
    for r, image_id in enumerate(examples):
        sample = by_id[image_id]
        frame = spec.geometry.frame_image(data.load_image(sample.path))
        xyxy = spec.geometry.boxes_to_frame(sample.boxes_ltwh(), sample.width, sample.height)
        a, b = before[r, -1], after[r, -1]
        scale = [(x - x.min()) / (np.ptp(x) or 1) for x in (a, b)]
        plots.overlay(axes[r, 0], frame, a, xyxy, title=f"frozen {method} L{layer}")
        plots.overlay(axes[r, 1], frame, b, xyxy, title=f"{variant} L{layer}")
        plots.show_image(axes[r, 2], frame, title="shift (red: more)")
        axes[r, 2].imshow(scale[1] - scale[0], cmap="RdBu_r", vmin=-1, vmax=1, alpha=0.7,
                          extent=(0, frame.size[0], frame.size[1], 0), interpolation="bilinear")
        plots.draw_boxes(axes[r, 2], xyxy, frame.size[0], frame.size[1])
    fig.suptitle(f"{name} · {variant}", y=1.0)
    fig.tight_layout()

# %% [markdown]
# ### Best layer before and after, and the heads that changed most
# The layer with the highest mean IoU@p (union, head mean) per method, frozen vs
# fine-tuned (selected on these same images, so optimistic for both); and for per-head
# maps (CLS / probe attention) the heads whose mean IoU@p moved most.

# %%
layer_means = (scores[(scores["target"] == "union") & (scores["head"] == -1)
                      & (scores["metric"] == "iou") & np.isclose(scores["threshold"], P)
                      & (scores["model"] != "baseline")]
               .assign(strategy=lambda d: d["variant"].astype(str).map(ft.strategy_of))
               .groupby(["model", "strategy", "method", "layer"], observed=True)["value"].mean()
               .rename("iou").reset_index())
best = layer_means.loc[layer_means.groupby(["model", "strategy", "method"], observed=True)["iou"]
                       .idxmax()]
frozen_best = best.loc[best["strategy"] == "frozen", ["model", "method", "layer", "iou"]]
tuned_best = best[~best["strategy"].isin(["frozen", "linear_probe"])]
if len(tuned_best):
    tuned_best = tuned_best.merge(frozen_best, on=["model", "method"], how="left",
                                  suffixes=("", "_frozen"))
    display(formatting.table(tuned_best.rename(columns={
        "layer": "best layer", "iou": f"IoU@{P:g}", "layer_frozen": "best layer frozen",
        "iou_frozen": f"IoU@{P:g} frozen"})))
heads = scores[(scores["target"] == "union") & (scores["head"] >= 0)
               & (scores["metric"] == "iou") & np.isclose(scores["threshold"], P)]
heads = (heads.assign(strategy=heads["variant"].astype(str).map(ft.strategy_of))
         .groupby(["model", "strategy", "method", "layer", "head"], observed=True)["value"]
         .mean().unstack("strategy"))
changed = []
for strategy in [c for c in heads.columns if c not in ("frozen", "linear_probe")]:
    delta = (heads[strategy] - heads["frozen"]).dropna().rename("delta").reset_index()
    delta["strategy"] = strategy
    changed.append(delta.reindex(delta["delta"].abs().sort_values(ascending=False).index)
                   .groupby("model").head(5))
if changed:
    display(formatting.table(pd.concat(changed, ignore_index=True)))

# %% [markdown]
# ## Does a better classifier look more where the experts look?
# Validation accuracy (mean over seeds) against ΔIoU@p of each model's headline map.

# %%
accuracy = runs_table.groupby(["model", "strategy"])["val_accuracy"].mean()
points = headline[(headline["metric"] == "iou") & (headline["method"] != "gradcam")]
points = points.join(accuracy, on=["model", "strategy"])
if len(points):
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.scatterplot(data=points, x="val_accuracy", y="delta", hue="model", style="strategy",
                    palette=plots.palette(points["model"]), s=70, ax=ax)
    ax.axhline(0, color="black", lw=0.8)
    ax.axvline(0.25, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("validation accuracy (dashed: chance)")
    ax.set_ylabel(f"ΔIoU@{P:g}")
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    if points["val_accuracy"].nunique() > 2:
        rho = sps.spearmanr(points["val_accuracy"], points["delta"])
        display(Markdown(f"Spearman ρ = {rho.statistic:.2f} (p = {rho.pvalue:.2g}) over "
                         f"{len(points)} model × strategy cells."))
