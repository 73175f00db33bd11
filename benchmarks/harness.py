"""What the benchmarks share: offline model loading, the command line, best-of timing, headers."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch


def parser(doc: str, quick: str) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring's first line, ``--quick`` and ``--threads``."""
    arguments = argparse.ArgumentParser(description=doc.splitlines()[0])
    arguments.add_argument("--quick", action="store_true", help=quick)
    arguments.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                           help="torch threads (default: 2, or 1 on one core)")
    return arguments


def parse(arguments: argparse.ArgumentParser) -> argparse.Namespace:
    """The parsed command line, with torch set to its thread count."""
    args = arguments.parse_args()
    torch.set_num_threads(args.threads)
    return args


def best(fn: Callable[[], object], reps: int, warm_up: bool = True,
         median: bool = False) -> tuple[float, float]:
    """Best (wall, CPU) seconds of ``reps`` runs (after a warm-up): the least disturbed by
    other load on shared cores; or, with ``median``, the median of each."""
    if warm_up:
        fn()
    runs = []
    for _ in range(reps):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    return tuple(float(x) for x in np.median(runs, axis=0)) if median else min(runs)


def header(line: str) -> None:
    """A table's header line, underlined."""
    print(f"{line}\n{'-' * len(line)}")
