"""Scores of attention maps against expert masks: top-k overlap, mass, pointing, soft targets.

Conventions shared by every function here:

- A map is non-negative, larger = more attention. Maps are ranked as float32 (the dtype of
  upsampled maps), masks are boolean; both are ``(N, H, W)`` and paired 1:1 unless noted.
- **Top-k** at percentile ``p`` keeps exactly ``k = round(n * (100 - p) / 100)`` of the
  ``n = H * W`` pixels, rounding halves to even (``np.round``, the rule of Python's
  ``round``): the first ``k`` pixels of a stable sort by descending value, so among equal
  values the lower row-major index is kept. ``p`` lies in ``[0, 100)``.
- **NaN**, never inf and never a warning, where a score is undefined: every score of an
  empty mask (nothing to find) or of an all-zero map (nothing attended), SC of an empty
  top-k set (k = 0), AUC and NSS of a full mask (nothing outside to tell apart), NSS of a
  constant map (no spread to z-score by).
- **Threshold-free ranking scores**: ``auc`` is the area under the ROC curve of the map's
  values as a classifier of the mask's pixels (the Mann-Whitney U over inside x outside
  pixels / (n_in * n_out), ties counted half); ``nss`` is the mean over the mask of the map
  z-scored over all its pixels with the population std (ddof = 0).

``sweep`` is the engine for many maps per image (heads, layers): each upsampled map is
ranked once, exactly, for all percentiles, all targets of its image and AUC (the same
ranking's tie-averaged ranks). The 1:1 functions (one mask per map) select each map's
top-k sets by partitioning, with the mask folded into the key (``_inside_top_k``), and
``auc`` sorts each map once the same way; coverage, NSS and the pointing game need no
ranking at all. Both paths give identical set scores and AUC (tested against each other,
a per-threshold argsort and scikit-learn).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

ArrayLike = np.ndarray | torch.Tensor
SET_METRICS = ("iou", "gtc", "sc")
KL_EPS = 1e-8  # added to both normalised distributions before KL (then renormalised)



# ---------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------


def _array(values: ArrayLike, name: str, dtype=None) -> np.ndarray:
    """NumPy view of a NumPy array or torch tensor (any device)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        return np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a numeric array or tensor: {error}") from None


def _float_maps(values: ArrayLike, name: str, ndim: int) -> np.ndarray:
    """C-contiguous float32 maps of the given rank, values not yet checked."""
    maps = _array(values, name)
    if maps.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {maps.shape}")
    return np.ascontiguousarray(maps, dtype=np.float32)


_INF_BITS = np.uint32(0x7F800000)  # float32 +inf: finite values >= +0.0 lie below it as uint32


def _checked(maps: np.ndarray, name: str, peak_bits: np.ndarray) -> np.ndarray:
    """``maps`` if the largest value bits read as uint32 (``peak_bits``) show every value
    finite and >= +0.0, one pass; else the full check, and a copy with -0.0 made +0.0."""
    if (peak_bits < _INF_BITS).all():
        return maps
    low, high = maps.min(), maps.max()  # NaN propagates through both
    if not (np.isfinite(low) and np.isfinite(high)):
        bad = maps.size - np.isfinite(maps).sum()
        raise ValueError(f"{name} must be finite: found {bad} NaN or inf values")
    if low < 0:
        raise ValueError(f"{name} must be non-negative (larger = more attention); minimum is {low}")
    return maps + np.float32(0)  # only -0.0 (bits 0x80000000) was left: -0.0 + 0 = +0.0


def _maps(values: ArrayLike, name: str, ndim: int) -> np.ndarray:
    """Validated float32 maps of the given rank: finite and non-negative, no -0.0."""
    maps = _float_maps(values, name, ndim)
    if not maps.size:
        return maps
    return _checked(maps, name, maps.view(np.uint32).max())


def _masks(values: ArrayLike, name: str, ndim: int = 3) -> np.ndarray:
    """Validated boolean masks; a numeric mask must hold only 0 and 1."""
    masks = _array(values, name)
    if masks.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {masks.shape}")
    if masks.dtype != bool:
        if not np.isin(masks, (0, 1)).all():
            raise ValueError(f"{name} must be binary (0/1 or bool)")
        masks = masks.astype(bool)
    return masks


