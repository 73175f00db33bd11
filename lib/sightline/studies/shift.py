"""Q2, how fine-tuning shifted alignment: the training tables, the shift's headline rows,
where attention moved (per style, per feature type, best layers, heads) and whether a
better classifier moved more, with the sentences and figures the report shows. The shift
statistics themselves are `sightline.paired_deltas`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy import stats as sps

from .. import data, plots
from .. import finetune as ft
from .. import paired_deltas as sh
from .. import stats as st
from .study import Study

HEADLINE_METHOD = {"cls": "cls", "probe": "probe", "tokens": "mean_received", "cnn": "gradcam"}
VERDICT_COLOURS = {"enhanced": "#4c72b0", "degraded": "#c44e52", "equivalent": "#8c8c8c",
                   "inconclusive": "#e0c27a"}
SHOWN = ["model", "strategy", "method", "layer", "metric", "n", "mean_frozen", "mean_finetuned",
         "delta", "ci_low", "ci_high", "p_wilcoxon", "p_holm", "p_tost", "d_z", "verdict"]
MAP = ["model", "strategy", "method"]  # one fine-tuned map kind
MIN_RUNS = 6  # fine-tuned runs a rank correlation of accuracy and shift needs
CHANCE = 0.25


def own_method(spec) -> str:
    """A model's own map: CLS / probe attention, attention received, Grad-CAM for a CNN."""
    return HEADLINE_METHOD[spec.readout]


# --- training ----------------------------------------------------------------------------
def split_table(splits: Mapping[int, ft.Split]) -> pd.DataFrame:
    """Per seed: the split's id and its train / val sizes."""
    return pd.DataFrame([{"seed": s.seed, "split id": s.id, "train": len(s.train),
                          "val": len(s.val)} for s in splits.values()])


def runs_table(manifests: Sequence[dict]) -> pd.DataFrame:
    """One row per run (``finetune_runs.csv``)."""
    return pd.DataFrame(ft.runs_table(manifests))


def training_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model and strategy: seeds, validation accuracy (mean, sd), macro-F1, best epoch,
    wall time, trainable parameters and checkpoint size."""
    return (runs.groupby(["model", "strategy"])
            .agg(seeds=("seed", "size"), val_accuracy=("val_accuracy", "mean"),
                 val_accuracy_sd=("val_accuracy", "std"), val_macro_f1=("val_macro_f1", "mean"),
                 best_epoch=("best_epoch", "mean"), wall_time_s=("wall_time_s", "sum"),
                 trainable_params=("trainable_params", "first"),
                 checkpoint_mib=("checkpoint_mib", "first"))
            .reset_index())


def training_curves(manifests: Sequence[dict]) -> plt.Figure | None:
    """Training loss and validation accuracy per epoch of every run (None without runs)."""
    curves = pd.DataFrame([{**h, "model": m["model"]["name"], "strategy": m["strategy"],
                            "seed": m["seed"]} for m in manifests for h in m["history"]])
    if not len(curves):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(plots.PAGE_WIDTH, 3.4), layout="constrained")
    curves["run"] = curves["model"] + " · " + curves["strategy"]
    colours = plots.palette(curves["run"])
    sns.lineplot(data=curves, x="epoch", y="train_loss", hue="run", palette=colours, ax=axes[0],
                 legend=False)
    sns.lineplot(data=curves, x="epoch", y="val_accuracy", hue="run", palette=colours, ax=axes[1])
    axes[1].axhline(CHANCE, color="grey", ls="--", lw=0.8)
    axes[0].set_title("training loss (class-weighted CE)", fontsize=10)
    axes[1].set_title("validation accuracy (dashed: chance)", fontsize=10)
    for ax in axes:
        plots.integer_ticks(ax)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return fig


# --- the shift's headline ----------------------------------------------------------------
def margins_sentence(sesoi: Mapping[str, float], deltas: pd.DataFrame) -> str:
    """The margins of the metrics the shift table holds."""
    return "Margins (smallest effect size of interest): " + ", ".join(
        f"{metric} ±{margin:g}" for metric, margin in sesoi.items()
        if metric in set(deltas["metric"])) + "."


def headline_rows(table: pd.DataFrame, specs: Mapping) -> pd.DataFrame:
    """Each model's own map (`own_method`) and its Grad-CAM, at their last layer."""
    keep = [rows[rows["layer"] == rows["layer"].max()]
            for (model, method), rows in table.groupby(["model", "method"])
            if method in (own_method(specs[model]), "gradcam")]
    return pd.concat(keep) if keep else table.iloc[:0]


