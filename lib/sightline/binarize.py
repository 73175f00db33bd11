"""Binarisation rules: which pixels of a map the field's conventions count as attended.

Each rule is a batched function from ``(N, H, W)`` non-negative maps to ``(N, H, W)`` boolean
masks; ``RULES`` names them with the parameter each convention uses, stored in the metrics
table's ``threshold`` column, and the metric name its IoU goes under. The percentile rule is
the project's IoU@p (scored by ``metrics.sweep`` at every percentile); the others are scored
by ``scoring.score_rules``. ``conventions_table`` sets the models' rankings under the rules
side by side.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import ndimage, stats

from . import metrics
from .metrics import ArrayLike


def _flat(maps: ArrayLike) -> tuple[np.ndarray, tuple[int, ...]]:
    """Validated float64 ``(N, H * W)`` maps and the ``(N, H, W)`` shape."""
    x = metrics.checked_maps(maps, "maps", 3)
    return x.reshape(len(x), -1).astype(np.float64), x.shape


def top_k(maps: ArrayLike, percentile: float) -> np.ndarray:
    """The percentile rule: exactly ``round(n (100 - p) / 100)`` highest pixels (IoU@p's set),
    equal values taken by ascending row-major index (the IoU@p contract)."""
    x, shape = _flat(maps)
    k = metrics.top_k_size(x.shape[1], [percentile])[0]
    masks = np.zeros(x.shape, bool)
    np.put_along_axis(masks, np.argsort(-x, axis=1, kind="stable"), np.arange(x.shape[1]) < k, axis=1)
    return masks.reshape(shape)


def mass(maps: ArrayLike, percent: float = 60.0) -> np.ndarray:
    """DINO's rule (Caron et al. 2021): the smallest set of highest pixels holding at least
    ``percent`` % of the map's mass (ties in the top-k order); nothing for an all-zero map."""
    if not 0 < percent <= 100:
        raise ValueError(f"percent must lie in (0, 100], got {percent}")
    x, shape = _flat(maps)
    ranked = -np.sort(-x, axis=1)  # the values in the top-k order (no index sort needed)
    held = np.cumsum(ranked, axis=1)
    total = held[:, -1:]
    k = np.minimum((held < total * percent / 100).sum(axis=1) + 1, x.shape[1])
    k = np.where(total[:, 0] > 0, k, 0)
    kth = np.take_along_axis(ranked, np.maximum(k - 1, 0)[:, None], axis=1)
    above, tied = x > kth, x == kth  # the k-th value's ties go by ascending index
    room = (k - above.sum(axis=1))[:, None]
    return ((above | tied & (np.cumsum(tied, axis=1) <= room)) & (k[:, None] > 0)).reshape(shape)


def max_box(maps: ArrayLike, percent: float = 15.0) -> np.ndarray:
    """Grad-CAM's localisation rule (Selvaraju et al. 2017): pixels above ``percent`` % of
    the map's maximum, the bounding box of their largest 8-connected component (the first in
    row-major order among equal sizes), filled; nothing for an all-zero map."""
    x = metrics.checked_maps(maps, "maps", 3)
    n, h, w = x.shape
    above = x > x.max(axis=(1, 2), keepdims=True) * np.float32(percent / 100)
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True  # 8-connected within a map, never across maps
    labels, count = ndimage.label(above, structure)
    boxes = ndimage.find_objects(labels)
    size = np.bincount(labels.reshape(-1), minlength=count + 1)[1:]
    owner = np.array([box[0].start for box in boxes], np.intp)
    best = np.lexsort((np.arange(count), -size, owner))  # per map: largest, then first
    first = best[np.r_[True, owner[best][1:] != owner[best][:-1]]] if count else best
    y0, y1, x0, x1 = np.zeros((4, n), np.intp)
    spans = np.array([(b[1].start, b[1].stop, b[2].start, b[2].stop) for b in boxes], np.intp)
    if count:
        y0[owner[first]], y1[owner[first]], x0[owner[first]], x1[owner[first]] = spans[first].T
    rows = (np.arange(h) >= y0[:, None]) & (np.arange(h) < y1[:, None])
    cols = (np.arange(w) >= x0[:, None]) & (np.arange(w) < x1[:, None])
    return rows[:, :, None] & cols[:, None, :]


def otsu(maps: ArrayLike, nbins: int = 256) -> np.ndarray:
    """Pixels above each map's Otsu threshold, as ``skimage.filters.threshold_otsu`` finds
    it on the map in float64 (its ``nbins``-bin histogram over the map's range, NumPy's
    binning); a constant map keeps nothing."""
    x, shape = _flat(maps)
    low, high = x.min(axis=1), x.max(axis=1)
    varied = high > low
    threshold = high.copy()  # a constant map: nothing lies above its value
    v, first, last = x[varied], low[varied], high[varied]
    edges = np.linspace(first, last, nbins + 1, axis=1)
    index = ((v - first[:, None]) / (last - first)[:, None] * nbins).astype(np.intp)
    index[index == nbins] -= 1
    index -= v < np.take_along_axis(edges, index, axis=1)
    index += (v >= np.take_along_axis(edges, index + 1, axis=1)) & (index != nbins - 1)
    rows = np.arange(len(v))[:, None] * nbins
    counts = np.bincount((rows + index).reshape(-1), minlength=len(v) * nbins)
    counts = counts.reshape(len(v), nbins).astype(np.float32)
    centres = (edges[:, :-1] + edges[:, 1:]) / 2
    weight1, weight2 = np.cumsum(counts, axis=1), np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]
    mean1 = np.cumsum(counts * centres, axis=1) / weight1
    mean2 = (np.cumsum((counts * centres)[:, ::-1], axis=1) / weight2[:, ::-1])[:, ::-1]
    variance = weight1[:, :-1] * weight2[:, 1:] * (mean1[:, :-1] - mean2[:, 1:]) ** 2
    threshold[varied] = np.take_along_axis(centres, variance.argmax(axis=1)[:, None], 1)[:, 0]
    return (x > threshold[:, None]).reshape(shape)