def _same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {a.shape} and {b.shape}")


def _percentiles(percentiles: Sequence[float] | np.ndarray) -> np.ndarray:
    """Validated 1-D float64 percentiles in [0, 100)."""
    ps = np.atleast_1d(_array(percentiles, "percentiles", np.float64))
    if ps.ndim != 1 or ps.size == 0:
        raise ValueError(f"percentiles must be a non-empty 1-D sequence, got shape {ps.shape}")
    if not ((ps >= 0) & (ps < 100)).all():
        raise ValueError(f"percentiles must lie in [0, 100), got {ps.tolist()}")
    return ps


def top_k_size(n: int, percentiles: Sequence[float] | np.ndarray) -> np.ndarray:
    """Pixels kept at each percentile: ``round(n * (100 - p) / 100)``, halves to even."""
    ps = _percentiles(percentiles)
    return np.round(n * (100.0 - ps) / 100.0).astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float64 with NaN where den is 0."""
    num, den = np.broadcast_arrays(np.asarray(num, np.float64), np.asarray(den, np.float64))
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den != 0)


# ---------------------------------------------------------------------------------------
# The ranking engine
# ---------------------------------------------------------------------------------------


_WORDS = (0, 1) if sys.byteorder == "little" else (1, 0)  # low and high half of a uint64


def _top_k_counts(
    x: np.ndarray, ks: np.ndarray, sig: np.ndarray, n_sig: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank maps once: pixels of each signature in each top-k set ``(C, n_sig, len(ks))``,
    the doubled tie-averaged rank sums of each signature's pixels ``(C, n_sig)`` and the
    signature of each map's top-1 pixel ``(C,)``.

    ``x`` is ``(C, n)`` float32, ``ks`` ascending unique sizes, ``sig`` ``(n,)`` ints in
    ``[0, n_sig)`` saying which targets a pixel belongs to. One exact sort per map of
    64-bit keys, value bits above the reversed pixel index: ascending values, equal values
    by descending index, so the last ``k`` positions are the top-k set of the contract.
    Position ``i`` has ordinal rank ``i + 1``; a run of equal values shares its mean rank
    (the Mann-Whitney ranks, ties counted half), which changes a signature's rank sum only
    where a run holds pixels of more than one signature.
    """
    c, n = x.shape
    low, high = _WORDS
    keys = np.empty((c, n), np.uint64)
    words = keys.view(np.uint32).reshape(c, n, 2)
    words[:, :, high] = x.view(np.uint32) & np.uint32(0x7FFFFFFF)  # -0.0 ranks as +0.0
    words[:, :, low] = np.arange(n - 1, -1, -1, dtype=np.uint32)
    keys.sort(axis=1)
    small = np.uint8 if n_sig <= 256 else np.intp
    ranked = sig[::-1].astype(small)[words[:, :, low]]
    value = words[:, :, high]
    same = value[:, 1:] == value[:, :-1]
    mixed = same & (ranked[:, 1:] != ranked[:, :-1])

    width = len(ks) + 1
    cell = np.searchsorted(ks, n - np.arange(n), side="left") * n_sig  # sets missed, by sig
    rank2 = 2.0 * np.arange(1, n + 1)
    inside = np.empty((c, n_sig, len(ks)), np.int64)
    rank_sums = np.empty((c, n_sig))
    for r in range(c):
        counts = np.bincount(cell + ranked[r], minlength=n_sig * width)
        inside[r] = np.cumsum(counts.reshape(width, n_sig), axis=0)[:-1].T
        rank_sums[r] = np.bincount(ranked[r], weights=rank2, minlength=n_sig)
        if mixed[r].any():
            run = np.zeros(n, np.intp)
            np.cumsum(~same[r], out=run[1:])
            at = np.flatnonzero(np.isin(run, run[1:][mixed[r]]))  # positions of mixed runs
            first = at[np.searchsorted(run[at], run[at], "left")]
            last = at[np.searchsorted(run[at], run[at], "right") - 1]
            rank_sums[r] += np.bincount(ranked[r, at], weights=first + last - 2 * at,
                                        minlength=n_sig)
    return inside, rank_sums, ranked[:, -1].astype(np.intp)


