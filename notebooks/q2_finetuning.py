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

from sightline import cache, data, extract, formatting, plots, scoring, selection, shift
from sightline import finetune as ft
from sightline import models as registry
from sightline import stats as st
from sightline.config import Finetune, ModelChoice
from sightline.data import synthetic

plots.setup()
tables = Path(tables_dir)
P = float(metrics["headline_percentile"])
ALPHA = stats["alpha"]
recipe = Finetune(**finetune)
choices = [ModelChoice(**m) for m in models]
wc = data.load_dataset(dataset)
label_of = {s.image_id: s.label for s in wc.samples}
dataset_id = data.dataset_fingerprint(dataset)
runs = ft.plan(choices, recipe, seed)
splits = ft.splits_for(wc, dataset_id, recipe, [r.seed for r in runs])
manifests = ft.train_all(runs, splits, recipe, model_seed=seed, progress=False)  # all cached (Q1)
runs_table = pd.DataFrame(ft.runs_table(manifests))
scores = pd.read_parquet(tables / "scores.parquet")
stores = pd.read_csv(tables / "stores.csv").set_index(["model", "variant"])["store"]
spec_of = {r["model"]["name"]: registry.spec_for(ModelChoice(**r["model"]["choice"]))
           for r in manifests}
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
deltas = shift.deltas(scores, headline_percentile=P, sesoi=stats["sesoi"], alpha=ALPHA,
                      n_boot=stats["n_boot"], seed=seed)
deltas.to_csv(tables / "q2_deltas.csv", index=False)
display(Markdown("Margins (smallest effect size of interest): " + ", ".join(
    f"{metric} ±{margin:g}" for metric, margin in stats["sesoi"].items()
    if metric in set(deltas["metric"])) + "."))
HEADLINE_METHOD = {"cls": "cls", "probe": "probe", "tokens": "mean_received", "cnn": "gradcam"}
VERDICT_COLOURS = {"enhanced": "#4c72b0", "degraded": "#c44e52", "equivalent": "#8c8c8c",
                   "inconclusive": "#e0c27a"}


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
shown = ["model", "strategy", "method", "layer", "metric", "n", "mean_frozen", "mean_finetuned",
         "delta", "ci_low", "ci_high", "p_wilcoxon", "p_holm", "p_tost", "d_z", "verdict"]
display(formatting.table(headline[headline["strategy"] != "linear_probe"][shown], digits=4))
probe_rows = headline[headline["strategy"] == "linear_probe"]
if len(probe_rows):
    display(Markdown("Linear probe rows (attention maps bit-identical to the frozen model's by "
                     "construction): " + ", ".join(
                         f"{k}: {v}" for k, v in probe_rows.groupby("method")["delta"]
                         .agg(lambda d: f"max |Δ| = {d.abs().max():.2g}").items())
                     + f"; verdicts: {', '.join(sorted(set(probe_rows['verdict'])))}."))
if dataset["kind"] == "synthetic":
    display(Markdown(
        "These rows read each map at its model's last layer. On this synthetic data the LoRA "
        "and full rows are the runs the positive control below tests as pre-specified, at the "
        "layer chosen out of fold: there a run's Δ can differ in size, even in sign, from its "
        "last layer's here, and the positive control's outcome is the one that counts."))

