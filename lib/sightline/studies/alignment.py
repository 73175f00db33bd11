"""Q1: do the models look where the experts look? Every model's maps and the baselines'
scored against the expert regions, and the analyses of notebook q1_alignment: the cross-fitted
leaderboard, layers, thresholds, labels and features, paired tests, right / wrong, gallery."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd

from .. import binarize, extract, registry, scoring, selection
from .. import execution as engine
from .. import finetune as ft
from .. import stats as st
from ..formatting import format_number
from .study import Study

VARIANT = "frozen"  # the variant Q1's tables and figures read (Q2 compares them all)
BASELINE = "baseline"
KEY = ["model", "method", "layer"]
FRAMES = {"model": ("model",), "common": ("common",), "both": ("model", "common")}
SANITY = "Spearman after full randomisation"
# Published frozen best-layer IoU@90 on the 139 real images (ssl_wikichurches, in-sample)
REFERENCE_IOU90 = {"dinov3": 0.133, "resnet50": 0.090, "dinov2": 0.082, "siglip": 0.074,
                   "mae": 0.070, "clip": 0.049, "siglip2": 0.047,
                   "dinov2_reg": 0.082, "resnet50_tv": 0.090}  # the study's own checkpoints


def label(rows: pd.DataFrame) -> pd.Series:
    """``model · method``: how a map is named in Q1's tables and figures."""
    return rows["model"].astype(str) + " · " + rows["method"].astype(str)


# --- maps and scores ------------------------------------------------------------------------
@dataclass(frozen=True)
class Extraction:
    """Each variant's right / wrong marks (None: no classifier), the runs and stores tables,
    the frozen stores' sizes and the notes to say."""

    correct: dict[tuple[str, str], dict[str, bool | None] | None]
    runs: pd.DataFrame
    stores: pd.DataFrame
    sizes: pd.DataFrame
    notes: list[str]


def extract_maps(study: Study) -> Extraction:
    """Train (or read) the fine-tuning runs, then fill every variant's map store and the
    baselines' (only what the caches lack), and mark which images each classifier gets right."""
    p, samples = study.params, study.samples
    notes = [f"No fine-tuning: this {study.dataset.kind} dataset has no labelled training pool, "
             "so the `finetune.strategies` runs are skipped and the models stay frozen."
             ] if not study.dataset.has_pool and ft.plan(study.choices, p.finetune, p.seed) else []
    runs = pd.DataFrame(ft.runs_table(study.train()))
    extract.extract_models(samples, list(study.jobs.values()), batch_size=p.extraction.batch_size,
                           device=p.extraction.device, seed=p.seed, execution=p.execution)
    correct = {key: extract.style_correct(job, samples, batch_size=p.extraction.batch_size,
                                          device=p.extraction.device)
               for key, job in study.jobs.items()}
    notes.append(class_target_sentence(study))
    extract.extract_baselines(samples, p.metrics.baselines, study.baseline_store, seed=p.seed)
    stores = pd.DataFrame([{"model": n, "variant": v, "store": str(s.path)}
                           for (n, v), s in study.stores.items()])
    sizes = pd.DataFrame([{"model": n, "map kinds": len(s.keys()), "images": len(s.image_ids()),
                           "KiB per image": s.nbytes_per_image() / 1024}
                          for (n, v), s in study.stores.items() if v == VARIANT])
    return Extraction(correct, runs, stores, sizes, notes)


@dataclass
class Scores:
    """Every variant's scores (``every``) and per frame the rows Q1 reads: ``model``, frozen
    and baselines in each model's frame; ``common`` (if scored), head-mean maps on the image."""

    every: pd.DataFrame
    by_frame: dict[str, pd.DataFrame]
    frames: tuple[str, ...]
    n_images: int
    n_regions: int
    _head_mean: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def model(self) -> pd.DataFrame:
        return self.by_frame["model"]

    def pick(self, metric: str, threshold: float | None = None, *, boxes: bool = False,
             frame: str = "model") -> pd.DataFrame:
        """Head-mean (or head-less) rows of one metric against the union, or single regions."""
        if frame not in self._head_mean:
            self._head_mean[frame] = self.by_frame[frame].query("head == -1")
        rows = self._head_mean[frame]
        rows = rows[rows["metric"] == metric]
        rows = rows[(rows["target"] != "union") if boxes else (rows["target"] == "union")]
        return rows if threshold is None else rows[np.isclose(rows["threshold"], threshold)]

    def sentence(self) -> str:
        rows = self.model
        return (f"{len(rows):,} scores: {rows['model'].nunique() - 1} models and the baselines on "
                f"{self.n_images} images, scored against each image's union of expert regions "
                f"and each of the {self.n_regions} regions on its own.")


