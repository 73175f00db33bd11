"""What every score shares: input checks, the top-k size rule and NaN-safe ratios (the
conventions are in the package docstring)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def _array(values: ArrayLike, name: str, dtype=None, ndim: int | None = None) -> np.ndarray:
    """NumPy view of a NumPy array or torch tensor (any device), of ``ndim`` dimensions if given."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a numeric array or tensor: {error}") from None
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    return array


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


def checked_maps(values: ArrayLike, name: str, ndim: int) -> np.ndarray:
    """Validated float32 maps of the given rank: finite and non-negative, no -0.0."""
    maps = np.ascontiguousarray(_array(values, name, ndim=ndim), dtype=np.float32)
    if not maps.size:
        return maps
    return _checked(maps, name, maps.view(np.uint32).max())


def _masks(values: ArrayLike, name: str, ndim: int = 3) -> np.ndarray:
    """Validated boolean masks; a numeric mask must hold only 0 and 1."""
    masks = _array(values, name, ndim=ndim)
    if masks.dtype != bool:
        if not np.isin(masks, (0, 1)).all():
            raise ValueError(f"{name} must be binary (0/1 or bool)")
        masks = masks.astype(bool)
    return masks


def _same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {a.shape} and {b.shape}")


def top_k_size(n: int, percentiles: Sequence[float] | np.ndarray) -> np.ndarray:
    """Pixels kept at each percentile (non-empty, 1-D, in [0, 100)): ``round(n * (100 - p) / 100)``,
    halves to even."""
    ps = np.atleast_1d(_array(percentiles, "percentiles", np.float64))
    if ps.ndim != 1 or ps.size == 0:
        raise ValueError(f"percentiles must be a non-empty 1-D sequence, got shape {ps.shape}")
    if not ((ps >= 0) & (ps < 100)).all():
        raise ValueError(f"percentiles must lie in [0, 100), got {ps.tolist()}")
    return np.round(n * (100.0 - ps) / 100.0).astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float64 with NaN where den is 0."""
    num, den = np.broadcast_arrays(np.asarray(num, np.float64), np.asarray(den, np.float64))
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den != 0)


def relative_iou(iou_values: ArrayLike, max_iou_values: ArrayLike) -> np.ndarray:
    """IoU as a fraction of the best reachable (``max_iou``), NaN where that is 0 or NaN."""
    return _ratio(_array(iou_values, "iou_values"), _array(max_iou_values, "max_iou_values"))