def std(maps: ArrayLike, k: float = 1.0) -> np.ndarray:
    """Shared Interest's rule (Boggust et al. 2022): min-max scaled, at least mean + k std."""
    return metrics.binarize_std(metrics.checked_maps(maps, "maps", 3), k)


@dataclass(frozen=True)
class Rule:
    """One convention: the metric name of its IoU, its parameter (the ``threshold`` column;
    NaN where it has none), its masks (None: top-k at each of the study's percentiles,
    scored by ``metrics.sweep``) and a label for tables."""

    metric: str
    threshold: float
    masks: Callable[[ArrayLike], np.ndarray] | None
    label: str


RULES: dict[str, Rule] = {
    "percentile": Rule("iou", math.nan, None, "top (100 − p) % of pixels (IoU@p)"),
    "mass": Rule("iou_mass", 60.0, functools.partial(mass, percent=60.0),
                 "smallest top set holding 60 % of the mass (DINO)"),
    "max": Rule("iou_max", 15.0, functools.partial(max_box, percent=15.0),
                "box of the largest component above 15 % of the maximum (Grad-CAM)"),
    "otsu": Rule("iou_otsu", math.nan, otsu, "above Otsu's threshold"),
    "std": Rule("iou_std", 1.0, functools.partial(std, k=1.0),
                "min-max scaled, at least mean + 1 std (Shared Interest)"),
}


def conventions_table(scores: pd.DataFrame, percentile: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each model's best-layer mean IoU against the union under each rule present in
    ``scores`` (head-mean maps; IoU@p at ``percentile``), and Kendall's τ between the
    models' rankings under each pair of rules with its n (models scored under both).

    Returns the wide table (one row per model, variant and method; a column per rule, with
    the layer it was best at) and the τ table (rule_a, rule_b, tau, p, n).
    """
    by_metric = {rule.metric: name for name, rule in RULES.items()}
    rows = scores[(scores["target"] == "union") & (scores["head"] == -1)
                  & scores["metric"].isin(list(by_metric))]
    rows = rows[(rows["metric"] != "iou") | (rows["threshold"] == percentile)]
    means = rows.groupby(["model", "variant", "method", "metric", "layer"], observed=True)[
        "value"].mean().dropna().reset_index()
    best = means.loc[means.groupby(["model", "variant", "method", "metric"], observed=True)[
        "value"].idxmax()]
    best["rule"] = best["metric"].map(by_metric)
    wide = best.pivot(index=["model", "variant", "method"], columns="rule",
                      values=["value", "layer"])
    rules = [r for r in RULES if r in set(best["rule"])]
    table = pd.concat({r: wide["value"][r] for r in rules}, axis=1)
    for r in rules:
        table[f"{r} layer"] = wide["layer"][r].astype("Int64")
    taus = []
    for a, b in combinations(rules, 2):
        both = table[[a, b]].dropna()
        tau, p = stats.kendalltau(both[a], both[b]) if len(both) > 1 else (math.nan, math.nan)
        taus.append({"rule_a": a, "rule_b": b, "tau": tau, "p": p, "n": len(both)})
    return (table.reset_index(),
            pd.DataFrame(taus, columns=["rule_a", "rule_b", "tau", "p", "n"]))
