"""Continuous comparisons with a soft box target (the reference study's definitions)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .core import ArrayLike, _array, _ratio, _same_shape, checked_maps

KL_EPS = 1e-8  # added to both normalised distributions before KL (then renormalised)


def soft_target(boxes_xyxy: ArrayLike, height: int, width: int) -> np.ndarray:
    """Soft ``(H, W)`` float32 target of pixel boxes ``(n, 4)`` ``x0, y0, x1, y1``: the pixelwise
    max of per-box Gaussians centred on the box (pixel centres at ``i + 0.5``), ``sigma = max(box
    side / 4, 1)`` px per axis, each and the max peak-normalised; no boxes give all zeros."""
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
    x = checked_maps(maps, "maps", 3).astype(np.float64)
    t = checked_maps(targets, "targets", 3).astype(np.float64)
    _same_shape(x, t, "maps and targets")
    return x, t


def _distributions(values: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Each map divided by its sum, then ``eps`` added and renormalised (so the smoothing
    does not depend on the map's scale); NaN rows for maps with no mass."""
    flat = values.reshape(len(values), -1)
    total = flat.sum(axis=1, keepdims=True)
    return (_ratio(flat, np.where(total > 0, total, 0)) + eps) / (1 + eps * flat.shape[1])


def mse(maps: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """Mean squared error of each map, min-max normalised to [0, 1], and its target: ``(N,)``
    (NaN for a constant map, all-zero included)."""
    x, t = _continuous_pair(maps, targets)
    flat = x.reshape(len(x), -1)
    low = flat.min(axis=1, keepdims=True)
    scaled = _ratio(flat - low, flat.max(axis=1, keepdims=True) - low)
    return ((scaled - t.reshape(len(t), -1)) ** 2).mean(axis=1)


def kl(maps: ArrayLike, targets: ArrayLike, eps: float = KL_EPS) -> np.ndarray:
    """KL(target || map) in nats: ``(N,)``. Each is normalised to sum 1, then ``eps`` is added
    to every pixel and it is renormalised, so a map's scale does not matter (the reference study
    adds eps first, scoring a map with a small peak like a uniform one); NaN for no mass."""
    x, t = _continuous_pair(maps, targets)
    p, q = _distributions(t, eps), _distributions(x, eps)
    return (p * (np.log(p) - np.log(q))).sum(axis=1)


def emd(maps: ArrayLike, targets: ArrayLike, grid: int = 8) -> np.ndarray:
    """Exact 2-D Wasserstein-1 distance between each map and its target: ``(N,)``, both
    area-averaged onto a ``grid x grid`` grid of the unit square and normalised to sum 1;
    Euclidean cost, solved by POT's ``ot.emd2``. NaN for an all-zero map or target."""
    import ot  # POT takes ~1.5 s to import; only EMD needs it

    x, t = _continuous_pair(maps, targets)
    a, b = (_distributions(F.adaptive_avg_pool2d(torch.from_numpy(v)[:, None], grid)[:, 0].numpy())
            for v in (x, t))
    centres = (np.arange(grid) + 0.5) / grid
    points = np.stack(np.meshgrid(centres, centres, indexing="ij"), axis=-1).reshape(-1, 2)
    cost = ot.dist(points, points, metric="euclidean")
    out = np.full(len(x), np.nan)
    for i in np.flatnonzero(np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)):
        out[i] = ot.emd2(a[i], b[i], cost)
    return out