def score(study: Study, correct: Mapping[tuple[str, str], Mapping[str, bool | None] | None]
          ) -> Scores:
    """Score every variant's store and the baselines' in each model's own frame (one sweep per
    model and method), marking ``correct`` per image; with ``metrics.frame`` common or both,
    the frozen head-mean maps on the whole image too (a squashing model's rows are copied)."""
    m, samples = study.params.metrics, study.samples
    targets = cache(lambda geometry: scoring.build_targets(samples, geometry, m.resolution))
    tasks = []
    for (name, variant), store in [*study.stores.items(), ((BASELINE, BASELINE), study.baseline_store)]:
        geometry = extract.BASELINE_GEOMETRY if name == BASELINE else study.geometries[name]
        tasks.append((store, targets(geometry), name, variant, m.percentiles, m.resolution, m.rules))
    # one task per store: Ray's workers score stores side by side (scoring needs no GPU)
    parts = engine.run_tasks(_score_store, tasks, desc="scoring", unit="store",
                             execution=study.params.execution.model_copy(
                                 update={"gpus_per_task": 0}))
    every = scoring.tidy(pd.concat([scoring.mark_correct(part, correct.get((t[2], t[3])))
                                    for part, t in zip(parts, tasks, strict=True)],
                                   ignore_index=True))
    frozen = {n: s for (n, v), s in study.stores.items() if v == VARIANT}
    scores = Scores(every, {"model": every[every["variant"].isin([VARIANT, BASELINE])]},
                    FRAMES[m.frame], len(samples), sum(len(s.boxes) for s in samples))
    if "common" in scores.frames:
        mode = {n: study.geometries[n].mode for n in frozen}
        rows = scores.model
        common = [rows[(rows["head"] == -1) & rows["model"].isin(
            [n for n in [BASELINE, *frozen] if n == BASELINE or mode[n] == "squash"])]]
        common += [scoring.mark_correct(scoring.score_store_common(
            store, targets(scoring.COMMON_FRAME), study.geometries[n], model=n, variant=VARIANT,
            percentiles=m.percentiles, resolution=m.resolution, rules=m.rules),
            correct.get((n, VARIANT))) for n, store in frozen.items() if mode[n] == "crop"]
        scores.by_frame["common"] = scoring.tidy(pd.concat(common, ignore_index=True))
    return scores


def _score_store(store, targets, name, variant, percentiles, resolution, rules) -> pd.DataFrame:
    """`scoring.score_store` as a task of `execution.run_tasks` (positional arguments)."""
    return scoring.score_store(store, targets, model=name, variant=variant,
                               percentiles=percentiles, resolution=resolution, rules=rules,
                               progress=False)


def read_scores(study: Study) -> Scores:
    """The scores a build of ``study`` wrote (``scores.parquet``, and ``scores_common.parquet``
    when that frame was scored), as `score` returns them: nothing is recomputed."""
    every = study.read_table("scores.parquet")
    scores = Scores(every, {"model": every[every["variant"].isin([VARIANT, BASELINE])]},
                    FRAMES[study.params.metrics.frame], len(study.samples),
                    sum(len(s.boxes) for s in study.samples))
    if "common" in scores.frames:
        scores.by_frame["common"] = study.read_table("scores_common.parquet")
    return scores


