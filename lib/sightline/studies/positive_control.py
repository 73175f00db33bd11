"""Q2's pre-specified positive control (synthetic data only): the parts-removed twin, the
gate (did each run learn the planted styles?), one primary endpoint per run that learned
(coverage of its own map, trained − untrained, at the layer chosen out of fold, Holm over
the primaries), null controls for runs that did not (TOST: no movement), secondary
comparisons (raw p, no verdict) and the report's verdict lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats as sps

from .. import data, extract, plots, scoring, selection, synthetic
from .. import finetune as ft
from .. import stats as st
from ..config import ModelChoice
from .shift import CHANCE, own_method
from .study import Study

PRIMARY = "coverage"
GATE_P = "p (test accuracy > chance, binomial)"


def trained_runs(manifests: Sequence[dict]) -> list[dict]:
    """The runs whose maps can move (LoRA and full; a linear probe leaves them as they are)."""
    return [m for m in manifests if m["strategy"] in ("full", "lora")]


def train_twin(study: Study, control: dict) -> tuple[data.Dataset, dict]:
    """The parts-removed twin data set (the same images re-rendered without the diagnostic
    parts) and the ``control`` run's model and recipe trained on it, on the same split."""
    settings = study.params.dataset
    root = Path(settings.root).with_name(Path(settings.root).name + "-noparts")
    synthetic.make_synthetic(root, n_annotated=settings.n_annotated, n_pool=settings.n_pool,
                             seed=study.params.seed, image_size=tuple(settings.image_size),
                             parts=False)
    twin = data.load_wikichurches(root)
    recipe = study.params.finetune
    split = ft.make_split(twin, data.dataset_fingerprint(root), control["seed"],
                          recipe.val_fraction)
    if [i for i, *_ in split.train] != [i for i, *_ in study.splits[control["seed"]].train]:
        raise RuntimeError("the twin's train split differs from its original's")
    run = ft.train_run(ModelChoice(**control["model"]["choice"]), control["strategy"],
                       control["seed"], split, recipe, recipe.checkpoint_dir,
                       model_seed=study.params.seed, progress=False)
    return twin, run


def twin_scores(study: Study, control: dict, run: dict, variant: str) -> pd.DataFrame:
    """The twin's maps on the annotated images *with* their parts, scored like every run's."""
    name = control["model"]["name"]
    settings, metrics = study.params.extraction, study.params.metrics
    store = extract.store_for(settings.cache_dir, study.dataset_id, name,
                              "twin-" + control["variant"], key=run["key"])
    extract.extract_models(study.samples, [extract.MapJob(
        ModelChoice(**control["model"]["choice"]), store, None, Path(run["dir"]))],
        batch_size=settings.batch_size, device=settings.device, seed=study.params.seed,
        progress=False)
    targets = scoring.build_targets(study.samples, study.specs[name].geometry, metrics.resolution)
    return scoring.score_store(store, targets, model=name, variant=variant,
                               percentiles=list(metrics.percentiles),
                               resolution=metrics.resolution, progress=False)


def gate_table(runs: Sequence[tuple[str, dict, dict]], twin_variant: str,
               alpha: float) -> pd.DataFrame:
    """Per ``(variant, manifest, held-out evaluation)``: validation and test accuracy, the one-sided
    binomial p of test accuracy above chance and whether the run learned."""
    rows = []
    for variant, run, test in runs:
        p = float(sps.binomtest(test["correct"], test["n"], CHANCE, alternative="greater").pvalue)
        rows.append({"model": run["model"]["name"], "variant": variant,
                     "images": "parts removed" if variant == twin_variant else "with the parts",
                     "val accuracy (picks the epoch)": run["val_accuracy"],
                     "test accuracy": test["accuracy"], "test macro-F1": test["macro_f1"],
                     "n test": test["n"], GATE_P: p, "learned (gate)": p < alpha})
    return pd.DataFrame(rows)


def union_layers(scores: pd.DataFrame, model: str, variant: str, method: str, metric: str,
                 threshold: float | None, images: Sequence[str]) -> pd.DataFrame:
    """Per-image values against the union (head mean): images x layers."""
    rows = scores[(scores["model"] == model) & (scores["variant"] == variant)
                  & (scores["method"] == method) & (scores["target"] == "union")
                  & (scores["head"] == -1) & (scores["metric"] == metric)]
    if threshold is not None:
        rows = rows[np.isclose(rows["threshold"], threshold)]
    return rows.pivot_table(index="image_id", columns="layer", values="value",
                            observed=True).reindex(images)


