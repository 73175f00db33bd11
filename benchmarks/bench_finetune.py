"""Training throughput of `finetune.train_run` at base size (random weights), on this machine.

Per model: images/s of one ``full`` epoch of `train_run` (from disk, augmented, the whole
recipe) against a bare PyTorch loop on in-memory tensors in the same process; the ratio is
the loop's overhead (goal: at most 1.1x). Peak memory: resident set on CPU, allocated on a GPU.

    python benchmarks/bench_finetune.py [--quick] [--images 32] [--batch 8] [--threads N]
"""

from __future__ import annotations

import dataclasses
import resource
import tempfile
import time
from pathlib import Path

import harness
import torch
from torch import nn

from sightline import data, finetune, models, synthetic
from sightline.config import Finetune, ModelChoice
from sightline.finetune.checkpoints import backbone, feature_dim

QUICK_MODELS = ("clip", "resnet50")


def _peak_mib(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_loop(key: str, n_images: int, batch: int, device: str) -> float:
    """Seconds for one epoch of the plainest loop: forward, CE, backward, AdamW step."""
    loaded = backbone(ModelChoice(key=key, weights="random", size="base"), 0, device)
    module = loaded.module.train()
    head = nn.Linear(feature_dim(loaded), 4).to(device)
    optimiser = torch.optim.AdamW([*module.parameters(), *head.parameters()], lr=1e-5)
    size = loaded.spec.geometry.size
    pixels = torch.randn(n_images, 3, size, size, device=device)
    labels = torch.randint(0, 4, (n_images,), device=device)
    start = time.perf_counter()
    for i in range(0, n_images, batch):
        logits = head(loaded.spec.arch.features(loaded.forward(pixels[i : i + batch])))
        nn.functional.cross_entropy(logits, labels[i : i + batch]).backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = harness.parser(__doc__, f"only {', '.join(QUICK_MODELS)}")
    parser.add_argument("--images", type=int, default=32, help="training images per epoch")
    parser.add_argument("--batch", type=int, default=8)
    args = harness.parse(parser)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    keys = QUICK_MODELS if args.quick else models.preset_keys("wikichurches")  # Q2's models
    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic.make_synthetic(Path(tmp) / "data", n_annotated=4,
                                        n_pool=round(args.images / 0.8 / 0.8) + 8)
        split = finetune.make_split(data.load_wikichurches(root), "bench", 0, 0.2)
        split = dataclasses.replace(split, train=split.train[: args.images], val=split.val[:4])
        recipe = Finetune(epochs=1, batch_size=args.batch, device=device)
        n = len(split.train)
        print(f"{n} images per epoch, batch {args.batch}, {args.threads} threads, {device}, "
              f"torch {torch.__version__}; images/s (higher is better)")
        harness.header(f"{'model':<9} {'bare':>7} {'ours':>7} {'ratio':>6} {'peak MiB':>9}")
        for key in keys:
            bare_loop(key, args.batch, args.batch, device)  # warm-up
            bare = bare_loop(key, n, args.batch, device)
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            manifest = finetune.train_run(ModelChoice(key=key, weights="random", size="base"), "full",
                                          0, split, recipe, Path(tmp) / "runs", progress=False)
            trained = manifest["history"][0]["train_seconds"]  # the training phase, validation excluded
            print(f"{key:<9} {n / bare:>7.2f} {n / trained:>7.2f} {trained / bare:>5.2f}x "
                  f"{_peak_mib(device):>9.0f}", flush=True)
    print("ratio = train_run epoch time / bare loop time on in-memory tensors (goal <= 1.10x); "
          "peak = process peak RSS so far (CPU) or peak allocated memory (GPU)")


if __name__ == "__main__":
    main()