def conventions(scores: Scores, percentile: float) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Each map's best-layer IoU under every binarisation rule the profile scored
    (`binarize.conventions_table`, frozen models and baselines), Kendall's τ between the
    rankings, and the sentence naming the rules and how far the rankings agree."""
    table, taus = binarize.conventions_table(scores.model, percentile)
    rules = [r for r in binarize.RULES if r in table.columns]
    if len(rules) < 2:
        return table, taus, ("Only the percentile rule was scored (`metrics.rules`), so there "
                             "is no other convention to rank the maps by.")
    named = "; ".join(f"*{r}*: {binarize.RULES[r].label}" for r in rules)
    agree = taus.dropna(subset=["tau"]).sort_values("tau")
    spread = (f"Kendall's τ between two rules' rankings runs from {agree['tau'].iloc[0]:.2f} "
              f"({agree['rule_a'].iloc[0]} vs {agree['rule_b'].iloc[0]}) to "
              f"{agree['tau'].iloc[-1]:.2f} ({agree['rule_a'].iloc[-1]} vs "
              f"{agree['rule_b'].iloc[-1]}), over n = {int(agree['n'].max())} maps"
              if len(agree) else "Too few maps to compare rankings")
    return table, taus, (f"IoU against the union under each rule ({named}); each map's best "
                         f"layer is chosen in-sample under each rule, so the values are "
                         f"optimistic, the rankings comparable. {spread}.")


def frame_modes(study: Study) -> pd.DataFrame:
    """Per model its own frame and whether its common-frame scores are re-scored or copied."""
    modes = {n: study.geometries[n].mode for (n, v) in study.stores if v == VARIANT}
    return pd.DataFrame([{"model": n, "frame": mode, "common-frame scores":
                          "re-scored" if mode == "crop" else "= own frame"}
                         for n, mode in modes.items()])


# --- headline maps and the leaderboard ------------------------------------------------------
def layers(scores: Scores, percentile: float) -> pd.DataFrame:
    """Mean IoU at ``percentile`` against the union per model, method and layer (head mean)."""
    return (scores.pick("iou", percentile).groupby(KEY, observed=True)["value"].mean()
            .rename("iou").reset_index())


def best_layers(by_layer: pd.DataFrame) -> pd.DataFrame:
    """The in-sample best layer of each model and method (``layers`` rows), labelled."""
    best = by_layer.loc[by_layer.groupby(["model", "method"], observed=True)["iou"].idxmax()]
    return best.assign(label=label(best)).reset_index(drop=True)


def headline(scores: Scores, percentile: float, *, seed: int) -> pd.DataFrame:
    """One headline map per model, its method and layer chosen together and cross-fitted
    (``iou`` in-sample, ``cross_fit``), and one per baseline; best first, labelled."""
    iou = scores.pick("iou", percentile)
    chosen, _ = selection.cross_fit(iou[iou["model"] != BASELINE], by=["model", "variant"],
                                    candidate=["method", "layer"], seed=seed)
    best = best_layers(layers(scores, percentile))
    maps = pd.concat([chosen.rename(columns={"in_sample": "iou"}),
                      best[best["model"] == BASELINE].assign(cross_fit=lambda b: b["iou"])])
    maps = maps.sort_values("cross_fit", ascending=False).reset_index(drop=True)
    return maps.assign(label=label(maps))


@dataclass(frozen=True)
class Leaderboard:
    """The leaderboard (``table``), the cross-fitted summary and per-image values it came from
    (the first frame's), and what its prose says."""

    table: pd.DataFrame
    summary: pd.DataFrame
    per_image: pd.DataFrame
    frame: str
    percentile: float
    n_images: int
    sanity_variants: list[str]  # the variants the randomisation check ran on, if not this one

    @property
    def headline(self) -> str:
        return f"IoU@{self.percentile:g} cross-fitted"

    def held_out(self, model: str, method: str) -> pd.DataFrame:
        """One map's cross-fitted per-image values (``image_id``, ``value``)."""
        rows = self.per_image
        return rows[(rows["model"] == model) & (rows["method"] == method)]

    def notes(self) -> list[str]:
        """The Markdown said before the table: its frame, and where the sanity columns went."""
        out = [f"Frame of the headline column: **{self.frame}**."]
        if self.sanity_variants:
            out.append(f"The randomisation check ran on {', '.join(self.sanity_variants)} "
                       f"weights, not on the {VARIANT} ones this table scores, so it has no "
                       "columns here: its verdicts are in the section above and in Q4.")
        return out

    def caption(self) -> str:
        unscored = self.table[self.table["n"] < self.n_images]
        listed = ", ".join(f"{r.model} · {r.method} {r.n}" for r in unscored.itertuples())
        return (f"n: images with a score, of {self.n_images}"
                + (f" ({listed}: on the others the map is zero everywhere — Grad-CAM clips "
                   "negative evidence to 0 — and an all-zero map has no top pixels, so no "
                   "score)" if len(unscored) else "")
                + ". Cross-fitted: the layer chosen on one half of the images, scored on the "
                f"other, over {selection.N_SPLITS} seeded halvings.")

    def optimism(self) -> str:
        optimism = self.table[self.table["kind"] == "model"]["optimism"]
        return (f"In-sample selection of the best layer overstates IoU@{self.percentile:g} by "
                f"{format_number(optimism.mean())} on average (up to "
                f"{format_number(optimism.max())}) on these "
                f"{int(self.table['n'].max())} images.")


def leaderboard(scores: Scores, percentile: float, *, sanity_flags: pd.DataFrame, n_boot: int,
                seed: int) -> Leaderboard:
    """Per model and method (baselines too) the best layer's IoU at ``percentile`` against the
    union, cross-fitted (the layer chosen on half the images, scored on the other; 95% CI a
    bootstrap over images) beside the in-sample one, the optimism and layer stability, the
    other frame's cross-fitted IoU, and at the in-sample layer IoU / max, coverage, AUC, NSS,
    pointing game; then the randomisation check's columns where it ran on these weights."""
    p = percentile
    honest = {frame: selection.cross_fit(scores.pick("iou", p, frame=frame),
                                         by=["model", "variant", "method"], candidate=["layer"],
                                         seed=seed) for frame in scores.frames}
    summary, per_image = honest[scores.frames[0]]

    def at_layer(metric: str, row, threshold: float | None = None) -> float:
        rows = scores.pick(metric, threshold)
        return rows[(rows["model"] == row.model) & (rows["method"] == row.method)
                    & (rows["layer"] == row.layer)].set_index("image_id")["value"].mean()

    board = []
    for row in summary.itertuples():
        held_out = per_image[(per_image["model"] == row.model)
                             & (per_image["method"] == row.method)]["value"]
        low, high = st.bootstrap_ci(held_out.to_numpy(), n_boot=n_boot, seed=seed)
        entry = {"model": row.model, "method": row.method, f"IoU@{p:g} cross-fitted": row.cross_fit,
                 "CI low": low, "CI high": high, "best layer (in-sample)": row.layer,
                 f"IoU@{p:g} in-sample": row.in_sample, "optimism": row.optimism,
                 "layer stability": row.stability}
        if len(scores.frames) > 1:
            other = honest[scores.frames[1]][0].set_index(["model", "method"])
            entry[f"IoU@{p:g} cross-fitted, {scores.frames[1]} frame"] = other.loc[
                (row.model, row.method), "cross_fit"]
        board.append(entry | {
            f"IoU@{p:g} / max": at_layer("iou_rel", row, p), "coverage": at_layer("coverage", row),
            "AUC": at_layer("auc", row), "NSS": at_layer("nss", row),
            "pointing game": at_layer("pointing_game", row),
            "n": int(row.n), "kind": BASELINE if row.model == BASELINE else "model"})
    table = pd.DataFrame(board).sort_values(f"IoU@{p:g} cross-fitted", ascending=False,
                                            ignore_index=True)
    tested = sanity_flags[sanity_flags["variant"] == VARIANT]  # the weights of these maps
    if len(tested):
        table = table.merge(tested.rename(columns={"mean": SANITY})[
            ["model", "method", SANITY, "not_model_sensitive"]], on=["model", "method"], how="left")
    untested = sorted(set(sanity_flags["variant"])) if len(sanity_flags) and not len(tested) else []
    return Leaderboard(table, summary, per_image, scores.frames[0], p, scores.n_images, untested)


def headline_maps(table: pd.DataFrame, percentile: float) -> dict[str, tuple[str, int]]:
    """Per model, the leaderboard's headline map (as written in ``leaderboard.csv``): the method
    with the highest cross-fitted IoU at ``percentile``, at its in-sample best layer."""
    score = f"IoU@{percentile:g} cross-fitted"
    board = table.dropna(subset=[score]).sort_values(score, ascending=False, kind="stable")
    return {str(r["model"]): (str(r["method"]), int(r["best layer (in-sample)"]))
            for _, r in board.drop_duplicates("model").iterrows()}


# --- right / wrong, the reference study -----------------------------------------------------
def by_correct(board: Leaderboard, correct: Mapping[tuple[str, str], Mapping | None]
               ) -> tuple[pd.DataFrame, list[str]]:
    """Each leaderboard map's cross-fitted per-image IoU on the images its variant's classifier
    gets right against those it gets wrong (Mann–Whitney U; ``stats.split_comparison``), and
    the models left out for having no classifier."""
    rows = []
    for row in board.summary.itertuples():
        marks = correct.get((row.model, VARIANT))
        if marks is None:
            continue
        held_out = board.held_out(row.model, row.method)
        side = held_out["image_id"].map(marks)  # True, False or None (no main style)
        rows.append({"model": row.model, "method": row.method, **st.split_comparison(
            held_out["value"][side.eq(True)], held_out["value"][side.eq(False)])})
    no_probe = sorted({r.model for r in board.summary.itertuples()
                       if r.model != BASELINE and correct.get((r.model, VARIANT)) is None})
    return pd.DataFrame(rows, columns=["model", "method", "n_right", "n_wrong", "mean_right",
                                       "mean_wrong", "diff", "p_mwu", "note"]), no_probe


def by_correct_caption(board: Leaderboard, no_probe: Sequence[str]) -> str:
    """The split table's caption, or the one line said instead of an empty table."""
    if set(no_probe) >= set(board.summary["model"]) - {BASELINE}:
        return ("Not split: no model here has a linear probe, so none predicts the images' "
                "labels (a classifier's own class is not the image's label).")
    return (f"{board.headline} on the images the probe gets right / wrong (n images per side); "
            "diff: mean right − mean wrong; p: two-sided Mann–Whitney U, only where both sides "
            f"have {st.MIN_SIDE} images or more"
            + (f". No probe, no prediction: {', '.join(no_probe)}" if no_probe else "") + ".")


def class_target_sentence(study: Study) -> str:
    """What each model's class-specific maps (Grad-CAM, Chefer relevance...) explain."""
    parts = [f"**{name}** ({', '.join(methods)}): "
             + (study.class_targets[name] or "none (no classifier head and no linear probe, so "
                "these maps are not made; add `linear_probe` under `finetune.strategies` on a "
                "dataset with a labelled training pool)")
             for name, spec in study.specs.items()
             if (methods := [m for m in spec.methods
                             if m in registry.METHODS.names(explains_class=True)])]
    return ("The class each model's class-specific maps explain — " + "; ".join(parts) + "."
            if parts else "No model here has a class-specific method (Grad-CAM, Chefer).")


def reference_comparison(study: Study, maps: pd.DataFrame, percentile: float) -> pd.DataFrame:
    """Each model's headline map (``headline``) beside the reference study's published IoU@90."""
    ours = maps.set_index("model")
    rows = [(c, ours.loc[study.names[c.key]]) for c in study.choices]
    return pd.DataFrame({
        "model": [study.names[c.key] for c, _ in rows], "weights": [c.weights for c, _ in rows],
        "ours: best method · layer": [f"{r['method']} · {r['layer']}" for _, r in rows],
        f"ours: IoU@{percentile:g} in-sample": [r["iou"] for _, r in rows],
        f"ours: IoU@{percentile:g} cross-fitted": [r["cross_fit"] for _, r in rows],
        "reference study IoU@90": [REFERENCE_IOU90.get(c.key, np.nan) for c, _ in rows]})


def comparable(study: Study) -> bool:
    """Whether the reference study's numbers mean anything here: real WikiChurches data and
    at least one model with pretrained weights."""
    return (study.params.dataset.kind == "wikichurches"
            and not all(c.weights == "random" for c in study.choices))


def reference_note(study: Study) -> str:
    """Why the comparison is not shown (what this profile's data and weights are), or the
    caption of the table when it is."""
    if not comparable(study):
        kind, random = study.params.dataset.kind, {c.weights == "random" for c in study.choices}
        weights = ("pretrained and random-weight" if len(random) > 1 else
                   "random-weight" if random == {True} else "pretrained")
        data_ = ("synthetic data" if study.synthetic else "the reference study's images"
                 if kind == "wikichurches" else f"its own images ({kind})")
        return (f"Not shown: this profile scores {weights} models on {data_}, so its numbers are "
                "not comparable with the reference study's (both are in "
                "`tables/reference_comparison.csv`).")
    return ("Published frozen best-layer IoU@90 on the 139 real WikiChurches images "
            "(ssl_wikichurches; chosen in-sample, like our in-sample column) beside each model's "
            "headline map (best method and layer, model frame). "
            f"Cross-fitted: each model's method and layer chosen together on one half of the "
            f"{len(study.samples)} images and scored on the other, over {selection.N_SPLITS} "
            "seeded halvings (the leaderboard chooses only the layer, per method).")


# --- the headline maps, broken down -------------------------------------------------------
def threshold_sweep(scores: Scores, maps: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Mean IoU at every percentile of each headline map (``label``, ``threshold``, ``iou``),
    and the mean best IoU any map could reach per percentile (IoU / IoU relative to the max)."""
    iou = scores.pick("iou")
    rows = iou.merge(maps[KEY + ["label"]], on=KEY)
    sweep = rows.groupby(["label", "threshold"], observed=True)["value"].mean().rename("iou")
    ceiling = iou.merge(scores.pick("iou_rel"), on=["image_id", *KEY, "threshold"])
    ceiling = (ceiling.assign(max_iou=ceiling["value_x"] / ceiling["value_y"])
               .groupby("threshold")["max_iou"].mean())
    return sweep.reset_index(), ceiling


def headline_iou(scores: Scores, maps: pd.DataFrame, percentile: float, *,
                 boxes: bool = False) -> pd.DataFrame:
    """The headline maps' per-image IoU at ``percentile`` (union, or each region), labelled."""
    return scores.pick("iou", percentile, boxes=boxes).merge(maps[KEY + ["label"]], on=KEY)


def by_image_label(union_iou: pd.DataFrame, labels: Mapping[str, str | None]) -> pd.DataFrame:
    """Mean union IoU of each headline map (rows) per image label (columns)."""
    table = union_iou.assign(image_label=union_iou["image_id"].map(labels)).pivot_table(
        index="label", columns="image_label", values="value", aggfunc="mean", observed=True)
    table.columns.name = None
    return table


def by_feature(region_iou: pd.DataFrame, n_maps: int, *, min_regions: int = 3) -> pd.DataFrame:
    """Mean IoU of each headline map (rows) against single regions per feature type (columns),
    for the feature types with ``min_regions`` regions or more (``n_maps`` rows per region)."""
    counts = region_iou.groupby("feature", observed=True)["image_id"].size() / n_maps
    return region_iou[region_iou["feature"].isin(counts[counts >= min_regions].index)].pivot_table(
        index="label", columns="feature", values="value", aggfunc="mean", observed=True)


@dataclass(frozen=True)
class PairedTests:
    """Friedman across the headline maps, every pair's paired tests (``pairs``), and the frame."""

    omnibus: dict
    pairs: pd.DataFrame
    frame: str

    def sentences(self) -> list[str]:
        o = self.omnibus
        return [f"Frame of the paired tests: **{self.frame}**.",
                f"Friedman across {o['k']} maps on {o['n']} images: Q = {o['statistic']:.2f}, "
                f"p = {o['p']:.3g}, Kendall's W = {o['kendall_w']:.2f}."]


def paired_tests(scores: Scores, maps: pd.DataFrame, percentile: float, *, n_boot: int,
                 seed: int) -> PairedTests:
    """Paired tests on the same images between the headline maps (IoU at ``percentile``,
    union), in the common frame when scored: Friedman, then each pair (Wilcoxon, t, bootstrap
    CI, effect sizes, Holm; ``stats.pairwise_comparisons``)."""
    frame = "common" if "common" in scores.frames else "model"
    rows = scores.pick("iou", percentile, frame=frame).merge(maps[KEY + ["label"]], on=KEY)
    rows = rows[["image_id", "label", "value"]]
    return PairedTests(
        st.omnibus(rows, value="value", group="label", subject="image_id"),
        st.pairwise_comparisons(rows, value="value", group="label", subject="image_id",
                                n_boot=n_boot, seed=seed), frame)


def gallery(union_iou: pd.DataFrame, size: int) -> dict[str, list[str]]:
    """The worst, median and best ``size`` images by mean headline IoU over the models."""
    ranking = (union_iou[union_iou["model"] != BASELINE].groupby("image_id")["value"].mean()
               .sort_values())
    return {"worst": list(ranking.index[:size]),
            "median": list(ranking.index[len(ranking) // 2 - size // 2:][:size]),
            "best": list(ranking.index[-size:][::-1])}


def summary(scores: Scores, maps: pd.DataFrame) -> pd.DataFrame:
    """Every metric (``metric@threshold`` rows) of each headline map (columns): head mean,
    union, mean over images."""
    rows = scores.model
    rows = rows[(rows["target"] == "union") & (rows["head"] == -1)].merge(maps[KEY + ["label"]],
                                                                          on=KEY)
    rows = rows.assign(name=np.where(rows["threshold"].isna(), rows["metric"].astype(str),
                                     rows["metric"].astype(str) + "@"
                                     + rows["threshold"].map("{:g}".format)))
    return rows.pivot_table(index="name", columns="label", values="value", aggfunc="mean",
                            observed=True)


def summary_metrics(table: pd.DataFrame, percentile: float) -> list[str]:
    """The rows of ``summary`` the report shows: the registry's metrics by `summary_rank`, the
    thresholded at ``percentile`` and then IoU@50 (the loose threshold), the others after."""
    ranked = sorted(registry.METRICS, key=lambda m: m.summary_rank)
    names = [*(f"{m.name}@{percentile:g}" for m in ranked if m.thresholded), "iou@50",
             *(m.name for m in ranked if not m.thresholded)]
    return [m for m in dict.fromkeys(names) if m in table.index]


BY_CORRECT_INTRO = (
    "Each model's leaderboard maps on the images its linear probe classifies right and on "
    "those it gets wrong (the cross-fitted per-image IoU of the headline column), with the "
    "Mann–Whitney U test between the two sets of images (`report.split_by_correct`). A side "
    "with fewer than 10 images is reported (its mean) but not tested. Models with no probe, "
    "and the baselines, have no prediction and are left out. The p-values are per row and "
    "uncorrected for the number of rows: read them as a screen, not as findings.")


def randomisation_sentence(flags: pd.DataFrame, steps: pd.DataFrame) -> str:
    """What the randomisation test is and how many models and steps it covered in this build;
    one line when it did not run."""
    if not len(flags):
        return "Not run: `sanity.models` lists no model (the maps are not checked here)."
    fresh = int((steps["extracted"] > 0).sum()) if len(steps) else 0
    return ("For the models in `sanity.models`, the weights are re-initialised from the top "
            "down (head, last block, ..., first block, stem) and every map is extracted again "
            "after each step, cached like every other map (Adebayo et al. 2018; "
            "`sightline.sanity`, notebook Q4). A method whose maps keep a mean Spearman "
            "correlation above `sanity.threshold` with the original after the whole network is "
            "re-initialised is flagged *not model-sensitive* beside the leaderboard below.\n\n"
            f"Randomisation test: {flags['model'].nunique()} model(s), {fresh} of {len(steps)} "
            "steps extracted in this run (the others from the cache).")
