"""Q3, per-head specialisation: which attention heads align with expert boxes, and with which
feature types, and is that more than chance? Q3's tables, sentences and figures, read from the
tidy scores table. A *region* is an image's union (``target == "union"``) or one of its boxes;
``head == -1`` rows (a layer's head mean) take no part in rankings or tests; NaN scores are
dropped. Two seeded permutation tests, p = (1 + #{null >= obs}) / (n + 1):

- ``concentration_test``: heads exchangeable within each image; statistic: best head mean -
  median head mean (a difference, so that a zero median cannot blow it up).
- ``specialisation_test``: feature labels exchangeable across boxes (each box keeps its head
  scores). The *lift* ``L[f, h]`` = mean of head h over f's boxes - its mean over all boxes
  (a generalist gains nothing on any one feature); the statistic ``max_h L[f, h] - mean_h
  L[f, h]`` (a type easy for every head is no specialist's doing). Holm over the tested
  feature types of one model / variant / method.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .. import cache, data, formatting, plots, selection
from ..registry import METHODS
from ..scoring import COLUMNS
from ..stats import holm

GROUP = ["model", "variant", "method"]
HEAD = ["layer", "head"]
REGION = ["image_id", "target"]
_CHUNK = 4_000_000  # array elements per batch of permutations
_TIE = 1e-12  # null statistics this close to the observed one count as ">="


def select(scores: pd.DataFrame, *, metric: str, threshold: float | None = None,
           regions: Literal["union", "boxes"] | None = None, heads_only: bool = False) -> pd.DataFrame:
    """Rows of one metric (``threshold=None``: threshold-free rows), of the union or the single
    boxes (``regions``; None: both), without head means (``heads_only``). An empty table (a profile
    without per-head maps) gives no rows; a table without the metric is an error listing what it has."""
    needed = [c for c in COLUMNS if c != "correct"]  # heads need no prediction
    missing = [c for c in needed if c not in scores.columns]
    if missing:
        raise ValueError(f"scores table lacks columns {missing}; expected {needed}")
    rows = scores[(scores["metric"] == metric)
                  & (scores["threshold"].isna() if threshold is None
                     else np.isclose(scores["threshold"].astype(float), threshold))]
    if rows.empty and len(scores):
        have = (scores[["metric", "threshold", "method"]].drop_duplicates()
                .sort_values(["metric", "threshold", "method"]).itertuples(index=False, name=None))
        raise ValueError(
            f"no scores for metric={metric!r}, threshold={threshold}; available (metric, "
            f"threshold, method): {list(have)} (threshold-free metrics such as coverage need "
            "threshold=None)")
    duplicated = rows.duplicated(GROUP + REGION + HEAD)
    if duplicated.any():
        first = rows[duplicated].iloc[0].to_dict()
        raise ValueError(f"scores table has more than one row for one map and region: {first}")
    if regions is not None:
        rows = rows[(rows["target"] == "union") == (regions == "union")]
    return rows[rows["head"] >= 0] if heads_only else rows


def _box_counts(rows: pd.DataFrame) -> pd.Series:
    """Scored boxes per model / variant / method and feature type."""
    boxes = rows[rows["target"] != "union"].dropna(subset=["value"])
    return boxes.drop_duplicates(GROUP + ["feature"] + REGION).groupby(GROUP + ["feature"]).size()


def _regions(rows: pd.DataFrame, min_boxes: int) -> pd.DataFrame:
    """Union rows plus box rows of feature types with >= ``min_boxes`` scored boxes."""
    n = _box_counts(rows)
    enough = pd.MultiIndex.from_frame(rows[GROUP + ["feature"]]).isin(n[n >= min_boxes].index)
    return rows[(rows["target"] == "union") | enough]


def _head_stats(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per ``by`` + head: mean, median, n regions, mean per-region rank among the model's heads
    (1 = best, ties share the average rank), share of regions where the head is in the top 3,
    and ``rank`` of the head's mean among the heads of its ``by`` group."""
    rows = rows[rows["head"] >= 0].dropna(subset=["value"])
    rank = rows.groupby(GROUP + REGION)["value"].rank(ascending=False, method="average")
    out = (rows.assign(region_rank=rank, top3=rank <= 3).groupby(by + HEAD)
           .agg(mean=("value", "mean"), median=("value", "median"), n=("value", "size"),
                mean_rank=("region_rank", "mean"), top3_share=("top3", "mean"))
           .reset_index())
    out["rank"] = out.groupby(by)["mean"].rank(ascending=False, method="average")
    return out.sort_values(by + ["rank"] + HEAD, ignore_index=True)