def headline(deltas: pd.DataFrame, specs: Mapping, percentile: float) -> pd.DataFrame:
    """The headline rows at the headline percentile (and the threshold-free metrics)."""
    rows = headline_rows(deltas, specs)
    return rows[np.isclose(rows["threshold"], percentile) | rows["threshold"].isna()]


def fine_tuned(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the runs that can move a map (linear probes left out)."""
    return table[table["strategy"] != "linear_probe"]


def probe_sentence(headline: pd.DataFrame) -> str | None:
    """The linear probes' largest |Δ| per method and their verdicts (None without probes)."""
    probe = headline[headline["strategy"] == "linear_probe"]
    if not len(probe):
        return None
    return ("Linear probe rows (attention maps bit-identical to the frozen model's by "
            "construction): " + ", ".join(
                f"{k}: {v}" for k, v in probe.groupby("method")["delta"]
                .agg(lambda d: f"max |Δ| = {d.abs().max():.2g}").items())
            + f"; verdicts: {', '.join(sorted(set(probe['verdict'])))}.")


LAST_LAYER_NOTE = (
    "These rows read each map at its model's last layer. On this synthetic data the LoRA "
    "and full rows are the runs the positive control below tests as pre-specified, at the "
    "layer chosen out of fold: there a run's Δ can differ in size, even in sign, from its "
    "last layer's here, and the positive control's outcome is the one that counts.")


def verdict_bars(headline: pd.DataFrame, margin: float, percentile: float) -> plt.Figure | None:
    """ΔIoU with its CI per fine-tuned headline row, coloured by verdict, the margin shaded."""
    rows = fine_tuned(headline[headline["metric"] == "iou"])
    if not len(rows):
        return None
    labels = rows["model"] + " · " + rows["strategy"] + " · " + rows["method"]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    ax.barh(labels, rows["delta"], color=rows["verdict"].map(VERDICT_COLOURS),
            xerr=[rows["delta"] - rows["ci_low"], rows["ci_high"] - rows["delta"]])
    ax.axvline(0, color="black", lw=0.8)
    ax.invert_yaxis()
    ax.axvspan(-margin, margin, color="#dddddd", alpha=0.6, lw=0)
    ax.set_xlabel(f"ΔIoU@{percentile:g} (fine-tuned − frozen, 95% CI; shaded: ±{margin:g} margin)")
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in VERDICT_COLOURS.values()],
              labels=list(VERDICT_COLOURS), fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


BY_CORRECT_CAPTION = (
    "n: images per side (n_mixed: the seeds disagree); Δ: fine-tuned − frozen; diff: "
    "delta_right − delta_wrong; p: Mann–Whitney U, right vs wrong, only where both sides have "
    f"{st.MIN_SIDE} images or more.")


def sweep_figure(deltas: pd.DataFrame, specs: Mapping) -> plt.Figure | None:
    """ΔIoU at every percentile of the fine-tuned headline maps."""
    sweep = fine_tuned(headline_rows(deltas[deltas["metric"] == "iou"], specs))
    if not len(sweep):
        return None
    sweep = sweep.assign(run=sweep["model"] + " · " + sweep["strategy"] + " · " + sweep["method"])
    fig, ax = plt.subplots(figsize=(plots.PAGE_WIDTH, 3.4), layout="constrained")
    sns.lineplot(data=sweep, x="threshold", y="delta", hue="run",
                 palette=plots.palette(sweep["run"]), marker="o", ax=ax)
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel="percentile p", ylabel="ΔIoU@p")
    ax.get_legend().remove()
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside right upper")
    return fig


# --- where attention moved ---------------------------------------------------------------
def headline_deltas(scores: pd.DataFrame, specs: Mapping, percentile: float, *,
                    boxes: bool) -> pd.DataFrame:
    """Per box (``boxes``) or per image's union: Δ of IoU@p of the fine-tuned headline maps."""
    frame = sh.target_deltas(scores, metric="iou", threshold=percentile, boxes=boxes)
    if frame.empty:
        return frame
    return fine_tuned(headline_rows(frame, specs))


