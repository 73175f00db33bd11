"""Scores of attention maps against expert masks: top-k overlap, mass, pointing, soft targets.

Conventions shared by every function here:

- A map is non-negative, larger = more attention. Maps are ranked as float32 (the dtype of
  upsampled maps), masks are boolean; both are ``(N, H, W)`` and paired 1:1 unless noted.
- **Top-k** at percentile ``p`` keeps exactly ``k = round(n * (100 - p) / 100)`` of the
  ``n = H * W`` pixels, rounding halves to even (``np.round``, the rule of Python's
  ``round``): the first ``k`` pixels of a stable sort by descending value, so among equal
  values the lower row-major index is kept. ``p`` lies in ``[0, 100)``.
- **NaN**, never inf and never a warning, where a score is undefined: every score of an
  empty mask (nothing to find) or of an all-zero map (nothing attended), and SC of an empty
  top-k set (k = 0).

``sweep`` is the engine for many maps per image (heads, layers): each upsampled map is
ranked once for all percentiles and all targets of its image. The 1:1 functions (one mask
per map) sort each map once for all percentiles, with the mask folded into the sort key
(``_inside_top_k``); coverage and the pointing game need no ranking at all. Both paths
give identical set scores (tested against each other and a per-threshold argsort).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

ArrayLike = np.ndarray | torch.Tensor
SET_METRICS = ("iou", "gtc", "sc")
KL_EPS = 1e-8  # added to both normalised distributions before KL (then renormalised)

_CODE_BITS = 16  # rank-key resolution: values are bucketed into 2**16 codes per map
_OCTAVES = 24  # values below max * 2**-24 share the lowest code (and are then ranked exactly)


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


def _maps(values: ArrayLike, name: str, ndim: int) -> np.ndarray:
    """Validated float32 maps of the given rank: finite and non-negative."""
    maps = _array(values, name)
    if maps.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {maps.shape}")
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    bad = maps.size - np.isfinite(maps).sum()
    if bad:
        raise ValueError(f"{name} must be finite: found {bad} NaN or inf values")
    if maps.size and maps.min() < 0:
        raise ValueError(
            f"{name} must be non-negative (larger = more attention); minimum is {maps.min()}"
        )
    return maps


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


def _codes(x: np.ndarray) -> np.ndarray:
    """Per-row uint16 rank keys, non-decreasing in the values (float32 bits order like values)."""
    bits = x.view(np.int32)
    hi = bits.max(axis=1, keepdims=True).astype(np.int64)
    lo = np.maximum(bits.min(axis=1, keepdims=True), hi - (_OCTAVES << 23))
    lo = np.maximum(lo, 0).astype(np.int32)  # -0.0 has a negative bit pattern; ranks as +0.0
    shift = np.maximum(np.frexp((hi - lo).astype(np.float64))[1] - _CODE_BITS, 0)
    codes = np.maximum(bits, lo)
    codes -= lo
    codes >>= shift.astype(np.int32)
    return codes.astype(np.uint16)


def _top_k_counts(x: np.ndarray, ks: np.ndarray, sig: np.ndarray, n_sig: int) -> np.ndarray:
    """Rank maps once: pixels of each signature in each top-k set, ``(C, n_sig, len(ks))``.

    ``x`` is ``(C, n)`` float32, ``ks`` ascending unique sizes, ``sig`` ``(n,)`` or ``(C, n)``
    ints in ``[0, n_sig)`` saying which targets a pixel belongs to.

    Each map gets 16-bit keys that never order two values wrongly; a radix sort of the keys
    gives the key of the k-th largest pixel for every k at once, and one bincount per map
    tallies pixels by signature and by how many top-k sets they miss. Only pixels sharing
    the boundary key of a top-k set are then ordered exactly (by value, then index).
    """
    c, n = x.shape
    u = len(ks)
    if u > 255:
        raise ValueError(
            f"at most 255 distinct top-k sizes per call, got {u}: split the percentiles"
        )
    codes = _codes(x)
    ordered = np.sort(codes, axis=1, kind="stable")
    live = ks > 0
    edge = np.full((c, u), 1 << _CODE_BITS, np.int64)  # key of the k-th largest; none if k=0
    edge[:, live] = ordered[:, n - ks[live]]

    missed = np.full((c, n), u - live.sum(), np.uint8)  # a k = 0 set misses every pixel
    for j in np.flatnonzero(live):
        missed += (codes < edge[:, j, None].astype(np.uint16)).view(np.uint8)
    width = u + 1
    keys = missed.astype(np.uint16 if n_sig * width <= np.iinfo(np.uint16).max else np.intp)
    keys += (sig * width).astype(keys.dtype)
    counts = np.empty((c, n_sig * width), np.int64)
    above = np.empty((c, u), np.int64)
    tied = np.empty((c, u), np.int64)
    for r in range(c):
        counts[r] = np.bincount(keys[r], minlength=n_sig * width)
        first = np.searchsorted(ordered[r], edge[r], "left")
        after = np.searchsorted(ordered[r], edge[r], "right")
        above[r] = n - after
        tied[r] = after - first
    inside = np.cumsum(counts.reshape(c, n_sig, width), axis=2)[:, :, :u]

    # Pixels on a boundary key were all counted in; keep only the `need` best of them.
    need = ks - above
    for j in np.flatnonzero((tied > need).any(axis=0)):
        flat = np.flatnonzero(codes == edge[:, j, None].astype(np.uint16))
        rows, pix = np.divmod(flat, n)
        order = np.lexsort((-x[rows, pix], rows))  # stable: equal values keep index order
        rows, pix = rows[order], pix[order]
        rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
        drop = rank >= need[rows, j]
        rows, pix = rows[drop], pix[drop]
        dropped_sig = sig[pix] if sig.ndim == 1 else sig[rows, pix]
        np.subtract.at(inside[:, :, j], (rows, dropped_sig), 1)
    return inside


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


def _pairs(maps: ArrayLike, masks: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(N, n)`` float32 maps and bool masks of one ``(N, H, W)`` shape."""
    x = _maps(maps, "maps", 3)
    m = _masks(masks, "masks")
    _same_shape(x, m, "maps and masks")
    n = x.shape[1] * x.shape[2]
    if n == 0:
        raise ValueError(f"maps must have at least one pixel, got shape {x.shape}")
    return x.reshape(len(x), n), m.reshape(len(m), n)


