"""CPU seconds per image of the class-relevance methods at ViT-B size (random weights, a
linear style head), and maps/s of each binarisation rule on 224² maps, on this machine.

    python benchmarks/bench_attribution.py [--quick] [--batch 2] [--reps 2] [--threads N]
"""

from __future__ import annotations

import dataclasses

import harness
import numpy as np
import torch
from torch import nn

from sightline import binarize
from sightline.models import load_model
from sightline.saliency import extract

METHODS = ("chefer", "attnlrp", "legrad", "gradcam")


def bench_methods(key: str, batch: int, reps: int) -> None:
    model = load_model(key, size="base", seed=0)
    size = model.spec.geometry.size
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        width = model.score(pixels).shape[-1]
    model = dataclasses.replace(model, head=nn.Linear(width, 4))
    for method in METHODS:
        wall, cpu = harness.best(lambda m=method: extract(model, pixels, [m]), reps)
        print(f"{key:8s} {method:8s} {wall / batch:6.2f} s/image wall {cpu / batch:6.2f} CPU s/image")


def bench_rules(n: int, reps: int) -> None:
    maps = np.random.default_rng(0).random((n, 224, 224), dtype=np.float32) ** 4
    for name, rule in binarize.RULES.items():
        masks = rule.masks or (lambda m: binarize.top_k(m, 90))
        wall, _ = harness.best(lambda f=masks: f(maps), reps)
        print(f"rule {name:10s} {n / wall:8.0f} maps/s (224²)")


def main() -> None:
    parser = harness.parser(__doc__, "dinov2 only, fewer maps")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2)
    args = harness.parse(parser)
    print(f"torch threads: {torch.get_num_threads()}")
    for key in ("dinov2",) if args.quick else ("dinov2", "siglip"):
        bench_methods(key, args.batch, args.reps)
    bench_rules(64 if args.quick else 256, args.reps)


if __name__ == "__main__":
    main()
