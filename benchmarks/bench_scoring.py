"""End-to-end scoring cost at the real study's size: cached maps -> the tidy table.

Times ``scoring.score_maps`` for one CLS model's 12 layers x 13 head maps and its 12 rollout
maps on 139 synthetic images, and projects the 7 models.
Run: ``PYTHONPATH=lib python benchmarks/bench_scoring.py [--quick]``.
"""

from __future__ import annotations

import tempfile
import time

import harness
import numpy as np

from sightline import data, models, scoring, synthetic

PERCENTILES = [50, 60, 70, 75, 80, 85, 90, 95]


def main() -> None:
    layers = 4 if harness.parse(harness.parser(__doc__, "4 layers instead of 12")).quick else 12
    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic.make_synthetic(tmp, n_annotated=139, n_pool=0, seed=1)
        samples = data.load_wikichurches(root).samples
        targets = scoring.build_targets(samples, models.REGISTRY["clip"].geometry, 224)
    rng = np.random.default_rng(0)
    n = len(samples)
    timings = {}
    for name, heads in (("cls", 13), ("rollout", 1)):
        maps = {layer: rng.random((n, heads, 14, 14), dtype=np.float32) for layer in range(layers)}
        start = time.perf_counter()
        table = scoring.score_maps(maps, targets, PERCENTILES, 224)
        timings[name] = time.perf_counter() - start
        n_maps = n * heads * layers
        print(f"{name:8s} {n_maps:7,d} maps x {len(targets.masks)} targets: "
              f"{timings[name]:6.1f} s, {n_maps / timings[name]:7.0f} maps/s, {len(table):,} rows")
    per_model = sum(timings.values()) * 12 / layers
    print(f"projected: one 12-layer CLS model {per_model:.0f} s; 7 models about {7 * per_model:.0f} s")


if __name__ == "__main__":
    main()