def _bisect(lo: np.ndarray, hi: np.ndarray, below: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Smallest ``i`` in ``[lo, hi]`` where ``below(i)`` is False, elementwise (``below``
    monotone: True then False; it is only asked at ``lo <= i < hi``)."""
    lo, hi = lo.copy(), hi.copy()
    while (open_ := lo < hi).any():
        mid = np.where(open_, (lo + hi) // 2, lo)
        go_up = open_ & below(np.minimum(mid, hi - 1))
        lo = np.where(go_up, mid + 1, lo)
        hi = np.where(open_ & ~go_up, mid, hi)
    return lo


def _inside_top_k(x: np.ndarray, m: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """|top-k ∩ mask| of each ``(n,)`` float32 map row and its mask row, per k: ``(C, len(ks))``.

    One sort per map: keys are the value's bits (order-preserving for values >= 0) with
    the mask in the top bit, so a sorted row holds the pixels outside the mask, then those
    inside, each ascending. The k-th largest value ``v`` is found in the two runs by a
    vectorised binary search, pixels above ``v`` are counted from the runs, and pixels
    equal to ``v`` are taken in row-major order (the tie rule) where the mask splits them.
    """
    c, n = x.shape
    bits = x.view(np.uint32) & np.uint32(0x7FFFFFFF)  # -0.0 ranks as +0.0
    keys = bits | (m.view(np.uint8).astype(np.uint32) << np.uint32(31))
    keys.sort(axis=1)
    flat = keys.reshape(-1)
    area = m.sum(axis=1)[:, None]
    base = (np.arange(c) * n)[:, None]
    outer = n - area  # pixels outside the mask: keys[:, :outer]

    def value(index: np.ndarray) -> np.ndarray:  # key bits without the mask bit, -1 off the row
        inside = (index >= 0) & (index < n)
        got = flat[base + np.clip(index, 0, n - 1)] & np.uint32(0x7FFFFFFF)
        return np.where(inside, got.astype(np.int64), -1)

    k = np.broadcast_to(ks, (c, len(ks))).astype(np.int64)
    live = k > 0
    q = n - np.maximum(k, 1)  # ascending position of the k-th largest pixel
    # i pixels from outside the mask among the q + 1 smallest (the rest from inside)
    lo = np.maximum(0, q + 1 - area)
    hi = np.minimum(q + 1, outer)
    i = _bisect(lo, hi, lambda i: value(i) < value(outer + q - i))
    edge = np.maximum(value(i - 1), np.where(q + 1 - i > 0, value(outer + q - i), -1))

    def count_below(start, stop, v, strict):  # keys in [start, stop) of each row below v
        return _bisect(start, stop, lambda j: (value(j) < v) if strict else (value(j) <= v)) - start

    zero, inner_start = np.zeros_like(lo), np.broadcast_to(outer, lo.shape)
    end = np.full_like(lo, n)
    below_out = count_below(zero, inner_start, edge, True)
    upto_out = count_below(zero, inner_start, edge, False)
    below_in = count_below(inner_start, end, edge, True)
    upto_in = count_below(inner_start, end, edge, False)
    above_in = area - upto_in
    above = above_in + outer - upto_out
    tied_in = upto_in - below_in
    tied = tied_in + upto_out - below_out
    need = k - above  # tied pixels the top-k set takes, in row-major order
    split = live & (tied_in > 0) & (tied_in < tied) & (need < tied)
    inside = above_in + np.where(tied_in == tied, need, np.where(need == tied, tied_in, 0))
    for r in np.unique(np.flatnonzero(split.any(axis=1))):
        for v in np.unique(edge[r, split[r]]):
            cols = np.flatnonzero(split[r] & (edge[r] == v))
            ties = np.cumsum(m[r, np.flatnonzero(bits[r] == v)])
            inside[r, cols] += ties[need[r, cols] - 1]
    return np.where(live, inside, 0)


def _set_metrics(maps: ArrayLike, masks: ArrayLike, percentiles) -> dict[str, np.ndarray]:
    """IoU, GTC and SC of (N, H, W) maps against (N, H, W) masks at each percentile."""
    x, m = _pairs(maps, masks)
    ks_all = top_k_size(x.shape[1], percentiles)
    ks, back = np.unique(ks_all, return_inverse=True)
    inside = _inside_top_k(x, m, ks)[:, back]
    blank = (x.max(axis=1, initial=0) == 0)[:, None]
    scores = _set_scores(inside, ks_all, m.sum(axis=1)[:, None])
    return {name: _blank_to_nan(v, blank) for name, v in scores.items()}


def iou(maps: ArrayLike, masks: ArrayLike, percentiles: Sequence[float]) -> np.ndarray:
    """IoU of each map's top-k set with its mask at each percentile: ``(N, P)``."""
    return _set_metrics(maps, masks, percentiles)["iou"]


def shared_interest(
    maps: ArrayLike, masks: ArrayLike, percentiles: Sequence[float]
) -> dict[str, np.ndarray]:
    """Shared Interest IoU, GTC = |S∩G|/|G| and SC = |S∩G|/|S| of the top-k set S: each (N, P)."""
    return _set_metrics(maps, masks, percentiles)


def coverage(maps: ArrayLike, masks: ArrayLike) -> np.ndarray:
    """Attention mass inside the mask / total mass: ``(N,)`` (Shared Interest SC, continuous)."""
    x, m = _pairs(maps, masks)
    mass = x.astype(np.float64)
    area = m.sum(axis=1)
    return _ratio(np.einsum("cn,cn->c", mass, m), np.where(area > 0, mass.sum(axis=1), 0))


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
    x, m = _pairs(maps, masks)
    hit = m[np.arange(len(m)), x.argmax(axis=1)] if len(x) else np.zeros(0, bool)
    return np.where((x.max(axis=1, initial=0) == 0) | ~m.any(axis=1), np.nan, hit)


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
    Returns ``iou``, ``gtc``, ``sc`` ``(T, K, P)``; ``max_iou`` ``(T, P)`` (it depends on the
    mask only); ``coverage``, ``energy_pointing_game`` (equal) and ``pointing_game``
    ``(T, K)``; and ``area`` ``(T,)`` pixels per mask.

    Set scores and pointing equal the 1:1 functions on the repeated pairs exactly; mass
    comes from the grid map in float64 (upsampling is linear), so coverage equals them up to
    the float32 rounding of the upsampled map (~1e-7). Each of ``workers`` threads (default:
    one per core, at most 2) holds ``chunk_mb`` of upsampled float32 maps at a time (small
    chunks stay in cache); torch runs single-threaded meanwhile, then its setting is restored.
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
    block = max(1, int(chunk_mb * 2**20 // (4 * n)))
    workers = workers or min(2, os.cpu_count() or 1)

    def score_image(image: int) -> tuple[np.ndarray, ...]:
        owned = np.flatnonzero(owner == image)
        sig, member = _signatures(flat[owned])
        weights = _mass_weights(masks[owned], (h, w)).reshape(len(owned) + 1, -1).T
        parts = []
        for start in range(0, n_kinds, block):
            x = upsample(grid[image, start : start + block], resolution).reshape(-1, n)
            parts.append((_top_k_counts(x, ks, sig, len(member)), sig[x.argmax(axis=1)]))
        counts, top = (np.concatenate(p) for p in zip(*parts, strict=True))
        mass = grid[image].reshape(n_kinds, -1).astype(np.float64) @ weights
        return owned, np.einsum("ksu,st->tku", counts, member), mass.T, member[top].T

    images = np.unique(owner)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            results = pool.map(score_image, images)
            for owned, counts, mass, top in tqdm(
                results, total=len(images), desc="sweep", unit="img", disable=not progress
            ):
                inside[owned] = counts
                mass_in[owned], mass_all[owned] = mass[:-1], mass[-1]
                hit[owned] = top
    finally:
        torch.set_num_threads(threads)

    blank = mass_all == 0
    scores = _set_scores(inside[:, :, back], ks_all, area[:, None, None])
    result = {name: _blank_to_nan(v, blank[:, :, None]) for name, v in scores.items()}
    result["max_iou"] = _max_iou(area[:, None], ks_all)
    result["coverage"] = _ratio(mass_in, np.where(area[:, None] > 0, mass_all, 0))
    result["energy_pointing_game"] = result["coverage"]
    result["pointing_game"] = np.where(blank | (area[:, None] == 0), np.nan, hit)
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


def kl(targets: ArrayLike, maps: ArrayLike, eps: float = KL_EPS) -> np.ndarray:
    """KL(target || map) in nats: ``(N,)``. Each (``>= 0`` by validation) is normalised to
    sum 1 first, then ``eps`` is added to every pixel and it is renormalised, so a map and
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