# %%
iou_rows = headline[(headline["metric"] == "iou") & (headline["strategy"] != "linear_probe")]
if len(iou_rows):
    labels = iou_rows["model"] + " · " + iou_rows["strategy"] + " · " + iou_rows["method"]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(iou_rows) + 1.2))
    colours = iou_rows["verdict"].map(VERDICT_COLOURS)
    ax.barh(labels, iou_rows["delta"], color=colours,
            xerr=[iou_rows["delta"] - iou_rows["ci_low"], iou_rows["ci_high"] - iou_rows["delta"]])
    ax.axvline(0, color="black", lw=0.8)
    ax.invert_yaxis()
    margin = stats["sesoi"]["iou"]
    ax.axvspan(-margin, margin, color="#dddddd", alpha=0.6, lw=0)
    ax.set_xlabel(f"ΔIoU@{P:g} (fine-tuned − frozen, 95% CI; shaded: ±{margin:g} margin)")
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in VERDICT_COLOURS.values()],
              labels=list(VERDICT_COLOURS), fontsize=7, loc="lower right")
    fig.tight_layout()

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
    deltas_by_correct = shift.deltas_by_correct(scores, headline_percentile=P)
    deltas_by_correct.to_csv(tables / "q2_deltas_by_correct.csv", index=False)
    display(formatting.table(headline_rows(deltas_by_correct).drop(columns="threshold"),
                             digits=4, caption=(
        "n: images per side (n_mixed: the seeds disagree); Δ: fine-tuned − frozen; diff: "
        "delta_right − delta_wrong; p: "
        f"Mann–Whitney U, right vs wrong, only where both sides have {st.MIN_SIDE} images or "
        "more.")))
else:
    display(Markdown("Not split (`report.split_by_correct` is off)."))

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
    TWIN = f"{control['variant']} (parts removed)"
    # The twin's maps on the annotated images *with* their parts, like every other run's:
    # does training on these façades, without a style signal, move attention by itself?
    twin_store = extract.store_for(extraction["cache_dir"], dataset_id, control["model"]["name"],
                                   "twin-" + control["variant"], key=twin_run["key"])
    extract.extract_models(wc.samples, [extract.MapJob(
        ModelChoice(**control["model"]["choice"]), twin_store, None, Path(twin_run["dir"]))],
        batch_size=extraction["batch_size"], device=extraction["device"], seed=seed,
        progress=False)
    twin_scores = scoring.score_store(
        twin_store, scoring.build_targets(wc.samples, spec_of[control["model"]["name"]].geometry,
                                          metrics["resolution"]),
        model=control["model"]["name"], variant=TWIN, percentiles=metrics["percentiles"],
        resolution=metrics["resolution"], progress=False)
    control_scores = pd.concat([scores, twin_scores], ignore_index=True)
    held_out = ft.test_items(wc)
    accuracy_of = {m["dir"]: ft.evaluate_run(m, held_out) for m in trained}
    accuracy_of[twin_run["dir"]] = ft.evaluate_run(twin_run, ft.test_items(twin))
    control_runs = [*((m["variant"], m) for m in trained), (TWIN, twin_run)]
    rows = []
    for variant, run in control_runs:
        test = accuracy_of[run["dir"]]
        p = sps.binomtest(test["correct"], test["n"], 0.25, alternative="greater").pvalue
        rows.append({"model": run["model"]["name"], "variant": variant,
                     "images": "parts removed" if variant == TWIN else "with the parts",
                     "val accuracy (picks the epoch)": run["val_accuracy"],
                     "test accuracy": test["accuracy"], "test macro-F1": test["macro_f1"],
                     "n test": test["n"], "p (test accuracy > chance, binomial)": p,
                     "learned (gate)": p < ALPHA})
    accuracy_table = pd.DataFrame(rows)
    accuracy_table.to_csv(tables / "q2_positive_control_accuracy.csv", index=False)
    display(formatting.table(accuracy_table, digits=4))

# %%
def union_layers(model, variant, method, metric, threshold, images):
    """Per-image values against the union (head mean): images x layers."""
    frame = control_scores
    rows = frame[(frame["model"] == model) & (frame["variant"] == variant)
                 & (frame["method"] == method) & (frame["target"] == "union")
                 & (frame["head"] == -1) & (frame["metric"] == metric)]
    if threshold is not None:
        rows = rows[np.isclose(rows["threshold"], threshold)]
    wide = rows.pivot_table(index="image_id", columns="layer", values="value", observed=True)
    return wide.reindex(images)


