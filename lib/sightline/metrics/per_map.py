"""Scores of maps each against its own mask, ``(N, H, W)`` paired 1:1: top-k sets by
partitioning, mass, pointing, AUC and NSS; `sweep` shares their formulas."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .core import ArrayLike, _array, _checked, _masks, _ratio, _same_shape, relative_iou, top_k_size


def _set_scores(inside: np.ndarray, k: np.ndarray, area: np.ndarray) -> dict[str, np.ndarray]:
    """IoU, GTC and SC from |top-k ∩ mask|, k and |mask| (broadcast together)."""
    union = k + area - inside
    return {
        "iou": _ratio(inside, np.where(area > 0, union, 0)),
        "gtc": _ratio(inside, area),
        "sc": _ratio(inside, np.where(area > 0, k, 0)),
    }


def _max_iou(area: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Best reachable IoU for mask areas and top-k sizes (broadcast): min / max, NaN if no mask."""
    return _ratio(np.minimum(area, k), np.where(area > 0, np.maximum(area, k), 0))


def _auc(u: np.ndarray, area: np.ndarray, n: int) -> np.ndarray:
    """AUC from the Mann-Whitney U of a mask of ``area`` pixels among ``n``: ``U / (a (n - a))``,
    NaN for an empty or full mask."""
    return _ratio(u, area * (n - area))


def _nss(mass_in: np.ndarray, area: np.ndarray, mean: np.ndarray, std: np.ndarray,
         n: int) -> np.ndarray:
    """NSS from the mass inside a mask of ``area`` pixels and the map's mean and std:
    ``(mass_in / area - mean) / std``; NaN for an empty or full mask or a constant map."""
    return _ratio(_ratio(mass_in, area) - mean, np.where(area < n, std, 0))


def _pairs(maps: ArrayLike, masks: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated ``(N, n)`` float32 maps (no -0.0) and bool masks of one ``(N, H, W)`` shape,
    and each map's first maximum ``(N,)``: one argmax of the bits as uint32 (ordered as the
    values, for finite values >= +0.0), whose maxima check the maps."""
    x = np.ascontiguousarray(_array(maps, "maps", ndim=3), dtype=np.float32)
    m = _masks(masks, "masks")
    _same_shape(x, m, "maps and masks")
    n = x.shape[1] * x.shape[2]
    if n == 0:
        raise ValueError(f"maps must have at least one pixel, got shape {x.shape}")
    x, m = x.reshape(len(x), n), m.reshape(len(m), n)
    top = x.view(np.uint32).argmax(axis=1)
    checked = _checked(x, "maps", x.view(np.uint32)[np.arange(len(x)), top])
    if checked is not x:
        x, top = checked, checked.argmax(axis=1)
    return x, m, top


def _blank(x: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Whether each map is all zero, from its maximum."""
    return x[np.arange(len(x)), top] == 0


