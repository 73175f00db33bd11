"""Where the heavy steps run: in this process (default), in local worker processes or as Ray
tasks, with the same results (docs/scale-out.md); tasks must be picklable and write atomically."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .config import Execution

RAY_VERSION = "2.60.0"
RAY = f"ray[client]=={RAY_VERSION}"
MAX_RETRIES = 3
INSTALL_TIMEOUT_S = 900
CONNECT_TIMEOUT_S = 5.0
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20


class ExecutionError(Exception):
    """The execution engine cannot run the tasks; the message names the setting and what to do."""


def ensure_ray() -> Any:
    """Import ray, pip-installing the pinned version into this environment on first use."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        installed = metadata.version("ray") if importlib.util.find_spec("grpc") else None
    except metadata.PackageNotFoundError:
        installed = None
    if installed != RAY_VERSION:
        print(f"[ray] installing {RAY} into this environment (first use of engine: ray)", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q",
                            RAY], check=True, timeout=INSTALL_TIMEOUT_S)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            raise ExecutionError(f"execution.engine is 'ray' but pip could not install {RAY} "
                                 f"({error}); install it yourself (python -m pip install '{RAY}') "
                                 "or use engine: local") from None
        importlib.invalidate_caches()
    # importing ray in a notebook kernel warns about ipywidgets (rich output we do not use)
    logging.getLogger("ray.widgets.util").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module("ray")


def check_address(address: str | None) -> None:
    """Fail fast, naming the address, when no Ray cluster answers there (Ray itself waits minutes)."""
    if address is None:
        return
    if address == "auto":
        ray = ensure_ray()
        try:
            ray.init(address="auto", **_QUIET)
        except ConnectionError:
            raise ExecutionError("execution.address is 'auto' but no Ray cluster runs on this "
                                 "node; start one with `ray start --head` or give its address "
                                 "(ray://HOST:10001 or HOST:6379)") from None
        ray.shutdown()
        return
    host, port = address.removeprefix("ray://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise ExecutionError(f"execution.address {address!r}: no Ray cluster reachable there "
                             f"({error}). Start the head with `ray start --head` (Ray Client "
                             "listens on port 10001, the GCS on 6379), check the host and "
                             "firewall, or remove the address to use a local Ray runtime") from None


def run_tasks(fn: Callable[..., Any], tasks: Sequence[tuple], *, execution: Execution, desc: str,
              unit: str = "task") -> list[Any]:
    """``[fn(*task) for task in tasks]``, in this process, in worker processes or as Ray tasks;
    one bar over tasks."""
    import torch

    tasks = list(tasks)
    threads = execution.cpus_per_task or torch.get_num_threads()
    if execution.engine == "local":
        return [
            _call(fn, threads if execution.cpus_per_task else None, task)
            for task in tqdm(tasks, desc=desc, unit=unit, disable=len(tasks) < 2)
        ]
    if not tasks:
        return []
    if execution.engine == "processes":
        return _in_processes(fn, tasks, execution.workers, threads, desc, unit)
    with ray_runtime(execution, threads) as ray:
        remote = ray.remote(_call).options(num_cpus=threads, num_gpus=execution.gpus_per_task,
                                           max_retries=MAX_RETRIES)
        pending = {remote.remote(fn, threads, task): i for i, task in enumerate(tasks)}
        results: list[Any] = [None] * len(tasks)
        with tqdm(total=len(tasks), desc=desc, unit=unit) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                try:
                    results[pending.pop(done[0])] = ray.get(done[0])
                except BaseException as error:
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    raise _unwrap(ray, error) from None
                bar.update()
    return results


def _in_processes(fn: Callable[..., Any], tasks: list[tuple], workers: int, threads: int,
                  desc: str, unit: str) -> list[Any]:
    """The tasks in ``workers`` spawned processes of ``threads`` torch threads each; the first
    task error is raised as it is, once the tasks already running have finished."""
    pool = _pool(workers)
    results: list[Any] = [None] * len(tasks)
    pending = {pool.submit(_call, fn, threads, task): i for i, task in enumerate(tasks)}
    try:
        for done in tqdm(as_completed(pending), total=len(tasks), desc=desc, unit=unit):
            results[pending[done]] = done.result()
    except BrokenProcessPool:
        _pool.cache_clear()
        raise ExecutionError(f"a worker process died during {desc!r} (out of memory?): use "
                             "fewer execution.workers or smaller batches") from None
    except BaseException:
        for future in pending:
            future.cancel()
        wait(pending)
        raise
    return results


@cache
def _pool(workers: int) -> ProcessPoolExecutor:
    """One pool of spawned workers for the session (fork would copy torch's thread pools);
    kept, so the next steps' tasks skip the workers' start (importing torch)."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _call(fn: Callable[..., Any], threads: int | None, task: tuple) -> Any:
    """Run one task with a fixed torch thread count (results depend on it; None: as it is)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return fn(*task)
    finally:
        torch.set_num_threads(before)


def _unwrap(ray: Any, error: BaseException) -> BaseException:
    """The task's own exception (not Ray's wrapper); a worker dead after retries, explained."""
    if isinstance(error, ray.exceptions.RayTaskError) and isinstance(error.cause, Exception):
        return error.cause
    if isinstance(error, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError):
        return ExecutionError(f"a Ray task's worker died {MAX_RETRIES + 1} times ({type(error).__name__}); "
                              "out of memory? Use smaller batches or fewer workers")
    return error


_QUIET = {"log_to_driver": False, "logging_level": logging.ERROR, "include_dashboard": False}


@contextmanager
def ray_runtime(execution: Execution, threads: int) -> Iterator[Any]:
    """Ray, started (local runtime) or joined (cluster) for the tasks, and shut down after;
    a runtime the caller already started is reused and left running."""
    ray = ensure_ray()
    if ray.is_initialized():
        yield ray
        return
    check_address(execution.address)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if execution.address is None:
            ray.init(address="local", num_cpus=execution.workers * threads,
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES, **_QUIET)
        else:
            ray.init(address=execution.address, **_QUIET)
    try:
        _check_fits(ray, execution, threads)
        yield ray
    finally:
        ray.shutdown()


def _check_fits(ray: Any, execution: Execution, threads: int) -> None:
    """Fail now, rather than wait forever, when no node has the CPUs and GPUs a task asks for."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(n.get("CPU", 0) >= threads and n.get("GPU", 0) >= execution.gpus_per_task for n in nodes):
        return
    largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
    raise ExecutionError(f"a task asks for {threads} CPU(s) (execution.cpus_per_task; default: the driver's "
                         f"torch threads) and {execution.gpus_per_task} GPU(s) (execution.gpus_per_task), "
                         f"but the largest node of the Ray cluster ({execution.address or 'local runtime'}) "
                         f"has {largest.get('CPU', 0):g} CPU(s) and {largest.get('GPU', 0):g} GPU(s)")


@contextmanager
def shared_dir(path: Path) -> Iterator[Path]:
    """A probe file in ``path`` for tasks to check with ``require_shared`` (removed afterwards)."""
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".sightline-probe-{uuid.uuid4().hex}"
    probe.touch()
    try:
        yield probe
    finally:
        probe.unlink(missing_ok=True)


def require_shared(probe: Path, key: str) -> None:
    """In a task: fail, naming the setting, directory and node, if the driver's probe is not seen."""
    if not probe.exists():
        raise ExecutionError(f"{key} {probe.parent} is not visible from the worker on node "
                             f"{socket.gethostname()}: put it on storage every node mounts at the same path "
                             "(NFS, a cluster file system), or use engine: local")