PRIMARY = "coverage"
if synthetic_data and trained:
    images = sorted(s.image_id for s in wc.samples)
    first = selection.halvings(len(images), seed=seed)
    centre = {metric: union_layers("baseline", "baseline", "centre_gaussian", metric, threshold,
                                   images).iloc[:, 0].to_numpy()
              for metric, threshold in (("iou", P), ("coverage", None))}
    learned = accuracy_table.set_index(["model", "variant"])["learned (gate)"]
    control_rows = []
    for variant, m in control_runs:
        name = m["model"]["name"]
        own_method = HEADLINE_METHOD[spec_of[name].readout]
        own = control_scores[(control_scores["model"] == name)
                             & (control_scores["variant"] == variant)]
        for method in sorted(set(own["method"])):
            for metric, threshold in (("coverage", None), ("iou", P)):
                tuned = union_layers(name, variant, method, metric, threshold, images)
                untrained = union_layers(name, "frozen", method, metric, threshold, images)
                held_tuned, chosen = selection.cross_fit_arrays(tuned.to_numpy()[None], first)
                held_untrained = selection.read_at_choices(
                    untrained.reindex(columns=tuned.columns).to_numpy()[None], chosen, first)
                layers = pd.Series(tuned.columns[chosen[chosen >= 0]])
                layer = int(layers.mode().iloc[0])
                for against, reference in (("untrained", held_untrained[0]),
                                           ("centre baseline", centre[metric])):
                    endpoint = (method == own_method and metric == PRIMARY
                                and against == "untrained")
                    role = ("secondary" if not endpoint else
                            "primary" if learned[(name, variant)] else "null control")
                    r = st.paired_shift(reference, held_tuned[0], n_boot=stats["n_boot"],
                                        seed=seed, margin=stats["sesoi"][metric], alpha=ALPHA)
                    control_rows.append({
                        "model": name, "variant": variant, "role": role,
                        "test_accuracy": accuracy_of[m["dir"]]["accuracy"],
                        "method": method, "layer": layer,
                        "layer_stability": float((layers == layer).mean()),
                        "metric": metric if threshold is None else f"{metric}@{threshold:g}",
                        "against": against, "reference": r["mean_b"], "fine_tuned": r["mean_a"],
                        "delta": r["mean_diff"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                        "p_wilcoxon": r["p_wilcoxon"], "p_ttest": r["p_t"], "d_z": r["d_z"],
                        "margin": stats["sesoi"][metric], "p_tost": r["p_tost"]})
    control_table = pd.DataFrame(control_rows)
    primary = control_table["role"] == "primary"
    null = control_table["role"] == "null control"
    control_table["p_holm"] = np.nan
    control_table.loc[primary, "p_holm"] = st.holm(control_table.loc[primary, "p_wilcoxon"])
    # primary: Holm-adjusted; a null control is one test on its own (raw p); secondary: none
    p_reject = control_table["p_holm"].where(primary, control_table["p_wilcoxon"])
    control_table["outcome"] = np.where(
        primary | null, st.verdicts(control_table["delta"], p_reject, control_table["p_tost"],
                                    control_table["margin"], alpha=ALPHA), "")
    control_table.to_csv(tables / "q2_positive_control.csv", index=False)
    endpoints = control_table[primary | null]
    display(Markdown("**Primary endpoints and null controls** (coverage of each run's own map "
                     "at its out-of-fold layer, trained − untrained):"))
    display(formatting.table(endpoints.drop(columns=["p_ttest"]), digits=4))
    display(Markdown(f"Secondary comparisons ({(~(primary | null)).sum()} rows: raw p, no "
                     "verdict) are in `tables/q2_positive_control.csv`; the largest per run:"))
    secondary = control_table[control_table["role"] == "secondary"]
    largest = secondary.groupby(["model", "variant"], sort=False)["delta"].idxmax()
    display(formatting.table(secondary.loc[largest, [
        "model", "variant", "method", "layer", "metric", "against", "reference", "fine_tuned",
        "delta", "ci_low", "ci_high", "p_wilcoxon"]], digits=4))

# %%
def signed(x):
    """A signed difference: 3 decimals, or 2 significant digits when it would print as 0."""
    return f"{x:+.3f}" if abs(x) >= 5e-4 else f"{x:+.1e}"


if synthetic_data and trained:
    lines = []
    for r in endpoints.itertuples():
        gate = accuracy_table.set_index(["model", "variant"]).loc[(r.model, r.variant)]
        verdict = (f"Holm p = {r.p_holm:.2g}" if r.role == "primary"
                   else f"TOST p = {r.p_tost:.2g}")
        lines.append(
            f"- {r.model} **{r.variant}** ({r.role}; test accuracy {r.test_accuracy:.2f}, "
            f"binomial p {gate['p (test accuracy > chance, binomial)']:.2g} against chance "
            f"0.25): {r.method} coverage at layer {r.layer} {r.reference:.3f} → "
            f"{r.fine_tuned:.3f}, Δ = {signed(r.delta)} [{signed(r.ci_low)}, {signed(r.ci_high)}], "
            f"{verdict}, margin ±{r.margin:g}: **{r.outcome}**.")
    n_primary, n_null = int(primary.sum()), int(null.sum())
    moved = int((control_table.loc[primary, "outcome"] == "enhanced").sum())
    still = int((control_table.loc[null, "outcome"] == "equivalent").sum())
    passes = moved == n_primary and still == n_null and n_primary > 0
    overall = (f"**Overall ({len(images)} annotated images, {recipe.seeds} seed"
               f"{'s' if recipe.seeds != 1 else ''} per run): {moved} of {n_primary} runs that "
               "learned moved their maps onto the "
               f"boxes (*enhanced*); {still} of {n_null} null control"
               f"{'s' if n_null != 1 else ''} shown *equivalent* (no movement): the control "
               f"{'passes' if passes else 'passes only in part'}.**")
    null_runs = set(control_table.loc[null, "variant"])
    # a null control's other maps that moved onto the boxes (trained vs untrained, up)
    moved_null = secondary[secondary["variant"].isin(null_runs)
                           & (secondary["against"] == "untrained") & (secondary["delta"] > 0)
                           & (secondary["p_wilcoxon"] < ALPHA)]
    caveat = "" if not len(moved_null) else (
        f"\n\nBut {len(moved_null)} secondary comparison{'s' if len(moved_null) != 1 else ''} "
        f"of the null control{'s' if len(null_runs) != 1 else ''} moved onto the boxes "
        f"(trained − untrained, raw p < {ALPHA}, uncorrected, no verdict): " + "; ".join(
            f"{r.variant} {r.method} {r.metric} at layer {r.layer} Δ = {signed(r.delta)} "
            f"[{signed(r.ci_low)}, {signed(r.ci_high)}], p = {r.p_wilcoxon:.2g}"
            for r in moved_null.itertuples())
        + ". A map can move in training without the model learning the style, which tempers "
          "what a primary *enhanced* shows.")
    display(Markdown(f"**The positive control** ({n_primary} primary test"
                     f"{'s' if n_primary != 1 else ''}, Holm at α = {ALPHA}; "
                     f"{n_null} null control{'s' if n_null != 1 else ''}):\n"
                     + "\n".join(lines) + "\n\n" + overall + caveat))
    per_style = []
    for r in endpoints.itertuples():
        tuned = union_layers(r.model, r.variant, r.method, PRIMARY, None, images)[r.layer]
        before = union_layers(r.model, "frozen", r.method, PRIMARY, None, images)[r.layer]
        per_style.append((tuned - before).groupby(pd.Series(label_of)).agg(["mean", "median"])
                         .stack().rename(f"{r.model} · {r.variant}"))
    display(Markdown("Per style, Δ coverage at the chosen layer (in sample, a picture not a "
                     "test: a run that learned some styles only moves on those):"))
    display(pd.concat(per_style, axis=1).T.round(3))

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
# types moved differently. The test treats every box as independent, though the boxes of
# one image share its map: read its p as a screen, not as a confirmatory test.

# %%
plots.random_weights_banner(models)

# %%
def headline_deltas(boxes):
    """Per-target Δ of IoU@p of each model's headline maps (fine-tuned variants only)."""
    frame = shift.target_deltas(scores, metric="iou", threshold=P, boxes=boxes)
    if frame.empty:
        return frame
    frame = headline_rows(frame)
    return frame[frame["strategy"] != "linear_probe"]


per_image = headline_deltas(boxes=False)
if len(per_image) and wc.has_labels:
    by_style = per_image.assign(**{wc.label_name: per_image["image_id"].map(label_of)}).pivot_table(
        index=["model", "strategy", "method"], columns=wc.label_name, values="delta",
        aggfunc="mean")
    style_n = pd.Series(label_of).value_counts().sort_index()
    display(formatting.table(by_style, caption=(
        f"Per {wc.label_name}: mean ΔIoU@{P:g} against the union, fine-tuned − frozen, headline "
        f"maps; images per {wc.label_name}: "
        + ", ".join(f"{k} {v}" for k, v in style_n.items()) + ".")))
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
    first = per_box.groupby(["model", "strategy", "method"]).ngroup() == 0  # boxes of one map
    box_n = per_box.loc[first, "feature"].value_counts().sort_index()
    display(formatting.table(by_feature, caption=(
        f"Per feature type: mean ΔIoU@{P:g} against each box on its own, headline maps; "
        "boxes per type: " + ", ".join(f"{k} {v}" for k, v in box_n.items())
        + (". Kruskal–Wallis over the types with 3 boxes or more." if tests else "."))))

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
# Held-out test accuracy (the pool's test split; mean over seeds) against ΔIoU@p of every
# map kind at its last layer, per fine-tuned run. Linear probes are left out: their
# attention maps, and their Grad-CAM (the frozen model's Grad-CAM reads the same probe
# head), equal the frozen model's by construction, so their Δ is 0 whatever the accuracy.
# A rank correlation is given only over at least 6 runs (each run's own map kind), never
# over map kinds of the same run as if they were independent.

# %%
plots.random_weights_banner(models)

# %%
MIN_RUNS = 6
learners = [m for m in manifests if m["strategy"] != "linear_probe"]
test_of = {m["dir"]: (accuracy_of[m["dir"]] if synthetic_data and m["dir"] in accuracy_of
                      else ft.evaluate_run(m, ft.test_items(wc)))["accuracy"] for m in learners}
accuracy = (pd.DataFrame([{"model": m["model"]["name"], "strategy": m["strategy"],
                           "test_accuracy": test_of[m["dir"]]} for m in learners])
            .groupby(["model", "strategy"])["test_accuracy"].mean()
            if learners else pd.Series(dtype=float, name="test_accuracy"))
points = deltas[(deltas["metric"] == "iou") & np.isclose(deltas["threshold"], P)
                & (deltas["strategy"] != "linear_probe")]
points = points[points["layer"] == points.groupby(["model", "method"])["layer"].transform("max")]
points = points.join(accuracy, on=["model", "strategy"])
if len(points):
    points = points.assign(run=points["model"] + " · " + points["strategy"])
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.scatterplot(data=points, x="test_accuracy", y="delta", hue="run", style="method",
                    palette=plots.palette(points["run"]), s=70, ax=ax)
    ax.axhline(0, color="black", lw=0.8)
    ax.axvline(0.25, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("held-out test accuracy (dashed: chance)")
    ax.set_ylabel(f"ΔIoU@{P:g}")
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    own = points[points["method"] == points["model"].map(
        lambda name: HEADLINE_METHOD[spec_of[name].readout])]
    n_runs = own[["model", "strategy"]].drop_duplicates().shape[0]
    if n_runs >= MIN_RUNS:
        rho = sps.spearmanr(own["test_accuracy"], own["delta"])
        display(Markdown(f"Spearman ρ = {rho.statistic:.2f} (p = {rho.pvalue:.2g}) over "
                         f"{n_runs} model × strategy runs, each run's own map kind."))
    else:
        display(Markdown(f"The plot rests on {n_runs} fine-tuned run{'s' if n_runs != 1 else ''} "
                         f"({len(points)} points: {points['method'].nunique()} map kinds); "
                         f"too few (under {MIN_RUNS}) for a correlation: a picture, not a test."))
