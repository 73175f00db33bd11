"""Throughput of `extract` at ViT-B / ResNet-50 size (random weights), on this machine.

For each model: images/s of a plain forward (SDPA attention, no attention returned), of
an eager forward without capture, of `extract` with all attention methods (one eager
forward capturing every layer's attention, plus the maps), and of Grad-CAM; the ratio
extract / plain is the cost of capturing attention (goal: at most 1.3x).

    python benchmarks/bench_extraction.py [--quick] [--batch 4] [--reps 3] [--threads N]
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import harness
import torch
from torch import nn

from sightline.models import REGISTRY, LoadedModel, load_model
from sightline.registry import METHODS
from sightline.saliency import extract

QUICK_MODELS = ("dinov2", "siglip", "resnet50")


def _plain_forward(model: LoadedModel, pixels: torch.Tensor, implementation: str) -> None:
    model.spec.arch.set_attention(model.module, implementation)
    try:
        with torch.inference_mode():
            model.forward(pixels)
    finally:
        model.spec.arch.set_attention(model.module, "eager")


def bench_model(key: str, batch: int, reps: int) -> dict[str, float | str]:
    """Images/s of each workload: best of ``reps`` interleaved runs after a warm-up."""
    model = load_model(key, size="base", seed=0)
    pixels = torch.randn(batch, 3, model.spec.geometry.size, model.spec.geometry.size)
    if not model.spec.arch.classifier:  # Grad-CAM explains a class: a 4-style linear head, as a probe
        with torch.no_grad():
            model = dataclasses.replace(model, head=nn.Linear(model.score(pixels).shape[-1], 4))
    attention = [m for m in model.spec.methods if METHODS[m].runs != "own"]
    workloads: dict[str, Callable[[], object]] = {
        "plain": lambda: _plain_forward(model, pixels, "sdpa"),
        "gradcam": lambda: extract(model, pixels, ["gradcam"]),
    }
    if attention:
        workloads["eager"] = lambda: _plain_forward(model, pixels, "eager")
        workloads["extract"] = lambda: extract(model, pixels, attention)
    for fn in workloads.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in workloads}
    for _ in range(reps):
        for name, fn in workloads.items():
            times[name].append(harness.best(fn, 1, warm_up=False)[0])
    return {"methods": "+".join(attention) or "-"} | {name: batch / min(ts) for name, ts in times.items()}


def main() -> None:
    parser = harness.parser(__doc__, f"only {', '.join(QUICK_MODELS)}, 1 rep")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    args = harness.parse(parser)
    # the Shared Interest classifiers have their own benchmark (bench_shared_interest.py)
    keys = QUICK_MODELS if args.quick else tuple(k for k in REGISTRY if "xrai" not in REGISTRY[k].methods)
    reps = 1 if args.quick else args.reps

    print(f"batch {args.batch}, best of {reps} rep(s) after warm-up, {args.threads} threads, "
          f"torch {torch.__version__}; images/s (higher is better)")
    harness.header(f"{'model':<9} {'attention methods':<24} {'plain':>7} {'eager':>7} "
                   f"{'extract':>8} {'ratio':>6} {'gradcam':>8}")
    start = time.perf_counter()
    for key in keys:
        row = bench_model(key, args.batch, reps)
        eager, extracted = (f"{row[name]:.2f}" if name in row else "-" for name in ("eager", "extract"))
        ratio = f"{row['plain'] / row['extract']:.2f}x" if "extract" in row else "-"
        print(f"{key:<9} {row['methods']:<24} {row['plain']:>7.2f} {eager:>7} {extracted:>8} "
              f"{ratio:>6} {row['gradcam']:>8.2f}", flush=True)
    print(f"ratio = extract time / plain SDPA forward time (goal <= 1.30x); "
          f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
