"""Shared Interest as its code (mitvis/shared-interest, util.py) computes it: scores of
binarised saliency and the binarisation rules."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .core import ArrayLike, _array, _masks, _ratio, _same_shape

SET_METRICS = ("iou", "gtc", "sc")


def shared_interest_scores(
    saliency: ArrayLike, ground_truth: ArrayLike, scores: Sequence[str] = SET_METRICS
) -> dict[str, np.ndarray]:
    """Shared Interest scores of binarised ``(B, H, W)`` saliency (taken as ``abs``), as mitvis
    does it; a continuous map is allowed only for ``"sc"`` (its mass share)."""
    unknown = sorted(set(scores) - set(SET_METRICS))
    if unknown:
        raise ValueError(f"unknown scores {unknown}; choose from {list(SET_METRICS)}")
    gt = _masks(ground_truth, "ground_truth").astype(np.float64)
    sal = np.abs(_array(saliency, "saliency", np.float64, 3))
    _same_shape(sal, gt, "saliency and ground_truth")
    if set(scores) - {"sc"} and not np.isin(sal, (0, 1)).all():
        raise ValueError("saliency must be binary for 'iou' and 'gtc'; only 'sc' takes a map")
    inside = (gt * sal).sum(axis=(1, 2))
    totals = {"iou": np.logical_or(gt, sal).sum(axis=(1, 2)), "gtc": gt.sum(axis=(1, 2)),
              "sc": sal.sum(axis=(1, 2))}
    return {name: _ratio(inside, totals[name]) for name in scores}


def normalize_unit(maps: ArrayLike) -> np.ndarray:
    """Each ``(H, W)`` map min-max scaled to [0, 1] (float64); a constant map is all NaN."""
    x = _array(maps, "maps", np.float64, 3)
    low = x.min(axis=(1, 2), keepdims=True) if x.size else x
    high = x.max(axis=(1, 2), keepdims=True) if x.size else x
    return _ratio(x - low, np.broadcast_to(high - low, x.shape))


def binarize_std(maps: ArrayLike, num_std: float = 1.0) -> np.ndarray:
    """Shared Interest's ``binarize_std``: min-max each map, keep values >= mean + num_std
    std of that map (ties kept): ``(N, H, W)`` bool. A constant map keeps nothing."""
    x = normalize_unit(maps)
    with np.errstate(invalid="ignore"):
        return x >= np.mean(x, axis=(1, 2), keepdims=True) + num_std * np.std(x, axis=(1, 2),
                                                                                keepdims=True)


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