def _inside_top_k(x: np.ndarray, m: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """|top-k ∩ mask| of each ``(n,)`` float32 map row and its mask row, per k: ``(C, len(ks))``.

    Selection, not sorting, one map at a time in a buffer that stays in cache: keys are the
    value's bits (order-preserving for values >= +0.0) with the mask in the lowest bit,
    partitioned in place at ``n - k`` for each k, largest first, each time only the part
    above the last cut, so the top-k sets end up as nested suffixes whose mask bits are
    counted. Where a value equal to the k-th largest also lies below the cut, key order
    (mask bit) is not the tie rule: that (map, k) is counted again from the map, equal
    values taken in row-major order.
    """
    c, n = x.shape
    bits = x.view(np.uint32)
    inside = np.zeros((c, len(ks)), np.int64)
    cols = np.flatnonzero(ks > 0)[::-1]  # k = 0 keeps nothing
    if not cols.size:
        return inside
    cuts = n - ks[cols]  # ascending positions
    keys = np.empty(n, np.uint32)
    low = np.empty(n - cuts[0], np.uint32)
    straddles = []  # (map, column, value at the cut)
    for r in range(c):
        np.left_shift(bits[r], 1, out=keys)
        keys |= m[r]
        start = 0
        for j, cut in zip(cols, cuts, strict=True):
            if cut > start:
                keys[start:].partition(cut - start)
                edge = keys[cut] >> 1
                if keys[start:cut].max() >> 1 == edge:
                    straddles.append((r, j, edge))
            start = cut
        np.bitwise_and(keys[cuts[0] :], 1, out=low)
        inside[r, cols] = np.cumsum(np.add.reduceat(low, cuts - cuts[0])[::-1])[::-1]
    for r, j, edge in straddles:
        above = bits[r] > edge
        need = int(ks[j]) - np.count_nonzero(above)
        tied = np.flatnonzero(bits[r] == edge)[:need]
        inside[r, j] = np.count_nonzero(m[r] & above) + np.count_nonzero(m[r, tied])
    return inside


def shared_interest(maps: ArrayLike, masks: ArrayLike, percentiles: Sequence[float]
                    ) -> dict[str, np.ndarray]:
    """Shared Interest IoU, GTC = |S∩G|/|G| and SC = |S∩G|/|S| of the top-k set S of each
    ``(N, H, W)`` map against its mask: each ``(N, P)``."""
    x, m, top = _pairs(maps, masks)
    ks_all = top_k_size(x.shape[1], percentiles)
    ks, back = np.unique(ks_all, return_inverse=True)
    inside = _inside_top_k(x, m, ks)[:, back]
    scores = _set_scores(inside, ks_all, np.count_nonzero(m, axis=1)[:, None])
    return {name: np.where(_blank(x, top)[:, None], np.nan, v) for name, v in scores.items()}


def iou(maps: ArrayLike, masks: ArrayLike, percentiles: Sequence[float]) -> np.ndarray:
    """IoU of each map's top-k set with its mask at each percentile: ``(N, P)``."""
    return shared_interest(maps, masks, percentiles)["iou"]


def gtc(maps: ArrayLike, masks: ArrayLike, percentiles: Sequence[float]) -> np.ndarray:
    """Ground-truth coverage |top-k ∩ mask| / |mask| at each percentile: ``(N, P)``."""
    return shared_interest(maps, masks, percentiles)["gtc"]


def sc(maps: ArrayLike, masks: ArrayLike, percentiles: Sequence[float]) -> np.ndarray:
    """Saliency coverage |top-k ∩ mask| / |top-k| at each percentile: ``(N, P)``."""
    return shared_interest(maps, masks, percentiles)["sc"]


def iou_rel(maps: ArrayLike, masks: ArrayLike, percentiles: Sequence[float]) -> np.ndarray:
    """IoU over the best any map reaches for the mask's area (`max_iou`): ``(N, P)``."""
    return relative_iou(iou(maps, masks, percentiles), max_iou(masks, percentiles))


def _mass(x: np.ndarray, m: np.ndarray, spread: bool = False) -> np.ndarray:
    """Per map ``(N, 2 or 3)`` in float64: total mass, mass inside the mask and (``spread``)
    the sum of squared deviations from the mean; one map at a time in a float64 buffer that
    stays in cache (the same NumPy passes as a per-map loop: see docs/benchmarks.md)."""
    c, n = x.shape
    out = np.empty((c, 3 if spread else 2))
    values = np.empty(n)
    for r in range(c):
        np.copyto(values, x[r])
        out[r, 0] = values.sum()
        out[r, 1] = values[m[r]].sum()
        if spread:
            values -= out[r, 0] / n
            out[r, 2] = np.einsum("n,n->", values, values)  # not BLAS: it spins up threads
    return out


def coverage(maps: ArrayLike, masks: ArrayLike) -> np.ndarray:
    """Attention mass inside the mask / total mass: ``(N,)`` (Shared Interest SC, continuous;
    the energy-based pointing game of Score-CAM, Wang et al. 2020)."""
    x, m, _ = _pairs(maps, masks)
    total, inside = _mass(x, m).T
    return _ratio(inside, np.where(m.any(axis=1), total, 0))


def pointing_game(maps: ArrayLike, masks: ArrayLike) -> np.ndarray:
    """Whether each map's maximum (the lowest row-major index among ties) lies inside its
    mask: ``(N,)`` float, 1.0 hit / 0.0 miss, NaN for an empty mask or an all-zero map."""
    x, m, top = _pairs(maps, masks)
    hit = m[np.arange(len(m)), top]
    return np.where(_blank(x, top) | ~m.any(axis=1), np.nan, hit)


def auc(maps: ArrayLike, masks: ArrayLike) -> np.ndarray:
    """ROC AUC of each map's values as a classifier of its mask's pixels (the package's
    definition, ``sklearn.metrics.roc_auc_score``'s): ``(N,)``. One sort per map, mask in the key."""
    x, m, top = _pairs(maps, masks)
    c, n = x.shape
    keys, low = np.empty(n, np.uint32), np.empty(n, np.uint32)
    inside, position = np.empty(n), np.arange(n, dtype=np.float64)
    u = np.empty(c)
    for r in range(c):
        np.left_shift(x[r].view(np.uint32), 1, out=keys)
        keys |= m[r]
        keys.sort()  # ascending values; among equal ones the outside pixels first
        np.bitwise_and(keys, 1, out=low)
        np.copyto(inside, low)
        # each inside pixel's position counts the inside pixels before it (their sum is
        # subtracted below) and the outside pixels below it or equal to it: equal ones
        # count half in U, so runs of one value holding both are corrected
        u[r] = np.einsum("n,n->", inside, position)
        np.bitwise_xor(keys[1:], keys[:-1], out=low[:-1])
        if (low[:-1] == 1).any():  # keys 2v, 2v + 1: a value inside and outside
            value = keys >> 1
            run = np.cumsum(np.r_[True, value[1:] != value[:-1]]) - 1
            run_inside = np.bincount(run, weights=inside)
            u[r] -= (run_inside * (np.bincount(run) - run_inside)).sum() / 2
    area = np.count_nonzero(m, axis=1).astype(np.float64)
    u -= area * (area - 1) / 2
    return np.where(_blank(x, top), np.nan, _auc(u, area, n))


def nss(maps: ArrayLike, masks: ArrayLike) -> np.ndarray:
    """Normalised scanpath saliency, the mean over the mask of the z-scored map (population
    std): ``(N,)``, from sums, ``(mass inside / area - mean) / std``, never forming the map."""
    x, m, _ = _pairs(maps, masks)
    n = x.shape[1]
    total, inside, spread = _mass(x, m, spread=True).T
    area = np.count_nonzero(m, axis=1).astype(np.float64)
    return _nss(inside, area, total / n, np.sqrt(spread / n), n)


def max_iou(masks: ArrayLike, percentiles: Sequence[float]) -> np.ndarray:
    """Best IoU any map can reach at each percentile: ``min(a, k) / max(a, k)``, ``(N, P)``."""
    m = _masks(masks, "masks")
    n = m.shape[1] * m.shape[2]
    return _max_iou(m.reshape(len(m), n).sum(axis=1)[:, None], top_k_size(n, percentiles))