def head_ranking(scores: pd.DataFrame, *, metric: str = "iou",
                 threshold: float | None = 90) -> pd.DataFrame:
    """Rank every head of each model / variant / method by its score on the union."""
    return _head_stats(select(scores, metric=metric, threshold=threshold, regions="union"), GROUP)


def concentration(ranking: pd.DataFrame) -> pd.DataFrame:
    """How concentrated alignment is in a few heads, per group of a ``head_ranking`` (or
    ``head_feature_matrix``) table: best head, best / median head mean (NaN for a zero median),
    and ``top5_share`` = sum of the 5 best head means / sum of all head means (scores >= 0)."""
    by = GROUP + (["feature"] if "feature" in ranking.columns else [])
    ranked = ranking.dropna(subset=["mean"]).sort_values("mean", ascending=False, kind="stable")
    best = ranked.drop_duplicates(by)[by + HEAD + ["mean"]].rename(
        columns={"layer": "best_layer", "head": "best_head", "mean": "best_mean"})
    spread = ranked.groupby(by)["mean"].agg(
        median_mean="median", total="sum", n_heads="size", top5=lambda m: m.nlargest(5).sum())
    out = best.merge(spread.reset_index(), on=by).sort_values(by, ignore_index=True)
    out["ratio"] = out["best_mean"] / out["median_mean"].where(out["median_mean"] > 0)
    out["top5_share"] = out["top5"] / out["total"].where(out["total"] > 0)
    return out.drop(columns=["total", "top5"])


def head_feature_matrix(scores: pd.DataFrame, *, metric: str = "iou",
                        threshold: float | None = 90, min_boxes: int = 3) -> pd.DataFrame:
    """Per head and feature type: mean score over that type's boxes (types with at least
    ``min_boxes`` scored boxes), ``n_boxes``, and the per-box rank statistics."""
    rows = _regions(select(scores, metric=metric, threshold=threshold), min_boxes)
    boxes = rows[rows["target"] != "union"]
    return _head_stats(boxes, GROUP + ["feature"]).rename(columns={"n": "n_boxes"})


def best_head_per_feature(matrix: pd.DataFrame) -> pd.DataFrame:
    """Best head per feature type by mean score, the mean and median over heads, and
    ``advantage`` = best head's mean - median head's mean for that feature."""
    out = concentration(matrix)[
        GROUP + ["feature", "best_layer", "best_head", "best_mean", "median_mean", "n_heads"]]
    heads_mean = matrix.groupby(GROUP + ["feature"])["mean"].mean().rename("heads_mean")
    out = out.merge(heads_mean.reset_index(), on=GROUP + ["feature"])
    return out.assign(advantage=out["best_mean"] - out["median_mean"])


def min_permutations(n_tests: int, alpha: float) -> int:
    """The fewest permutations with which the strongest of ``n_tests`` effects can pass Holm
    at ``alpha``: the smallest n with n_tests / (n + 1) < alpha."""
    return int(np.floor(n_tests / alpha))


