"""How fast is ``metrics.sweep``, and how long would the full study's scoring take?

Times the sweep on seeded random maps and boxes for a share of the study (139 images, 631
boxes, 7 models x 13 layers x 13 maps, 8 thresholds at 224²), projects the study, and checks
it against a straightforward per-map loop; then each 1:1 function against its per-map loop
in wall and CPU time (``--only-1to1`` runs only this part). See docs/benchmarks.md.

    PYTHONPATH=lib python benchmarks/bench_metrics.py [--quick] [--only-1to1]
"""

from __future__ import annotations

import os
import time

import harness
import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata

from sightline import metrics
from sightline.geometry import rasterise

IMAGES, BOXES, MAX_BOXES = 139, 631, 10
MODELS_14, MODELS_16, LAYERS, MAPS_PER_LAYER = 6, 1, 13, 13
PERCENTILES = (50, 60, 70, 75, 80, 85, 90, 95)
RESOLUTION = 224


def study_targets(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Union + single-box masks of 139 images holding 631 random boxes, 1-10 each."""
    counts = np.ones(IMAGES, int)
    for _ in range(BOXES - IMAGES):
        counts[rng.choice(np.flatnonzero(counts < MAX_BOXES))] += 1
    masks, owner = [], []
    for image, count in enumerate(counts):
        size = rng.uniform(0.05, 0.45, (count, 2))
        corner = rng.uniform(0, 1 - size)
        boxes = rasterise(np.c_[corner, corner + size], RESOLUTION)
        masks += [boxes.any(axis=0), *boxes]
        owner += [image] * (count + 1)
    return np.array(masks), np.array(owner)


def loop_sweep_iou(grid_maps: np.ndarray, targets: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """The straightforward way: upsample each map, then argsort it per target and threshold."""
    n = RESOLUTION * RESOLUTION
    out = np.zeros((len(targets), grid_maps.shape[1], len(PERCENTILES)))
    for t, mask in enumerate(targets.reshape(len(targets), n)):
        for m, grid in enumerate(grid_maps[owner[t]]):
            tensor = torch.from_numpy(grid)[None, None]
            up = F.interpolate(tensor, size=(RESOLUTION,) * 2, mode="bilinear").numpy().ravel()
            for j, p in enumerate(PERCENTILES):
                top = np.zeros(n, bool)
                top[np.argsort(-up, kind="stable")[: round(n * (100 - p) / 100)]] = True
                out[t, m, j] = (top & mask).sum() / (top | mask).sum()
    return out


def time_sweep(grid: int, images: int, targets, owner, rng) -> tuple[float, float, int, int]:
    """Wall and CPU seconds of one model's 13 layers on the first ``images`` images."""
    keep = owner < images
    maps = (rng.random((images, LAYERS * MAPS_PER_LAYER, grid, grid)) ** 3).astype(np.float32)
    wall, cpu = time.perf_counter(), time.process_time()
    metrics.sweep(maps, targets[keep], owner[keep], PERCENTILES, RESOLUTION)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, maps.shape[0] * maps.shape[1], int(keep.sum()) * maps.shape[1]


# The per-map loops: what a NumPy user writes for one map and its mask, the fastest
# straightforward way (each asserted equal to the batched function's scores): for the set
# scores one argsort per map, read at every threshold through the cumulative count of mask
# pixels in that order (the maps here have no ties, so any sort order is the top-k rule);
# for AUC scipy's tie-averaged ranks; coverage and NSS from float64 sums of the map, never
# forming the z-scored map; the pointing game one argmax.


def _inside_top_k(x: np.ndarray, m: np.ndarray) -> list[tuple[int, int, int]]:
    """(|top-k ∩ mask|, k, |mask|) at each threshold from one np.argsort of the map."""
    n, area = x.size, int(m.sum())
    inside = np.cumsum(m[np.argsort(-x)])
    ks = [round(n * (100 - p) / 100) for p in PERCENTILES]
    return [(int(inside[k - 1]), k, area) for k in ks]


def loop_iou(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    return np.array([both / (k + area - both) for both, k, area in _inside_top_k(x, m)])


def loop_iou_topk(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The loop the speed goal was first stated against: one ``torch.topk`` per map and
    threshold, IoU only."""
    values, mask, area = torch.from_numpy(x), torch.from_numpy(m), int(m.sum())
    scores = []
    for p in PERCENTILES:
        k = round(x.size * (100 - p) / 100)
        both = int(mask[torch.topk(values, k).indices].sum())
        scores.append(both / (k + area - both))
    return np.array(scores)


def loop_shared_interest(x: np.ndarray, m: np.ndarray) -> dict[str, np.ndarray]:
    sets = _inside_top_k(x, m)
    return {"iou": np.array([b / (k + a - b) for b, k, a in sets]),
            "gtc": np.array([b / a for b, k, a in sets]),
            "sc": np.array([b / k for b, k, a in sets])}


def loop_coverage(x: np.ndarray, m: np.ndarray) -> float:
    mass = x.astype(np.float64)
    return mass[m].sum() / mass.sum()


def loop_pointing_game(x: np.ndarray, m: np.ndarray) -> float:
    return float(m[x.argmax()])


def loop_auc(x: np.ndarray, m: np.ndarray) -> float:
    """Mann-Whitney U from scipy's tie-averaged ranks."""
    ranks, area = rankdata(x), int(m.sum())
    return (ranks[m].sum() - area * (area + 1) / 2) / (area * (m.size - area))


def loop_nss(x: np.ndarray, m: np.ndarray) -> float:
    values = x.astype(np.float64)
    return (values[m].mean() - values.mean()) / values.std()


# Each 1:1 function, as a user calls it on the batch, and its per-map loop.
ONE_TO_ONE = {
    "iou": (lambda maps, masks: metrics.iou(maps, masks, PERCENTILES), loop_iou),
    "iou/topk loop": (lambda maps, masks: metrics.iou(maps, masks, PERCENTILES), loop_iou_topk),
    "shared_interest": (lambda maps, masks: metrics.shared_interest(maps, masks, PERCENTILES),
                        loop_shared_interest),
    "coverage": (metrics.coverage, loop_coverage),
    "pointing_game": (metrics.pointing_game, loop_pointing_game),
    "auc": (metrics.auc, loop_auc),
    "nss": (metrics.nss, loop_nss),
}


def _stack(rows: list) -> object:
    if isinstance(rows[0], dict):
        return {name: np.stack([r[name] for r in rows]) for name in rows[0]}
    return np.stack(rows)


def time_one_to_one(count: int, repeat: int, rng: np.random.Generator) -> None:
    """maps/s of each 1:1 function against its per-map loop, on tie-free maps (the loop's
    sort order among equal values is unspecified), each map with one random box mask; and
    one pass over the maps, the most any function that reads every pixel can do per core."""
    n = RESOLUTION * RESOLUTION
    maps = np.stack([rng.permutation(n) for _ in range(count)]).astype(np.float32) / n
    maps = (maps**3).reshape(count, RESOLUTION, RESOLUTION)
    size = rng.uniform(0.05, 0.6, (count, 2))
    corner = rng.uniform(0, 1 - size)
    masks = np.stack([rasterise(box, RESOLUTION)[0] for box in np.c_[corner, corner + size]])
    rows, flat_masks = maps.reshape(count, n), masks.reshape(count, n)
    _, floor_cpu = harness.best(lambda: rows.argmax(axis=1), repeat, median=True)
    floor = count / floor_cpu
    print(f"\n1:1 functions on ({count}, {RESOLUTION}, {RESOLUTION}) maps and masks, "
          f"{len(PERCENTILES)} thresholds; each against a per-map loop of the same score, "
          f"median of {repeat} runs (the goal is >= 10x). One pass over the maps (argmax "
          f"of each) reads {floor:,.0f} maps per CPU second: no function that reads every "
          f"pixel on one core is faster, so 'ceiling' = that / the loop's maps per CPU "
          f"second is the most batching can gain on one core:")
    for name, (batched, per_map) in ONE_TO_ONE.items():
        sorting = name in ("iou", "iou/topk loop", "shared_interest", "auc")
        loop_count = max(2, count // 4) if sorting else count

        def loop(per_map=per_map, loop_count=loop_count):
            return _stack([per_map(rows[i], flat_masks[i]) for i in range(loop_count)])

        fast, slow = batched(maps, masks), loop()  # the warm-up runs, their results compared
        wall, cpu = harness.best(lambda batched=batched: batched(maps, masks), repeat, warm_up=False,
                                 median=True)
        loop_wall, loop_cpu = harness.best(loop, repeat, warm_up=False, median=True)
        for key, values in (slow.items() if isinstance(slow, dict) else [(name, slow)]):
            got = fast[key] if isinstance(fast, dict) else fast
            np.testing.assert_allclose(got[:loop_count], values, rtol=1e-9, err_msg=key)
        rate, loop_rate = count / wall, loop_count / loop_wall
        loop_cpu_rate = loop_count / loop_cpu
        print(f"  {name:16s} {rate:9,.0f} maps/s   loop {loop_rate:8,.0f} maps/s   "
              f"{rate / loop_rate:6.1f}x wall   {(count / cpu) / loop_cpu_rate:6.1f}x CPU   "
              f"ceiling {floor / loop_cpu_rate:6.1f}x   (equal scores)")


def main() -> None:
    parser = harness.parser(__doc__, "fewer images (about 10 s)")
    parser.add_argument("--only-1to1", action="store_true", help="time only the 1:1 functions")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs per 1:1 function and loop (the median is shown)")
    args = harness.parse(parser)
    rng = np.random.default_rng(0)
    share = (12, 6) if args.quick else (IMAGES, 40)  # images timed on the 14x14 and 16x16 grids
    targets, owner = study_targets(rng)
    print(f"sightline metrics benchmark: {os.cpu_count()} CPUs, load average before "
          f"{os.getloadavg()[0]:.2f} (other work on the machine slows every number here; the "
          f"CPU-time ratios are the steadier reading on a loaded machine)")
    print(f"study: {IMAGES} images, {len(targets)} targets ({BOXES} boxes + unions), "
          f"{MODELS_14 + MODELS_16} models x {LAYERS} layers x {MAPS_PER_LAYER} maps, "
          f"{len(PERCENTILES)} thresholds, R = {RESOLUTION}\n")

    if args.only_1to1:
        time_one_to_one(128 if args.quick else 600, args.repeat, rng)
        return
    projected = 0.0
    for grid, images, models in ((14, share[0], MODELS_14), (16, share[1], MODELS_16)):
        wall, cpu, maps, pairs = time_sweep(grid, images, targets, owner, rng)
        per_map = wall / maps
        study_maps = IMAGES * LAYERS * MAPS_PER_LAYER * models
        projected += per_map * study_maps
        print(f"sweep {grid}x{grid}: {maps} maps / {pairs} map-target pairs on {images} images "
              f"in {wall:.2f} s wall ({cpu:.2f} s CPU): {maps / wall:,.0f} maps/s, "
              f"{pairs / wall:,.0f} pairs/s -> its {study_maps} study maps: "
              f"{per_map * study_maps:.0f} s")
    study_pairs = LAYERS * MAPS_PER_LAYER * (MODELS_14 + MODELS_16) * len(targets)
    print(f"\nprojected full study: {projected:.0f} s for "
          f"{IMAGES * LAYERS * MAPS_PER_LAYER * (MODELS_14 + MODELS_16):,} maps / "
          f"{study_pairs:,} map-target pairs x {len(PERCENTILES)} thresholds "
          f"(goal: under 120 s)")

    few = 3 if args.quick else 8
    maps = (rng.random((1, few, 14, 14)) ** 3).astype(np.float32)
    keep = owner == 0
    wall = time.perf_counter()
    slow = loop_sweep_iou(maps, targets[keep], np.zeros(keep.sum(), int))
    loop_wall = time.perf_counter() - wall
    wall = time.perf_counter()
    fast = metrics.sweep(maps, targets[keep], np.zeros(keep.sum(), int), PERCENTILES, RESOLUTION)
    fast_wall = time.perf_counter() - wall
    assert np.array_equal(slow, fast["iou"]), "the loop and the sweep disagree"
    loop_rate = few / loop_wall
    print(f"\nloop (np.argsort per map, target and threshold), {few} maps x {keep.sum()} targets "
          f"of one image: {loop_rate:.2f} maps/s ({fast_wall:.3f} s for the sweep on the "
          f"same maps; equal IoU)")
    rate = IMAGES * LAYERS * MAPS_PER_LAYER * (MODELS_14 + MODELS_16) / projected
    print(f"speed-up of the sweep (study-wide maps/s {rate:,.0f}) over the loop: "
          f"{rate / loop_rate:,.0f}x")
    time_one_to_one(128 if args.quick else 600, args.repeat, rng)


if __name__ == "__main__":
    main()
