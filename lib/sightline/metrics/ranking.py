"""The engine for many maps per image (heads, layers): each upsampled map ranked once,
exactly, for all percentiles, all targets of its image and AUC."""

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

from .core import ArrayLike, _array, _masks, _ratio, checked_maps, relative_iou, top_k_size
from .per_map import _auc, _max_iou, _nss, _set_scores

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


def upsample(maps: ArrayLike, resolution: int) -> np.ndarray:
    """``(..., h, w)`` grid maps -> ``(..., R, R)`` float32, torch's bilinear, ``align_corners=False``,
    each map on its own (values independent of the batch); same-size maps pass as is."""
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


def sweep(maps: ArrayLike, targets: ArrayLike, target_image: ArrayLike, percentiles: Sequence[float],
          resolution: int, *, chunk_mb: float = 8.0, workers: int | None = None,
          progress: bool = False) -> dict[str, np.ndarray]:
    """Score ``(N, K, h, w)`` grid maps, upsampled to ``R x R``, against each image's target
    masks (``target_image[t]``: the image of target t), each map ranked once. Returns ``iou``,
    ``iou_rel``, ``gtc``, ``sc`` ``(T, K, P)``; ``max_iou`` ``(T, P)``; ``coverage``,
    ``pointing_game``, ``auc``, ``nss`` ``(T, K)``; ``area`` ``(T,)`` pixels per mask.

    Set scores, pointing and AUC equal the 1:1 functions exactly; mass, NSS's mean and spread
    come from the grid map in float64 (upsampling is linear), equal up to float32 rounding
    (~1e-7; a constant grid map has NSS NaN). ``workers`` threads (default: cores, at most 2)
    each hold ``chunk_mb`` of upsampled maps; torch runs single-threaded meanwhile.
    """
    grid = checked_maps(maps, "maps", 4)
    masks = _masks(targets, "targets")
    owner = _array(target_image, "target_image")
    n_images, n_kinds, h, w = grid.shape
    if masks.shape[1:] != (resolution, resolution):
        raise ValueError(f"targets must be (T, {resolution}, {resolution}) at resolution={resolution}, "
                         f"got shape {masks.shape}")
    if owner.shape != (len(masks),) or not np.issubdtype(owner.dtype, np.integer):
        raise ValueError(f"target_image must be ({len(masks)},) integers, one per target; got "
                         f"shape {owner.shape} dtype {owner.dtype}")
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
            for owned, counts, mass, top, ranks, spread in tqdm(results, total=len(images), desc="sweep",
                                                                unit="img", disable=not progress):
                inside[owned] = counts
                mass_in[owned], mass_all[owned] = mass[:-1], mass[-1]
                hit[owned] = top
                rank_sum[owned] = ranks
                deviation[owned] = spread
    finally:
        torch.set_num_threads(threads)

    blank = mass_all == 0
    scores = _set_scores(inside[:, :, back], ks_all, area[:, None, None])
    result = {name: np.where(blank[:, :, None], np.nan, v) for name, v in scores.items()}
    result["max_iou"] = _max_iou(area[:, None], ks_all)
    result["iou_rel"] = relative_iou(result["iou"], result["max_iou"][:, None, :])
    result["coverage"] = _ratio(mass_in, np.where(area[:, None] > 0, mass_all, 0))
    result["pointing_game"] = np.where(blank | (area[:, None] == 0), np.nan, hit)
    a = area[:, None].astype(np.float64)
    u = rank_sum / 2 - a * (a + 1) / 2  # rank sums are of doubled ranks
    result["auc"] = np.where(blank, np.nan, _auc(u, a, n))
    result["nss"] = _nss(mass_in, a, mass_all / n, np.sqrt(deviation / n), n)
    result["area"] = area
    return result
