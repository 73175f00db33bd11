"""Map extraction in-process against 1 and 2 local Ray workers, in the same run on this machine.

For each engine: images/s of `extract.extract_models` over the same synthetic images into
an empty cache (Ray's runtime start and shutdown included), and whether the maps are
byte-identical to the local engine's. Then Ray's own costs: starting and stopping a local
runtime, and the overhead of one (empty) task in a running one.

    python benchmarks/bench_scaleout.py [--quick] [--images 32] [--size base|tiny] [--model dinov2]
"""

from __future__ import annotations

import filecmp
import os
import tempfile
import time
from pathlib import Path

import harness
import torch

from sightline import data, execution, extract, synthetic
from sightline.config import Execution, ModelChoice

ENGINES = {
    "local": Execution(),
    "ray, 1 worker": Execution(engine="ray", workers=1),
    "ray, 2 workers": Execution(engine="ray", workers=2),
    "ray, 2 workers x 1 thread": Execution(engine="ray", workers=2, cpus_per_task=1),
}


def bench_engines(samples: list, choice: ModelChoice, batch: int, work: Path) -> None:
    """Prints images/s of a cold extraction per engine, and byte-identity with the local maps."""
    print(f"{'engine':28s} {'seconds':>8s} {'images/s':>9s} {'speed-up':>9s}  identical to local")
    local = reference = None
    for label, engine in ENGINES.items():
        store = extract.store_for(work / label.replace(" ", "_"), "bench", "m", "frozen")
        started = time.perf_counter()
        extract.extract_models(samples, [(choice, store)], batch_size=batch, device="cpu",
                               execution=engine, progress=False)
        seconds = time.perf_counter() - started
        local, reference = local or seconds, reference or store.path
        identical = filecmp.cmp(store.path, reference, shallow=False)
        print(f"{label:28s} {seconds:8.1f} {len(samples) / seconds:9.2f} {local / seconds:8.2f}x  "
              f"{'yes' if identical else 'no'}", flush=True)


def ray_overhead(n_tasks: int) -> tuple[float, float]:
    """Seconds to start and stop a local runtime (one empty task), and per empty task."""
    engine = Execution(engine="ray", workers=2, cpus_per_task=1)
    started = time.perf_counter()
    execution.run_tasks(abs, [(0,)], execution=engine, desc="empty")
    one = time.perf_counter() - started
    started = time.perf_counter()
    execution.run_tasks(abs, [(i,) for i in range(n_tasks)], execution=engine, desc="empty")
    many = time.perf_counter() - started
    return one, (many - one) / (n_tasks - 1)


def main() -> None:
    parser = harness.parser(__doc__, "tiny model, 12 images")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", choices=("base", "tiny"), default="base")
    parser.add_argument("--model", default="dinov2")
    parser.add_argument("--batch", type=int, default=4)
    args = harness.parse(parser)
    size, n = ("tiny", 12) if args.quick else (args.size, args.images)
    execution.ensure_ray()
    choice = ModelChoice(key=args.model, weights="random", size=size)
    with tempfile.TemporaryDirectory(prefix="sightline-scaleout-") as tmp:
        root = synthetic.make_synthetic(Path(tmp) / "ds", n_annotated=n, n_pool=0, seed=0)
        samples = data.load_wikichurches(root).samples
        print(f"{args.model} ({size}, random weights), {n} images, batch {args.batch}, "
              f"{os.cpu_count()} CPU cores, driver torch threads {torch.get_num_threads()}")
        bench_engines(samples, choice, args.batch, Path(tmp))
    start_stop, per_task = ray_overhead(n_tasks=40)
    print(f"Ray local runtime start + stop (one empty task): {start_stop:.1f} s; "
          f"overhead per task in a running runtime: {per_task * 1000:.0f} ms")


if __name__ == "__main__":
    main()