def _signatures(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which targets each pixel belongs to: ids ``(n,)`` and membership ``(n_sig, T)``."""
    t = masks.shape[0]
    if t > 16:
        rows, sig = np.unique(masks.T, axis=0, return_inverse=True)
        return sig.reshape(-1), rows
    code = np.zeros(masks.shape[1], np.uint16)
    for bit, mask in enumerate(masks):
        code |= mask.astype(np.uint16) << bit
    present = np.flatnonzero(np.bincount(code))
    lookup = np.zeros(present[-1] + 1, np.intp)
    lookup[present] = np.arange(len(present))
    member = (present[:, None] >> np.arange(t)) & 1
    return lookup[code], member.astype(bool)


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


def _blank_to_nan(values: np.ndarray, blank: np.ndarray) -> np.ndarray:
    """NaN where the map is all zero (``blank`` broadcasts against ``values``)."""
    return np.where(blank, np.nan, values)


# ---------------------------------------------------------------------------------------
# 1:1 metrics
# ---------------------------------------------------------------------------------------


def _pairs(maps: ArrayLike, masks: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated ``(N, n)`` float32 maps (no -0.0) and bool masks of one ``(N, H, W)`` shape,
    and the row-major index of each map's first maximum ``(N,)``.

    One pass over the maps: the argmax of their bits read as uint32 (ordered as the values
    are, for finite values >= +0.0) finds each maximum, and the maxima check the maps.
    """
    x = _float_maps(maps, "maps", 3)
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


def _set_metrics(maps: ArrayLike, masks: ArrayLike, percentiles) -> dict[str, np.ndarray]:
    """IoU, GTC and SC of (N, H, W) maps against (N, H, W) masks at each percentile."""
    x, m, top = _pairs(maps, masks)
    ks_all = top_k_size(x.shape[1], percentiles)
    ks, back = np.unique(ks_all, return_inverse=True)
    inside = _inside_top_k(x, m, ks)[:, back]
    scores = _set_scores(inside, ks_all, np.count_nonzero(m, axis=1)[:, None])
    return {name: _blank_to_nan(v, _blank(x, top)[:, None]) for name, v in scores.items()}


def iou(maps: ArrayLike, masks: ArrayLike, percentiles: Sequence[float]) -> np.ndarray:
    """IoU of each map's top-k set with its mask at each percentile: ``(N, P)``."""
    return _set_metrics(maps, masks, percentiles)["iou"]


def gtc(maps: ArrayLike, masks: ArrayLike, percentiles: Sequence[float]) -> np.ndarray:
    """Ground-truth coverage |top-k ∩ mask| / |mask| at each percentile: ``(N, P)``."""
    return _set_metrics(maps, masks, percentiles)["gtc"]


def sc(maps: ArrayLike, masks: ArrayLike, percentiles: Sequence[float]) -> np.ndarray:
    """Saliency coverage |top-k ∩ mask| / |top-k| at each percentile: ``(N, P)``."""
    return _set_metrics(maps, masks, percentiles)["sc"]


def iou_rel(maps: ArrayLike, masks: ArrayLike, percentiles: Sequence[float]) -> np.ndarray:
    """IoU over the best any map reaches for the mask's area (`max_iou`): ``(N, P)``."""
    return relative_iou(iou(maps, masks, percentiles), max_iou(masks, percentiles))


def shared_interest(
    maps: ArrayLike, masks: ArrayLike, percentiles: Sequence[float]
) -> dict[str, np.ndarray]:
    """Shared Interest IoU, GTC = |S∩G|/|G| and SC = |S∩G|/|S| of the top-k set S: each (N, P)."""
    return _set_metrics(maps, masks, percentiles)


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
    """Attention mass inside the mask / total mass: ``(N,)`` (Shared Interest SC, continuous)."""
    x, m, _ = _pairs(maps, masks)
    total, inside = _mass(x, m).T
    return _ratio(inside, np.where(m.any(axis=1), total, 0))


def energy_pointing_game(maps: ArrayLike, masks: ArrayLike) -> np.ndarray:
    """Energy-based pointing game of Score-CAM (Wang et al. 2020): mass inside / total, ``(N,)``.

    The same quantity as ``coverage``; kept under the name the saliency literature uses.
    """
    return coverage(maps, masks)


def pointing_game(maps: ArrayLike, masks: ArrayLike) -> np.ndarray:
    """Whether each map's maximum lies inside its mask: ``(N,)`` float, 1.0 hit / 0.0 miss.

    Ties go to the lowest row-major index (the top-1 pixel of the top-k rule). Float, not
    bool, so an empty mask or an all-zero map can be NaN; the mean over maps is the accuracy.
    """
    x, m, top = _pairs(maps, masks)
    hit = m[np.arange(len(m)), top]
    return np.where(_blank(x, top) | ~m.any(axis=1), np.nan, hit)


def _auc(u: np.ndarray, area: np.ndarray, n: int) -> np.ndarray:
    """AUC from the Mann-Whitney U of a mask of ``area`` pixels among ``n``: ``U / (a (n - a))``,
    NaN for an empty or full mask."""
    return _ratio(u, area * (n - area))


def _nss(mass_in: np.ndarray, area: np.ndarray, mean: np.ndarray, std: np.ndarray,
         n: int) -> np.ndarray:
    """NSS from the mass inside a mask of ``area`` pixels and the map's mean and std:
    ``(mass_in / area - mean) / std``; NaN for an empty or full mask or a constant map."""
    return _ratio(_ratio(mass_in, area) - mean, np.where(area < n, std, 0))


def auc(maps: ArrayLike, masks: ArrayLike) -> np.ndarray:
    """Area under the ROC curve of each map's values as a classifier of its mask's pixels.

    The Mann-Whitney U of the inside against the outside pixels / ``(n_in * n_out)``, ties
    counted half (``sklearn.metrics.roc_auc_score``): ``(N,)``. NaN for an empty or full
    mask (nothing to tell apart) and an all-zero map. One sort per map, mask in the key,
    in a buffer that stays in cache.
    """
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
    return _blank_to_nan(_auc(u, area, n), _blank(x, top))


def nss(maps: ArrayLike, masks: ArrayLike) -> np.ndarray:
    """Normalised scanpath saliency: the mean over the mask of the z-scored map, ``(N,)``.

    Each map is z-scored over all its pixels, ``(x - mean) / std`` with the population std
    (ddof = 0); NaN for an empty or full mask (its mean z is 0 by construction) and for a
    constant map (no std), all-zero included. Computed from sums, the z-scored map is never
    formed: ``(mass inside / area - mean) / std``.
    """
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


def relative_iou(iou_values: ArrayLike, max_iou_values: ArrayLike) -> np.ndarray:
    """IoU as a fraction of the best reachable (``max_iou``), NaN where that is 0 or NaN."""
    return _ratio(_array(iou_values, "iou_values"), _array(max_iou_values, "max_iou_values"))


def shared_interest_scores(
    saliency: ArrayLike, ground_truth: ArrayLike, scores: Sequence[str] = SET_METRICS
) -> dict[str, np.ndarray]:
    """Shared Interest scores of already-binarised ``(B, H, W)`` saliency, as mitvis does it.

    Saliency is taken as ``abs(saliency)``; the ground truth must be binary, and so must the
    saliency unless only ``"sc"`` is asked for (SC of a continuous map is its mass share).
    """
    unknown = sorted(set(scores) - set(SET_METRICS))
    if unknown:
        raise ValueError(f"unknown scores {unknown}; choose from {list(SET_METRICS)}")
    gt = _masks(ground_truth, "ground_truth").astype(np.float64)
    sal = np.abs(_array(saliency, "saliency", np.float64))
    if sal.ndim != 3:
        raise ValueError(f"saliency must have 3 dimensions, got shape {sal.shape}")
    _same_shape(sal, gt, "saliency and ground_truth")
    if set(scores) - {"sc"} and not np.isin(sal, (0, 1)).all():
        raise ValueError("saliency must be binary for 'iou' and 'gtc'; only 'sc' takes a map")
    inside = (gt * sal).sum(axis=(1, 2))
    totals = {
        "iou": np.logical_or(gt, sal).sum(axis=(1, 2)),
        "gtc": gt.sum(axis=(1, 2)),
        "sc": sal.sum(axis=(1, 2)),
    }
    return {name: _ratio(inside, totals[name]) for name in scores}


# ---------------------------------------------------------------------------------------
# The engine: many maps per image
# ---------------------------------------------------------------------------------------


def upsample(maps: ArrayLike, resolution: int) -> np.ndarray:
    """``(..., h, w)`` grid maps -> ``(..., R, R)`` float32, bilinear, ``align_corners=False``.

    ``torch.nn.functional.interpolate`` on a ``(B, 1, h, w)`` batch: each map is computed on
    its own, so its values do not depend on the batch it came in. Same-size maps pass as is.
    """
    grid = _array(maps, "maps", np.float32)
    if grid.ndim < 2:
        raise ValueError(f"maps must have at least 2 dimensions, got shape {grid.shape}")
    *lead, h, w = grid.shape
    if (h, w) == (resolution, resolution):
        return np.ascontiguousarray(grid)
    batch = torch.from_numpy(np.ascontiguousarray(grid.reshape(-1, 1, h, w)))
    up = F.interpolate(batch, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return up.numpy().reshape(*lead, resolution, resolution)


@functools.lru_cache(maxsize=16)
def _bilinear_weights(size: int, resolution: int) -> np.ndarray:
    """``(R, size)`` weights of ``upsample`` along one axis, as torch computes them."""
    basis = torch.eye(size).reshape(size, 1, size, 1)
    up = F.interpolate(basis, size=(resolution, 1), mode="bilinear", align_corners=False)
    weights = up.reshape(size, resolution).T.double().numpy()
    weights.flags.writeable = False
    return weights


def _mass_weights(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``(T + 1, h, w)``: a grid map's mass inside each upsampled mask (and in all) is the
    dot product of the grid with these weights (bilinear upsampling is linear)."""
    ay = _bilinear_weights(grid[0], masks.shape[1])
    ax = _bilinear_weights(grid[1], masks.shape[2])
    inside = ay.T @ masks.astype(np.float64) @ ax
    return np.concatenate([inside, np.outer(ay.sum(axis=0), ax.sum(axis=0))[None]])


def sweep(
    maps: ArrayLike,
    targets: ArrayLike,
    target_image: ArrayLike,
    percentiles: Sequence[float],
    resolution: int,
    *,
    chunk_mb: float = 8.0,
    workers: int | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Score ``(N, K, h, w)`` grid maps against each image's ``(T, R, R)`` target masks.

    Maps are upsampled to ``R x R`` (``upsample``) and each is ranked once for all
    percentiles and all targets of its image (``target_image[t]`` is the image of target t).
    Returns ``iou``, ``iou_rel``, ``gtc``, ``sc`` ``(T, K, P)``; ``max_iou`` ``(T, P)`` (it depends on the
    mask only); ``coverage``, ``energy_pointing_game`` (equal), ``pointing_game``, ``auc``
    and ``nss`` ``(T, K)``; and ``area`` ``(T,)`` pixels per mask.

    Set scores, pointing and AUC equal the 1:1 functions on the repeated pairs exactly (the
    same exact ranking of the same float32 values); mass comes from the grid map in float64
    (upsampling is linear), and so do NSS's mean and spread (``up - mean = Ay (grid - mean)
    Ax^T``, its squares summed through the Gram matrices of the upsampling weights), so
    coverage and NSS equal them up to the float32 rounding of the upsampled map (~1e-7); a
    constant grid map has NSS NaN (its upsampling's rounding noise is not z-scored). Each
    of ``workers`` threads (default: one per core, at most 2) holds ``chunk_mb`` of upsampled
    float32 maps at a time (small chunks stay in cache); torch runs single-threaded
    meanwhile, then its setting is restored.
    """
    grid = _maps(maps, "maps", 4)
    masks = _masks(targets, "targets")
    owner = _array(target_image, "target_image")
    n_images, n_kinds, h, w = grid.shape
    if masks.shape[1:] != (resolution, resolution):
        raise ValueError(
            f"targets must be (T, {resolution}, {resolution}) at resolution={resolution}, "
            f"got shape {masks.shape}"
        )
    if owner.shape != (len(masks),) or not np.issubdtype(owner.dtype, np.integer):
        raise ValueError(
            f"target_image must be ({len(masks)},) integers, one per target; got "
            f"shape {owner.shape} dtype {owner.dtype}"
        )
    if owner.size and (owner.min() < 0 or owner.max() >= n_images):
        raise ValueError(f"target_image must index the {n_images} images of maps (0..N-1)")

    n = resolution * resolution
    flat = masks.reshape(len(masks), n)
    ks_all = top_k_size(n, percentiles)
    ks, back = np.unique(ks_all, return_inverse=True)
    area = flat.sum(axis=1)
    inside = np.zeros((len(masks), n_kinds, len(ks)), np.int64)
    mass_in = np.zeros((len(masks), n_kinds))
    mass_all = np.zeros((len(masks), n_kinds))
    hit = np.zeros((len(masks), n_kinds), bool)
    rank_sum = np.zeros((len(masks), n_kinds))
    deviation = np.zeros((len(masks), n_kinds))
    block = max(1, int(chunk_mb * 2**20 // (4 * n)))
    workers = workers or min(2, os.cpu_count() or 1)

    ay, ax = _bilinear_weights(h, resolution), _bilinear_weights(w, resolution)
    gram_y, gram_x = ay.T @ ay, ax.T @ ax

    def score_image(image: int) -> tuple[np.ndarray, ...]:
        owned = np.flatnonzero(owner == image)
        sig, member = _signatures(flat[owned])
        weights = _mass_weights(masks[owned], (h, w)).reshape(len(owned) + 1, -1).T
        parts = []
        for start in range(0, n_kinds, block):
            x = upsample(grid[image, start : start + block], resolution).reshape(-1, n)
            parts.append(_top_k_counts(x, ks, sig, len(member)))
        counts, rank_sums, top = (np.concatenate(p) for p in zip(*parts, strict=True))
        cells = grid[image].astype(np.float64)
        mass = cells.reshape(n_kinds, -1) @ weights
        # squared deviations of the upsampled map from its mean, on the grid: the
        # upsampling rows sum to 1, so up - mean = Ay (grid - mean) Ax^T
        centred = cells - (mass[:, -1] / n)[:, None, None]
        spread = np.einsum("khw,khw->k", centred, gram_y @ centred @ gram_x)
        spread[np.ptp(cells.reshape(n_kinds, -1), axis=1) == 0] = 0  # constant: no rounding noise
        return (owned, np.einsum("ksu,st->tku", counts, member), mass.T, member[top].T,
                (rank_sums @ member).T, spread)

    images = np.unique(owner)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            results = pool.map(score_image, images)
            for owned, counts, mass, top, ranks, spread in tqdm(
                results, total=len(images), desc="sweep", unit="img", disable=not progress
            ):
                inside[owned] = counts
                mass_in[owned], mass_all[owned] = mass[:-1], mass[-1]
                hit[owned] = top
                rank_sum[owned] = ranks
                deviation[owned] = spread
    finally:
        torch.set_num_threads(threads)

    blank = mass_all == 0
    scores = _set_scores(inside[:, :, back], ks_all, area[:, None, None])
    result = {name: _blank_to_nan(v, blank[:, :, None]) for name, v in scores.items()}
    result["max_iou"] = _max_iou(area[:, None], ks_all)
    result["iou_rel"] = relative_iou(result["iou"], result["max_iou"][:, None, :])
    result["coverage"] = _ratio(mass_in, np.where(area[:, None] > 0, mass_all, 0))
    result["energy_pointing_game"] = result["coverage"]
    result["pointing_game"] = np.where(blank | (area[:, None] == 0), np.nan, hit)
    a = area[:, None].astype(np.float64)
    u = rank_sum / 2 - a * (a + 1) / 2  # rank sums are of doubled ranks
    result["auc"] = _blank_to_nan(_auc(u, a, n), blank)
    result["nss"] = _nss(mass_in, a, mass_all / n, np.sqrt(deviation / n), n)
    result["area"] = area
    return result


# ---------------------------------------------------------------------------------------
# Continuous comparisons with a soft box target (the reference study's definitions)
# ---------------------------------------------------------------------------------------


def soft_target(boxes_xyxy: ArrayLike, height: int, width: int) -> np.ndarray:
    """Soft ``(H, W)`` float32 target of pixel boxes ``(n, 4)`` ``x0, y0, x1, y1``.

    Per box an anisotropic Gaussian centred on the box (pixel centres at ``i + 0.5``) with
    ``sigma = max(box side / 4, 1)`` px per axis, peak-normalised; the pixelwise max over the
    boxes, renormalised to peak 1. No boxes give an all-zero target.
    """
    boxes = _array(boxes_xyxy, "boxes_xyxy", np.float64)
    if boxes.size % 4 or (boxes.ndim == 2 and boxes.shape[1] != 4) or boxes.ndim > 2:
        raise ValueError(f"boxes_xyxy must be (n, 4) x0, y0, x1, y1 pixels, got {boxes.shape}")
    boxes = boxes.reshape(-1, 4)
    if not boxes.size:
        return np.zeros((height, width), np.float32)
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    sigma_x = np.maximum((boxes[:, 2] - boxes[:, 0]) / 4, 1.0)
    sigma_y = np.maximum((boxes[:, 3] - boxes[:, 1]) / 4, 1.0)
    gx = np.exp(-((np.arange(width) + 0.5 - centre_x[:, None]) ** 2) / (2 * sigma_x[:, None] ** 2))
    gy = np.exp(-((np.arange(height) + 0.5 - centre_y[:, None]) ** 2) / (2 * sigma_y[:, None] ** 2))
    bumps = gy[:, :, None] * gx[:, None, :]
    peaks = bumps.max(axis=(1, 2), keepdims=True)
    target = np.divide(bumps, peaks, out=np.zeros_like(bumps), where=peaks > 0).max(axis=0)
    top = target.max()
    return (target / top if top > 0 else target).astype(np.float32)


def _continuous_pair(maps: ArrayLike, targets: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 ``(N, H, W)`` maps and targets of one shape."""
    x = _maps(maps, "maps", 3).astype(np.float64)
    t = _maps(targets, "targets", 3).astype(np.float64)
    _same_shape(x, t, "maps and targets")
    return x, t


def _distributions(values: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Each map divided by its sum, then ``eps`` added and renormalised (so the smoothing
    does not depend on the map's scale); NaN rows for maps with no mass."""
    flat = values.reshape(len(values), -1)
    total = flat.sum(axis=1, keepdims=True)
    return (_ratio(flat, np.where(total > 0, total, 0)) + eps) / (1 + eps * flat.shape[1])


def mse(maps: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """Mean squared error of each map, min-max normalised to [0, 1], and its target: ``(N,)``.

    A constant map (including all-zero) has no min-max normalisation and scores NaN.
    """
    x, t = _continuous_pair(maps, targets)
    flat = x.reshape(len(x), -1)
    low = flat.min(axis=1, keepdims=True)
    scaled = _ratio(flat - low, flat.max(axis=1, keepdims=True) - low)
    return ((scaled - t.reshape(len(t), -1)) ** 2).mean(axis=1)


def kl(maps: ArrayLike, targets: ArrayLike, eps: float = KL_EPS) -> np.ndarray:
    """KL(target || map) in nats: ``(N,)``, maps first as every metric takes them. Each
    (``>= 0`` by validation) is normalised to sum 1 first, then ``eps`` is added to every
    pixel and it is renormalised, so a map and
    the same map times any positive factor score the same; an all-zero map or target gives
    NaN. (Adding eps before normalising, as the reference study does, makes a map with a
    small peak, e.g. a ViT Grad-CAM map at 1e-9, score like a uniform map.)"""
    x, t = _continuous_pair(maps, targets)
    p, q = _distributions(t, eps), _distributions(x, eps)
    return (p * (np.log(p) - np.log(q))).sum(axis=1)


def _emd_grid(values: np.ndarray, grid: int) -> np.ndarray:
    """Area-average each map onto ``grid x grid`` cells, as distributions ``(N, grid**2)``."""
    cells = F.adaptive_avg_pool2d(torch.from_numpy(values)[:, None], grid)
    return _distributions(cells[:, 0].numpy())


def emd(maps: ArrayLike, targets: ArrayLike, grid: int = 8) -> np.ndarray:
    """Exact 2-D Wasserstein-1 distance between each map and its target: ``(N,)``.

    Both are area-averaged onto a ``grid x grid`` grid (mass-preserving; the reference
    study resized bilinearly), normalised to sum 1 and placed at the cell centres of the
    unit square; the cost is Euclidean distance, solved exactly with POT's ``ot.emd2``.
    An all-zero map or target gives NaN.
    """
    import ot  # POT takes ~1.5 s to import; only EMD needs it

    x, t = _continuous_pair(maps, targets)
    a, b = _emd_grid(x, grid), _emd_grid(t, grid)
    centres = (np.arange(grid) + 0.5) / grid
    points = np.stack(np.meshgrid(centres, centres, indexing="ij"), axis=-1).reshape(-1, 2)
    cost = ot.dist(points, points, metric="euclidean")
    out = np.full(len(x), np.nan)
    for i in np.flatnonzero(np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)):
        out[i] = ot.emd2(a[i], b[i], cost)
    return out


# ---------------------------------------------------------------------------------------
# Binarisation rules of the Shared Interest code (mitvis/shared-interest, util.py)
# ---------------------------------------------------------------------------------------


def normalize_unit(maps: ArrayLike) -> np.ndarray:
    """Each ``(H, W)`` map min-max scaled to [0, 1] (float64); a constant map is all NaN."""
    x = _array(maps, "maps", np.float64)
    if x.ndim != 3:
        raise ValueError(f"maps must have 3 dimensions, got shape {x.shape}")
    low = x.min(axis=(1, 2), keepdims=True) if x.size else x
    high = x.max(axis=(1, 2), keepdims=True) if x.size else x
    return _ratio(x - low, np.broadcast_to(high - low, x.shape))


def binarize_std(maps: ArrayLike, num_std: float = 1.0) -> np.ndarray:
    """Shared Interest's ``binarize_std``: min-max each map, keep values >= mean + num_std
    std of that map (ties kept): ``(N, H, W)`` bool. A constant map keeps nothing."""
    x = normalize_unit(maps)
    with np.errstate(invalid="ignore"):
        threshold = np.mean(x, axis=(1, 2), keepdims=True) + num_std * np.std(
            x, axis=(1, 2), keepdims=True
        )
        return x >= threshold


def binarize_percentile(maps: ArrayLike, percentile: float) -> np.ndarray:
    """Shared Interest's ``binarize_percentile`` (percentile here in [0, 100)): min-max each
    map, keep values >= its ``percentile``-th percentile, ties kept, so a mostly-zero map
    can keep far more than (100 - p)% of its pixels. A constant map keeps nothing."""
    if not 0 <= percentile < 100:
        raise ValueError(f"percentile must lie in [0, 100), got {percentile}")
    x = normalize_unit(maps)
    if not x.size:
        return x.astype(bool)
    threshold = np.percentile(x, percentile, axis=(1, 2), keepdims=True)
    with np.errstate(invalid="ignore"):
        return x >= threshold