def _null(statistic: Callable[[np.ndarray], np.ndarray], shuffled: Callable[[int], np.ndarray],
          n_permutations: int, size: int) -> np.ndarray:
    """The statistic on ``n_permutations`` shuffles, computed in memory-bounded batches."""
    step = max(1, _CHUNK // max(size, 1))
    return np.concatenate([statistic(shuffled(min(step, n_permutations - i)))
                           for i in range(0, n_permutations, step)])


def _p_value(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    return (1 + (null >= observed - _TIE).sum(0)) / (len(null) + 1)


def _wide(rows: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    """Regions x heads matrix of scores; regions with no score at all are dropped."""
    return rows.set_index(index + HEAD)["value"].unstack(HEAD).dropna(how="all")


def _concentration_null(x: np.ndarray, n_permutations: int,
                        rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """Best - median head mean of an images x heads matrix, and its null with each image's
    scores shuffled across heads."""

    def statistic(batch: np.ndarray) -> np.ndarray:  # (P, images, heads) -> (P,)
        means = selection._nanmean(batch, axis=1)
        return np.nanmax(means, axis=1) - np.nanmedian(means, axis=1)

    def shuffled(n: int) -> np.ndarray:
        return rng.permuted(np.broadcast_to(x, (n, *x.shape)), axis=2)

    return statistic(x[None])[0], _null(statistic, shuffled, n_permutations, x.size)


def concentration_test(scores: pd.DataFrame, *, metric: str = "iou", threshold: float | None = 90,
                       n_permutations: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Is the best head better than chance? Statistic: best - median head mean; null: head
    labels shuffled independently within each image. One row per model / variant / method;
    ``p_holm`` adjusts over all of them (the smallest possible is rows / (n_permutations + 1))."""
    rows = select(scores, metric=metric, threshold=threshold, regions="union", heads_only=True)
    rng = np.random.default_rng(seed)
    out = []
    for key, group in rows.groupby(GROUP, sort=True):
        wide = _wide(group, REGION)
        x = wide.to_numpy(float)
        observed, null = _concentration_null(x, n_permutations, rng)
        layer, head = wide.columns[np.nanargmax(selection._nanmean(x, axis=0))]
        out.append((*key, layer, head, observed, null.mean(), *x.shape, _p_value(observed, null)))
    table = pd.DataFrame(
        out, columns=GROUP + HEAD + ["statistic", "null_mean", "n_images", "n_heads", "p_value"])
    return table.assign(p_holm=holm(table["p_value"]))


def _specialisation_null(x: np.ndarray, codes: np.ndarray, n_features: int, n_permutations: int,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lift matrix (features x heads) of a boxes x heads matrix whose boxes carry feature
    ``codes`` (-1: untested type), the statistic per feature, and its null (permutations x
    features) with the codes shuffled across boxes."""
    valid = (~np.isnan(x)).astype(float)
    filled = np.nan_to_num(x)
    head_mean = selection._nanmean(x, axis=0)

    def lift(labels: np.ndarray) -> np.ndarray:  # (P, boxes) -> (P, features, heads)
        member = (labels[:, None, :] == np.arange(n_features)[None, :, None]).astype(float)
        n = member @ valid
        return np.divide(member @ filled, n, out=np.full(n.shape, np.nan), where=n > 0) - head_mean

    def statistic(labels: np.ndarray) -> np.ndarray:  # (P, boxes) -> (P, features)
        lifts = lift(labels)
        return np.nanmax(lifts, axis=2) - np.nanmean(lifts, axis=2)

    def shuffled(n: int) -> np.ndarray:
        return rng.permuted(np.broadcast_to(codes, (n, len(codes))), axis=1)

    size = len(codes) * n_features * (x.shape[1] + 1)
    return (lift(codes[None])[0], statistic(codes[None])[0],
            _null(statistic, shuffled, n_permutations, size))


def specialisation_test(scores: pd.DataFrame, *, metric: str = "iou",
                        threshold: float | None = 90, min_boxes: int = 3,
                        n_permutations: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Does one head stand out on one feature type more than on random box sets of the same
    size? Per feature: the specialist head (largest lift, see the module docstring), its lift,
    the statistic max - mean lift over heads, null mean, p-value and Holm-adjusted p-value."""
    rows = select(scores, metric=metric, threshold=threshold, regions="boxes", heads_only=True)
    rng = np.random.default_rng(seed)
    out = []
    for key, group in rows.groupby(GROUP, sort=True):
        wide = _wide(group, REGION + ["feature"])
        counts = wide.index.get_level_values("feature").value_counts()
        tested = pd.Index(sorted(counts[counts >= min_boxes].index))
        if tested.empty:
            continue
        codes = tested.get_indexer(wide.index.get_level_values("feature"))
        lifts, observed, null = _specialisation_null(wide.to_numpy(float), codes, len(tested),
                                                     n_permutations, rng)
        p = _p_value(observed, null)
        p_holm = holm(p)
        for i, best in enumerate(np.nanargmax(lifts, axis=1)):
            out.append((*key, tested[i], *wide.columns[best], lifts[i, best], observed[i],
                        null[:, i].mean(), counts[tested[i]], p[i], p_holm[i]))
    return pd.DataFrame(out, columns=GROUP + ["feature"] + HEAD + [
        "lift", "statistic", "null_mean", "n_boxes", "p_value", "p_holm"])


def heads_table(scores: pd.DataFrame, *, metric: str = "iou", threshold: float | None = 90,
                min_boxes: int = 3) -> pd.DataFrame:
    """The tidy Q3 table for one metric: per model / variant / method / head and feature
    ("union" or a feature type with >= ``min_boxes`` boxes), the mean score as ``value``, n
    regions and rank statistics; ``head == -1`` rows (mean over a layer's heads) come along as
    a reference line with NaN ranks."""
    rows = _regions(select(scores, metric=metric, threshold=threshold), min_boxes)
    by = GROUP + ["feature"]
    reference = (rows[rows["head"] < 0].dropna(subset=["value"]).groupby(by + HEAD)["value"]
                 .agg(mean="mean", median="median", n="size").reset_index())
    out = pd.concat([_head_stats(rows, by), reference], ignore_index=True)
    out = out.rename(columns={"mean": "value"}).assign(
        metric=metric, threshold=(np.nan if threshold is None else float(threshold)))
    return out[by + HEAD + ["metric", "threshold", "value", "median", "n", "mean_rank",
                            "top3_share", "rank"]].sort_values(by + HEAD, ignore_index=True)


# --- the Q3 report: its tables, sentences and figures -----------------------------------------
def head_scores(scores: pd.DataFrame, variant: str = "frozen") -> pd.DataFrame:
    """The score rows Q3 reads: the readout heads' maps (the method registry's
    ``readout_heads``: CLS and pooling-probe attention) of one variant."""
    return scores[scores["method"].isin(METHODS.names(readout_heads=True))
                  & (scores["variant"] == variant)]


def summary(scores: pd.DataFrame) -> str:
    """How many models and heads the head rows cover (or that there are none)."""
    heads = scores[scores["head"] >= 0].groupby(["model", "layer", "head"]).ngroups
    if not heads:
        methods = " or ".join(f"`{m}`" for m in METHODS.names(readout_heads=True))
        return (f"No model has per-head maps ({methods}): "
                "no head to rank, so the sections below are empty.")
    return f"{scores['model'].nunique()} models with per-head maps; {heads} heads."


def _cross_fit(rows: pd.DataFrame, by: list[str], unit: list[str], seed: int) -> pd.DataFrame:
    """`selection.cross_fit` of the best head per ``by`` group; no rows, no groups."""
    if rows.empty:
        return pd.DataFrame(columns=[*by, "cross_fit", "stability"])
    return selection.cross_fit(rows, by=by, candidate=HEAD, unit=unit, seed=seed)[0]


def concentration_table(scores: pd.DataFrame, ranking: pd.DataFrame, *, percentile: float,
                        n_permutations: int, seed: int) -> pd.DataFrame:
    """``head_concentration.csv``: `concentration`, `concentration_test` (``*_test`` where
    columns clash) and the best head cross-fitted (``best_cross_fit``, ``head_stability``)."""
    tested = concentration_test(scores, metric="iou", threshold=percentile,
                                n_permutations=n_permutations, seed=seed)
    out = concentration(ranking).merge(tested, on=GROUP, how="left", suffixes=("", "_test"))
    rows = select(scores, metric="iou", threshold=percentile, regions="union", heads_only=True)
    honest = _cross_fit(rows, GROUP, ["image_id"], seed)
    honest = honest.rename(columns={"cross_fit": "best_cross_fit", "stability": "head_stability"})
    return out.merge(honest[GROUP + ["best_cross_fit", "head_stability"]], on=GROUP, how="left")


def concentration_view(table: pd.DataFrame) -> formatting.Table:
    """The concentration table as shown; ``top5_share`` blank for <= 5 heads (1 by construction)."""
    few = table["n_heads"] <= 5
    caption = ("top5_share: – for a model with 5 heads or fewer (" + ", ".join(
        table.loc[few, "model"]) + "), whose top 5 heads are all its heads (a share of 1 by "
        "construction).") if few.any() else None
    shown = table[["model", "method", "best_layer", "best_head", "best_mean", "best_cross_fit",
                   "head_stability", "median_mean", "ratio", "top5_share", "n_heads", "statistic",
                   "p_value", "p_holm"]]
    return formatting.table(shown.assign(top5_share=table["top5_share"].where(~few)), digits=4,
                            caption=caption)


def resolution_note(n_tests: int, family: str, *, n_permutations: int, alpha: float) -> str:
    """Whether ``n_tests`` Holm-adjusted permutation tests can pass at ``alpha`` at all."""
    floor = n_tests / (n_permutations + 1)
    verdict = ("so a strong enough effect can pass" if floor < alpha else
               f"so **no effect can pass**: use at least {min_permutations(n_tests, alpha)}")
    return (f"{n_tests} tests {family}, {n_permutations} permutations: the smallest possible "
            f"Holm p is {n_tests} / {n_permutations + 1} = {floor:.3g} against α = {alpha}, "
            f"{verdict}.")


def random_weight_note(table: pd.DataFrame, untrained: Collection[str], alpha: float) -> str | None:
    """How many random-weight models reject exchangeable heads, and why that is no finding."""
    if not untrained or not len(table):
        return None
    rejected = table[table["model"].isin(untrained) & (table["p_holm"] < alpha)]
    return (f"{rejected['model'].nunique()} of {len(set(untrained) & set(table['model']))} "
            f"random-weight model(s) reject exchangeable heads (Holm p < {alpha}): the heads of an "
            "untrained network differ from one another too, so a rejection says that heads "
            "differ, not that training made them align; read a real model's test beside the "
            "same architecture with random weights.")


@dataclass
class FeatureHeads:
    """Heads x feature types with >= ``min_boxes`` boxes: matrix, best heads, specialists."""

    matrix: pd.DataFrame
    best: pd.DataFrame
    specialists: pd.DataFrame
    min_boxes: int
    most_boxes: int  # the most scored boxes any feature type has (of one model and readout)

    @property
    def skipped(self) -> str | None:
        """One line saying why the by-feature part is skipped; None when it ran."""
        if len(self.matrix):
            return None
        return (f"Heads × feature types skipped: no feature type has `heads.min_boxes` = "
                f"{self.min_boxes} scored boxes (the most any has is {self.most_boxes}); lower "
                "`heads.min_boxes` to include the types there are.")

    def view(self) -> formatting.Table:
        """The best head per feature type as the report shows it."""
        shown = self.best[["model", "feature", "n_boxes", "best_layer", "best_head", "best_mean",
                           "best_cross_fit", "advantage", "layer", "head", "lift", "p_value",
                           "p_holm"]]
        return formatting.table(shown.rename(columns={"layer": "specialist_layer",
                                                      "head": "specialist_head"}), digits=4)

    def tests(self) -> int:
        """The most specialisation tests of one model and readout (one per feature type)."""
        return int(self.specialists.groupby(GROUP).size().max()) if len(self.specialists) else 0


def feature_heads(scores: pd.DataFrame, *, percentile: float, min_boxes: int,
                  n_permutations: int, seed: int) -> FeatureHeads:
    """Matrix; best head per type (``best_head_per_feature.csv``) beside its specialisation test
    (``*_test`` where columns clash), cross-fitted; empty when no type has ``min_boxes``."""
    matrix = head_feature_matrix(scores, metric="iou", threshold=percentile, min_boxes=min_boxes)
    specialists = specialisation_test(scores, metric="iou", threshold=percentile,
                                      min_boxes=min_boxes, n_permutations=n_permutations,
                                      seed=seed)
    best = best_head_per_feature(matrix).merge(specialists, on=[*GROUP, "feature"], how="left",
                                               suffixes=("", "_test"))
    boxes = select(scores, metric="iou", threshold=percentile, regions="boxes", heads_only=True)
    boxes = boxes[boxes["feature"].isin(matrix["feature"].unique())]
    honest = _cross_fit(boxes, [*GROUP, "feature"], REGION, seed)
    best = best.merge(honest[[*GROUP, "feature", "cross_fit"]].rename(
        columns={"cross_fit": "best_cross_fit"}), on=[*GROUP, "feature"], how="left")
    counts = _box_counts(select(scores, metric="iou", threshold=percentile))
    return FeatureHeads(matrix, best, specialists, min_boxes, int(counts.max()) if len(counts) else 0)


def tidy_table(scores: pd.DataFrame, *, percentile: float, min_boxes: int) -> pd.DataFrame:
    """``heads.parquet``: `heads_table` of IoU at the headline percentile, then of coverage."""
    return pd.concat([heads_table(scores, metric="iou", threshold=percentile, min_boxes=min_boxes),
                      heads_table(scores, metric="coverage", threshold=None, min_boxes=min_boxes)],
                     ignore_index=True)


def ranking_heatmaps(ranking: pd.DataFrame, percentile: float) -> plt.Figure | None:
    """Mean IoU per layer x head, one panel per model, on one colour scale (None: no heads)."""
    names = list(ranking["model"].unique())
    if not names:
        return None
    cols = min(3, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, squeeze=False, layout="constrained",
                             figsize=(plots.PAGE_WIDTH, 2.2 * rows + 0.6))
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    scale = {"vmin": 0, "vmax": float(ranking["mean"].max())}
    for ax, name in zip(axes.flat, names, strict=False):
        own = ranking[ranking["model"] == name]
        grid = own.pivot_table(index="layer", columns="head", values="mean", observed=True)
        sns.heatmap(grid, cmap="viridis", ax=ax, cbar=False, **scale)
        ax.set(xlabel="head", ylabel="layer")
        ax.set_title(f"{name} ({own['method'].iloc[0]})", fontsize=plots.TITLE_PT)
        ax.tick_params(labelsize=8)
    fig.colorbar(plt.cm.ScalarMappable(plt.Normalize(**scale), cmap="viridis"), ax=axes,
                 shrink=0.8, label=f"mean IoU@{percentile:g}")
    fig.suptitle(f"mean IoU@{percentile:g} per layer × head (union), one colour scale",
                 fontsize=10)
    return fig


def feature_heatmaps(matrix: pd.DataFrame, percentile: float, most: int = 16) -> list[plt.Figure]:
    """Per model, IoU per feature type of its ``most`` best heads (``layer-head``), one scale."""
    scale = {"vmin": 0, "vmax": float(matrix["mean"].max())}
    figures = []
    for name, own in matrix.groupby("model", sort=False, observed=True):
        top = own.groupby(HEAD)["mean"].mean().nlargest(most).index
        grid = own.set_index(HEAD).loc[top].reset_index().pivot_table(
            index="feature", columns=HEAD, values="mean", observed=True)
        fig, ax = plt.subplots(figsize=(min(plots.PAGE_WIDTH, 0.4 * grid.shape[1] + 3),
                                        0.3 * grid.shape[0] + 1.5), layout="constrained")
        sns.heatmap(grid, cmap="magma", ax=ax, cbar_kws={"label": f"IoU@{percentile:g}"}, **scale)
        ax.set_xlabel("layer-head")
        every = len(top) == own.groupby(HEAD).ngroups
        ax.set_title(f"{name}: IoU@{percentile:g} per feature type, "
                     f"{f'all {len(top)} heads' if every else f'the {len(top)} best heads'}",
                     fontsize=plots.TITLE_PT)
        ax.tick_params(labelsize=8)
        figures.append(fig)
    return figures


def gallery_picks(scores: pd.DataFrame, table: pd.DataFrame, *, percentile: float,
                  size: int) -> pd.DataFrame:
    """Per model, its best head's ``size`` best images (best first), then worst (worst first)."""
    rows = select(scores, metric="iou", threshold=percentile, regions="union")
    picks = []
    for best in table.dropna(subset=["best_layer"]).itertuples():
        layer, head = int(best.best_layer), int(best.best_head)
        own = rows[(rows["model"] == best.model) & (rows["method"] == best.method)
                   & (rows["layer"] == layer) & (rows["head"] == head)]
        own = own.dropna(subset=["value"]).sort_values("value")
        for outcome, chosen in (("wins", own.tail(size)[::-1]), ("fails", own.head(size))):
            picks.append(chosen[["image_id", "value"]].assign(
                model=best.model, variant=best.variant, method=best.method, layer=layer,
                head=head, outcome=outcome))
    columns = [*GROUP, *HEAD, "outcome", "image_id", "value"]
    return pd.concat(picks, ignore_index=True)[columns] if picks else pd.DataFrame(columns=columns)


def best_head_gallery(picks: pd.DataFrame, *, samples: Collection[data.Sample],
                      stores: Mapping[tuple[str, str], str], geometries: Mapping) -> plt.Figure | None:
    """One row per model of `gallery_picks`: its best head's map and the boxes on each image."""
    if picks.empty:
        return None
    by_id = {s.image_id: s for s in samples}
    models = list(dict.fromkeys(picks["model"]))
    width = int(picks.groupby("model").size().max())
    fig, axes = plt.subplots(len(models), width, squeeze=False, layout="constrained",
                             figsize=(min(plots.PAGE_WIDTH, 1.9 * width), 2.1 * len(models)))
    for row, (name, own) in zip(axes, picks.groupby("model", sort=False), strict=True):
        first = own.iloc[0]
        store = cache.MapStore(stores[(name, first["variant"])])
        _, maps = store.read(first["method"], int(first["layer"]), list(own["image_id"]))
        geometry = geometries[name]
        for ax, pick, saliency in zip(row, own.itertuples(), maps, strict=False):
            sample = by_id[pick.image_id]
            frame = geometry.frame_image(data.load_image(sample.path))
            boxes = geometry.boxes_to_frame(sample.boxes_ltwh(), sample.width, sample.height)
            plots.overlay(ax, frame, saliency[pick.head], boxes,
                          title=f"L{pick.layer}H{pick.head}\n{pick.outcome}: {pick.value:.2f}")
        row[0].set_ylabel(name, fontsize=plots.TITLE_PT)  # the row's model, once
    plots.map_scale(fig, axes)
    return fig