def by_style(per_image: pd.DataFrame, dataset: data.Dataset,
             percentile: float) -> tuple[pd.DataFrame, str]:
    """Mean ΔIoU against the union per image label (style), and its caption."""
    label_of = pd.Series({s.image_id: s.label for s in dataset.samples})
    name = dataset.label_name
    table = per_image.assign(**{name: per_image["image_id"].map(label_of)}).pivot_table(
        index=MAP, columns=name, values="delta", aggfunc="mean")
    counts = label_of.value_counts().sort_index()
    return table, (f"Per {name}: mean ΔIoU@{percentile:g} against the union, fine-tuned − "
                   f"frozen, headline maps; images per {name}: "
                   + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".")


def by_feature(per_box: pd.DataFrame, percentile: float, *,
               min_boxes: int = 3) -> tuple[pd.DataFrame, str]:
    """Mean ΔIoU against each box per feature type (``q2_deltas_by_feature.csv``), with a
    Kruskal-Wallis test over the types with ``min_boxes`` boxes or more, and its caption."""
    table = per_box.pivot_table(index=MAP, columns="feature", values="delta", aggfunc="mean")
    tests = []
    for key, rows in per_box.groupby(MAP):
        counts = rows["feature"].value_counts()
        rows = rows[rows["feature"].isin(counts[counts >= min_boxes].index)]
        if rows["feature"].nunique() >= 2:
            result = st.omnibus(rows, value="delta", group="feature")
            tests.append((*key, result["statistic"], result["p"]))
    if tests:
        table = table.join(pd.DataFrame(tests, columns=[*MAP, "Kruskal-Wallis H", "p"]).set_index(MAP))
    first = per_box.groupby(MAP).ngroup() == 0  # boxes of one map
    counts = per_box.loc[first, "feature"].value_counts().sort_index()
    return table, (f"Per feature type: mean ΔIoU@{percentile:g} against each box on its own, "
                   "headline maps; boxes per type: " + ", ".join(
                       f"{k} {v}" for k, v in counts.items())
                   + (f". Kruskal–Wallis over the types with {min_boxes} boxes or more."
                      if tests else "."))


def _union_iou(scores: pd.DataFrame, percentile: float, heads: bool) -> pd.DataFrame:
    rows = scores[(scores["target"] == "union") & ((scores["head"] >= 0) if heads
                                                    else (scores["head"] == -1))
                  & (scores["metric"] == "iou") & np.isclose(scores["threshold"], percentile)]
    return rows.assign(strategy=rows["variant"].astype(str).map(ft.strategy_of))


def best_layers(scores: pd.DataFrame, percentile: float) -> pd.DataFrame:
    """Per fine-tuned model, strategy and method: the layer of highest mean IoU@p (union,
    head mean), beside the frozen model's (in sample, optimistic for both)."""
    means = (_union_iou(scores[scores["model"] != "baseline"], percentile, heads=False)
             .groupby(["model", "strategy", "method", "layer"], observed=True)["value"].mean()
             .rename("iou").reset_index())
    best = means.loc[means.groupby(["model", "strategy", "method"], observed=True)["iou"]
                     .idxmax()]
    tuned = best[~best["strategy"].isin(["frozen", "linear_probe"])]
    frozen = best.loc[best["strategy"] == "frozen", ["model", "method", "layer", "iou"]]
    return tuned.merge(frozen, on=["model", "method"], how="left",
                       suffixes=("", "_frozen")).rename(columns={
        "layer": "best layer", "iou": f"IoU@{percentile:g}", "layer_frozen": "best layer frozen",
        "iou_frozen": f"IoU@{percentile:g} frozen"})


def heads_changed(scores: pd.DataFrame, percentile: float, top: int = 5) -> pd.DataFrame:
    """Per fine-tuned strategy, each model's ``top`` heads whose mean IoU@p moved most."""
    heads = (_union_iou(scores, percentile, heads=True)
             .groupby(["model", "strategy", "method", "layer", "head"], observed=True)["value"]
             .mean().unstack("strategy"))
    changed = []
    for strategy in [c for c in heads.columns if c not in ("frozen", "linear_probe")]:
        delta = (heads[strategy] - heads["frozen"]).dropna().rename("delta").reset_index()
        delta["strategy"] = strategy
        changed.append(delta.reindex(delta["delta"].abs().sort_values(ascending=False).index)
                       .groupby("model").head(top))
    return pd.concat(changed, ignore_index=True) if changed else pd.DataFrame()