def endpoint_table(scores: pd.DataFrame, gate: pd.DataFrame, own_methods: Mapping[str, str],
                   images: Sequence[str], *, percentile: float, sesoi: Mapping[str, float],
                   n_boot: int, seed: int, alpha: float) -> pd.DataFrame:
    """Every map of every gated run, trained against untrained and against the centre
    baseline, at the layer chosen out of fold (two-fold cross-fitting over seeded halvings),
    with its role: *primary* (the run's own map, coverage vs untrained, the run learned),
    *null control* (the same, the run did not learn) or *secondary*; no verdicts yet."""
    first = selection.halvings(len(images), seed=seed)
    endpoints = (("coverage", None), ("iou", percentile))  # (metric, threshold) per map
    scores = scores[(scores["target"] == "union") & (scores["head"] == -1)
                    & scores["metric"].isin([metric for metric, _ in endpoints])]
    centre = {metric: union_layers(scores, "baseline", "baseline", "centre_gaussian", metric,
                                   threshold, images).iloc[:, 0].to_numpy()
              for metric, threshold in endpoints}
    rows = []
    for run in gate.to_dict("records"):
        name, variant = run["model"], run["variant"]
        own = scores[(scores["model"] == name) & (scores["variant"] == variant)]
        for method in sorted(set(own["method"])):
            for metric, threshold in endpoints:
                tuned = union_layers(scores, name, variant, method, metric, threshold, images)
                untrained = union_layers(scores, name, "frozen", method, metric, threshold, images)
                held_tuned, chosen = selection.cross_fit_arrays(tuned.to_numpy()[None], first)
                held_untrained = selection.read_at_choices(
                    untrained.reindex(columns=tuned.columns).to_numpy()[None], chosen, first)
                layers = pd.Series(tuned.columns[chosen[chosen >= 0]])
                layer = int(layers.mode().iloc[0])
                for against, reference in (("untrained", held_untrained[0]),
                                           ("centre baseline", centre[metric])):
                    endpoint = (method == own_methods[name] and metric == PRIMARY
                                and against == "untrained")
                    role = ("secondary" if not endpoint else
                            "primary" if run["learned (gate)"] else "null control")
                    r = st.paired_shift(reference, held_tuned[0], n_boot=n_boot, seed=seed,
                                        margin=sesoi[metric], alpha=alpha)
                    rows.append({
                        "model": name, "variant": variant, "role": role,
                        "test_accuracy": run["test accuracy"], "method": method, "layer": layer,
                        "layer_stability": float((layers == layer).mean()),
                        "metric": metric if threshold is None else f"{metric}@{threshold:g}",
                        "against": against, "reference": r["mean_b"], "fine_tuned": r["mean_a"],
                        "delta": r["mean_diff"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                        "p_wilcoxon": r["p_wilcoxon"], "p_ttest": r["p_t"], "d_z": r["d_z"],
                        "margin": sesoi[metric], "p_tost": r["p_tost"]})
    return pd.DataFrame(rows)


def judge(table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Holm over the primary tests only, then the verdicts: a primary reads its Holm p, a null
    control its own raw p (one test on its own); secondary rows get none."""
    primary, null = table["role"] == "primary", table["role"] == "null control"
    table = table.assign(p_holm=np.nan)
    table.loc[primary, "p_holm"] = st.holm(table.loc[primary, "p_wilcoxon"])
    p_reject = table["p_holm"].where(primary, table["p_wilcoxon"])
    return table.assign(outcome=np.where(primary | null, st.verdicts(
        table["delta"], p_reject, table["p_tost"], table["margin"], alpha=alpha), ""))


def signed(x: float) -> str:
    """A signed difference: 3 decimals, or 2 significant digits when it would print as 0."""
    return f"{x:+.3f}" if abs(x) >= 5e-4 else f"{x:+.1e}"


def _s(n: int) -> str:
    return "s" if n != 1 else ""


@dataclass(frozen=True)
class PositiveControl:
    """The control's gate (``accuracy``), its judged comparisons (``table``), the scores they
    read (the twin's included), and what the verdict lines need."""

    accuracy: pd.DataFrame
    table: pd.DataFrame
    scores: pd.DataFrame
    images: list[str]
    seeds: int
    alpha: float
    evaluations: dict[str, dict]

    @property
    def endpoints(self) -> pd.DataFrame:
        return self.table[self.table["role"].isin(["primary", "null control"])]

    @property
    def secondary(self) -> pd.DataFrame:
        return self.table[self.table["role"] == "secondary"]

    def largest_secondary(self) -> pd.DataFrame:
        """Each run's secondary comparison with the largest Δ."""
        rows = self.secondary.loc[self.secondary.groupby(["model", "variant"], sort=False)
                                  ["delta"].idxmax()]
        return rows[["model", "variant", "method", "layer", "metric", "against", "reference",
                     "fine_tuned", "delta", "ci_low", "ci_high", "p_wilcoxon"]]

    def summary(self) -> str:
        """The report's verdict lines: one per endpoint, the overall line and, where a null
        control's other maps moved onto the boxes, the caveat."""
        gate = self.accuracy.set_index(["model", "variant"])[GATE_P]
        lines = [
            f"- {r.model} **{r.variant}** ({r.role}; test accuracy {r.test_accuracy:.2f}, "
            f"binomial p {gate[(r.model, r.variant)]:.2g} against chance {CHANCE:g}): {r.method} "
            f"coverage at layer {r.layer} {r.reference:.3f} → {r.fine_tuned:.3f}, Δ = "
            f"{signed(r.delta)} [{signed(r.ci_low)}, {signed(r.ci_high)}], "
            + (f"Holm p = {r.p_holm:.2g}" if r.role == "primary" else f"TOST p = {r.p_tost:.2g}")
            + f", margin ±{r.margin:g}: **{r.outcome}**." for r in self.endpoints.itertuples()]
        role = self.table["role"]
        n_primary, n_null = int((role == "primary").sum()), int((role == "null control").sum())
        moved = int((self.table.loc[role == "primary", "outcome"] == "enhanced").sum())
        still = int((self.table.loc[role == "null control", "outcome"] == "equivalent").sum())
        passes = moved == n_primary and still == n_null and n_primary > 0
        overall = (f"**Overall ({len(self.images)} annotated images, {self.seeds} seed"
                   f"{_s(self.seeds)} per run): {moved} of {n_primary} runs that learned moved "
                   f"their maps onto the boxes (*enhanced*); {still} of {n_null} null control"
                   f"{_s(n_null)} shown *equivalent* (no movement): the control "
                   f"{'passes' if passes else 'passes only in part'}.**")
        null_runs = set(self.table.loc[role == "null control", "variant"])
        s = self.secondary
        moved_null = s[s["variant"].isin(null_runs) & (s["against"] == "untrained")
                       & (s["delta"] > 0) & (s["p_wilcoxon"] < self.alpha)]
        caveat = "" if not len(moved_null) else (
            f"\n\nBut {len(moved_null)} secondary comparison{_s(len(moved_null))} of the null "
            f"control{_s(len(null_runs))} moved onto the boxes (trained − untrained, raw p < "
            f"{self.alpha}, uncorrected, no verdict): " + "; ".join(
                f"{r.variant} {r.method} {r.metric} at layer {r.layer} Δ = {signed(r.delta)} "
                f"[{signed(r.ci_low)}, {signed(r.ci_high)}], p = {r.p_wilcoxon:.2g}"
                for r in moved_null.itertuples())
            + ". A map can move in training without the model learning the style, which "
              "tempers what a primary *enhanced* shows.")
        return (f"**The positive control** ({n_primary} primary test{_s(n_primary)}, Holm at "
                f"α = {self.alpha}; {n_null} null control{_s(n_null)}):\n" + "\n".join(lines)
                + "\n\n" + overall + caveat)

    def per_style(self, dataset: data.Dataset) -> pd.DataFrame:
        """Per style: mean and median Δ coverage of each endpoint at its chosen layer (in
        sample: a picture, not a test)."""
        label_of = pd.Series({s.image_id: s.label for s in dataset.samples})
        columns = []
        for r in self.endpoints.itertuples():
            tuned, before = (union_layers(self.scores, r.model, variant, r.method, PRIMARY, None,
                                          self.images)[r.layer]
                             for variant in (r.variant, "frozen"))
            columns.append((tuned - before).groupby(label_of).agg(["mean", "median"]).stack()
                           .rename(f"{r.model} · {r.variant}"))
        return pd.concat(columns, axis=1).T.round(3)

    def chosen_layers(self, metric: str) -> dict[tuple[str, str, str], int]:
        """``{(model, variant, method): layer}`` the control chose out of fold for ``metric``."""
        rows = self.table[self.table["metric"] == metric].drop_duplicates(
            ["model", "variant", "method"])
        return {(r.model, r.variant, r.method): int(r.layer) for r in rows.itertuples()}


def absence(study: Study) -> str:
    """The one line said where the control did not run, and why."""
    return ("Not run: no LoRA or full fine-tuning run to test" if study.synthetic else "Not run: "
            "the control needs the project's synthetic data, whose boxes carry the label") + "."


def run(study: Study, scores: pd.DataFrame) -> PositiveControl | None:
    """The whole control on a synthetic study (None on other data or without LoRA / full
    runs): train the twin, extract and score its maps, gate every run, test, judge."""
    trained = trained_runs(study.manifests)
    if not study.synthetic or not trained:
        return None
    control = next((m for m in trained if m["strategy"] == "full"), trained[0])
    twin, twin_run = train_twin(study, control)
    variant = f"{control['variant']} (parts removed)"
    scores = pd.concat([scores, twin_scores(study, control, twin_run, variant)],
                       ignore_index=True)
    held_out = ft.test_items(study.dataset)
    evaluations = {m["dir"]: ft.evaluate_run(m, held_out) for m in trained}
    evaluations[twin_run["dir"]] = ft.evaluate_run(twin_run, ft.test_items(twin))
    stats = study.params.stats
    gate = gate_table([*((m["variant"], m, evaluations[m["dir"]]) for m in trained),
                       (variant, twin_run, evaluations[twin_run["dir"]])], variant, stats.alpha)
    images = sorted(s.image_id for s in study.samples)
    own = {name: own_method(spec) for name, spec in study.specs.items()}
    table = endpoint_table(scores, gate, own, images,
                           percentile=float(study.params.metrics.headline_percentile),
                           sesoi=dict(stats.sesoi), n_boot=stats.n_boot,
                           seed=study.params.seed, alpha=stats.alpha)
    return PositiveControl(gate, judge(table, stats.alpha), scores, images,
                           study.params.finetune.seeds, stats.alpha, evaluations)


def layer_figure(scores: pd.DataFrame, trained: Sequence[dict], specs: Mapping,
                 percentile: float) -> plt.Figure:
    """Mean IoU@p (union) per layer, untrained dashed and trained solid, per trained run's
    per-layer maps, with the centre baseline dotted."""
    union_iou = scores[(scores["target"] == "union") & (scores["head"] == -1)
                       & (scores["metric"] == "iou") & np.isclose(scores["threshold"], percentile)]
    centre_iou = union_iou.loc[union_iou["method"] == "centre_gaussian", "value"].mean()
    fig, axes = plt.subplots(1, len(trained), figsize=(plots.PAGE_WIDTH, 3.6),
                             squeeze=False, layout="constrained")
    colours = plots.palette(union_iou.loc[union_iou["model"].isin(
        [m["model"]["name"] for m in trained]), "method"].unique())
    for ax, m in zip(axes[0], trained, strict=True):
        name = m["model"]["name"]
        rows = union_iou[(union_iou["model"] == name)
                         & union_iou["variant"].isin(["frozen", m["variant"]])
                         & ((union_iou["method"] != "gradcam") | (specs[name].readout == "cnn"))]
        means = rows.groupby(["method", "variant", "layer"], observed=True)["value"].mean()
        for (method, variant), line in means.groupby(level=["method", "variant"]):
            ax.plot(line.index.get_level_values("layer"), line.to_numpy(), marker="o",
                    ls="--" if variant == "frozen" else "-", ms=3, color=colours[method],
                    label=f"{method} · {'untrained' if variant == 'frozen' else variant}")
        ax.axhline(centre_iou, color=plots.palette(["centre_gaussian"])["centre_gaussian"], lw=1,
                   ls=":", label="centre baseline")
        ax.set_title(f"{name} · {m['variant']}", fontsize=plots.TITLE_PT)
        ax.set_xlabel("layer", fontsize=8)
        ax.set_ylabel(f"IoU@{percentile:g} (union)", fontsize=8)
        ax.set_xticks(sorted(rows["layer"].unique()))  # whole layers only
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6.5)
    return fig