# --- accuracy against shift --------------------------------------------------------------
def held_out_accuracy(manifests: Sequence[dict], dataset: data.Dataset,
                  known: Mapping[str, dict] | None = None) -> pd.Series:
    """Held-out test accuracy per model and strategy (mean over seeds) of the fine-tuned runs
    (linear probes left out); ``known``: evaluations already made, by run directory."""
    known = known or {}
    learners = [m for m in manifests if m["strategy"] != "linear_probe"]
    if not learners:
        return pd.Series(dtype=float, name="test_accuracy")
    held_out = ft.test_items(dataset)
    return pd.DataFrame([{
        "model": m["model"]["name"], "strategy": m["strategy"],
        "test_accuracy": (known.get(m["dir"]) or ft.evaluate_run(m, held_out))["accuracy"]}
        for m in learners]).groupby(["model", "strategy"])["test_accuracy"].mean()


def accuracy_points(deltas: pd.DataFrame, accuracy: pd.Series, percentile: float) -> pd.DataFrame:
    """ΔIoU@p of every map kind at its last layer per fine-tuned run, with the run's accuracy."""
    points = deltas[(deltas["metric"] == "iou") & np.isclose(deltas["threshold"], percentile)
                    & (deltas["strategy"] != "linear_probe")]
    points = points[points["layer"] == points.groupby(["model", "method"])["layer"]
                    .transform("max")]
    return points.join(accuracy, on=["model", "strategy"])


def accuracy_figure(points: pd.DataFrame, percentile: float) -> plt.Figure:
    points = points.assign(run=points["model"] + " · " + points["strategy"])
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.scatterplot(data=points, x="test_accuracy", y="delta", hue="run", style="method",
                    palette=plots.palette(points["run"]), s=70, ax=ax)
    ax.axhline(0, color="black", lw=0.8)
    ax.axvline(CHANCE, color="grey", ls="--", lw=0.8)
    ax.set(xlabel="held-out test accuracy (dashed: chance)", ylabel=f"ΔIoU@{percentile:g}")
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return fig


def accuracy_sentence(points: pd.DataFrame, specs: Mapping) -> str:
    """Spearman's ρ of accuracy and Δ over the runs' own map kinds, given `MIN_RUNS` runs; else
    why there is none."""
    own = points[points["method"] == points["model"].map(lambda m: own_method(specs[m]))]
    n_runs = own[["model", "strategy"]].drop_duplicates().shape[0]
    if n_runs >= MIN_RUNS:
        rho = sps.spearmanr(own["test_accuracy"], own["delta"])
        return (f"Spearman ρ = {rho.statistic:.2f} (p = {rho.pvalue:.2g}) over {n_runs} model × "
                "strategy runs, each run's own map kind.")
    return (f"The plot rests on {n_runs} fine-tuned run{'s' if n_runs != 1 else ''} "
            f"({len(points)} points: {points['method'].nunique()} map kinds); too few (under "
            f"{MIN_RUNS}) for a correlation: a picture, not a test.")


def shift_maps(study: Study, runs: Sequence[dict], examples: Sequence[str],
               layers: Mapping[tuple[str, str, str], int] | None = None) -> list[plt.Figure]:
    """Per trained run: frozen and fine-tuned map of the model's own method on ``examples``,
    and their difference (both min-max scaled; red: more), boxes on top. The layer is
    ``layers[(model, variant, method)]`` where given, else the last."""
    by_id = {s.image_id: s for s in study.samples}
    figures = []
    for m in [m for m in runs if (m["model"]["name"], m["variant"]) in study.stores]:
        name, variant = m["model"]["name"], m["variant"]
        spec = study.specs[name]
        method = own_method(spec)
        before_store, after_store = study.stores[(name, "frozen")], study.stores[(name, variant)]
        last = max(layer for mth, layer in after_store.keys() if mth == method)
        layer = (layers or {}).get((name, variant, method), last)
        _, before = before_store.read(method, layer, examples)
        _, after = after_store.read(method, layer, examples)
        fig, axes = plt.subplots(len(examples), 3, figsize=(plots.PAGE_WIDTH, 2.4 * len(examples)),
                                 squeeze=False, layout="constrained")
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
        fig.suptitle(f"{name} · {variant}")
        plots.map_scale(fig, axes[:, :2], location="bottom")
        plots.map_scale(fig, axes[:, 2], label="shift: fine-tuned − frozen\n(both min-max scaled)",
                        cmap="RdBu_r", limits=(-1, 1), location="bottom")
        figures.append(fig)
    return figures
