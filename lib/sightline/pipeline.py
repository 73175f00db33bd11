"""Incremental, headless execution of the Jupytext notebooks with papermill.

A notebook re-runs only when its stamp changes: the hash of its source, the params
sections it declares in its ``parameters`` cell, the library code, the pinned package
set, the data it reads and the stamps of the notebooks it needs (``sightline: needs``
in its Jupytext header). Stamps are written only after a notebook succeeds, so an
interrupted or failed build re-runs exactly what is not yet done.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import jupytext
import nbformat
import papermill
from jupyter_client.manager import AsyncKernelManager
from papermill.exceptions import PapermillExecutionError
from traitlets import CaselessStrEnum, default

from . import config, data, execution, models, preflight, synthetic
from .config import ModelChoice, SIModelChoice
from .studies import photo_album

# Every notebook's Jupytext header names this kernel, so papermill, nbconvert --execute and
# JupyterLab run a notebook with no kernel argument: ``python3`` resolves to the interpreter
# Jupyter runs in (the project's .venv), and inside a build or ``build.py lab`` to
# `project_kernel`'s spec for this very interpreter.
KERNEL_SPEC = {"name": "python3", "display_name": "Python 3 (sightline)", "language": "python"}
KERNEL_NAME = KERNEL_SPEC["name"]
_SKIPPED = "not in this profile"


@dataclass
class Notebook:
    name: str
    path: Path
    parameters: list[str]
    needs: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)


class BuildError(Exception):
    """A build that cannot go on; the message says which notebook / file and why."""


class UsageError(BuildError):
    """A build asked for something that does not exist (e.g. an unknown ``--only`` name)."""


def discover(notebooks_dir: Path) -> list[Notebook]:
    """The Jupytext notebooks in run order (by file name), with their declared parameters."""
    notebooks = []
    for path in sorted(notebooks_dir.glob("*.py")):
        nb = jupytext.read(path)
        cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        if len(cells) != 1:
            raise BuildError(f"{path}: needs exactly one cell tagged 'parameters', found {len(cells)}")
        names = [target.id for node in ast.parse(cells[0].source).body if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name)]
        header = nb.metadata.get("sightline", {})
        needs, requires = list(header.get("needs", [])), list(header.get("requires", []))
        unknown = sorted(set(requires) - set(preflight.REQUIREMENTS))
        if unknown:
            raise BuildError(f"{path}: requires unknown {unknown} "
                             f"(known: {sorted(preflight.REQUIREMENTS)})")
        notebooks.append(Notebook(path.stem, path, names, needs, requires))
    order = [nb.name for nb in notebooks]
    for nb in notebooks:
        for need in nb.needs:
            if need not in order:
                raise BuildError(f"{nb.path}: needs unknown notebook '{need}' (have: {sorted(order)})")
            if order.index(need) > order.index(nb.name):
                raise BuildError(f"{nb.path}: needs '{need}', which runs later (notebooks run in "
                                 "file-name order): rename one of them")
    return notebooks


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode())
    return h.hexdigest()


def library_digest(root: Path) -> str:
    """Hash of the library source and the pinned package set."""
    files = sorted((root / "lib" / "sightline").rglob("*.py"))
    lock = root / "requirements-lock.txt"
    return _digest(*(f.read_bytes() for f in files), lock.read_bytes() if lock.exists() else b"")


def prepare_dataset(params: config.Params) -> tuple[str, preflight.Offer]:
    """Generate the synthetic data if the profile uses it and read the dataset once (so a bad
    file stops the build here, naming it): the fingerprint of what the notebooks read, and
    what the data and the models offer them."""
    ds = params.dataset
    fingerprints = [prepare_human_attention(params.shared_interest)] if params.shared_interest else []
    if params.photos is not None:
        fingerprints.append(prepare_photos(params.photos))
    if ds is None:
        return _digest(fingerprints), preflight.Offer()
    if isinstance(ds, config.SyntheticDataset):
        problem = data.verify_generated(ds.root)
        if problem is not None:
            print(f"[build] generating the synthetic data in {ds.root} ({problem})", flush=True)
        synthetic.make_synthetic(ds.root, n_annotated=ds.n_annotated, n_pool=ds.n_pool,
                                 seed=params.seed, image_size=tuple(ds.image_size))
    section = ds.model_dump(mode="json")
    with warnings.catch_warnings(record=True) as caught:  # said once here, not per notebook
        warnings.simplefilter("always", data.DataWarning)
        dataset = data.load_dataset(section)  # fails early, naming what is missing
    for warning in caught:
        if issubclass(warning.category, data.DataWarning):
            print(f"[build] warning: {warning.message}", flush=True)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    fingerprint = data.dataset_fingerprint(section)
    return (_digest([fingerprint, *fingerprints]) if fingerprints else fingerprint,
            preflight.offer(params, dataset))


def prepare_human_attention(study: config.SharedInterest) -> str:
    """The Shared Interest study's data: generate the stand-in, or check the benchmark."""
    ds = study.dataset
    if isinstance(ds, config.SyntheticHumanAttentionDataset):
        synthetic.make_human_attention(ds.root, subjects=ds.subjects, per_subject=ds.per_subject,
                                       image_size=tuple(ds.image_size))
    data.load_human_attention(ds.root, strict=ds.strict)  # fails early, naming what is missing
    return data.human_attention_fingerprint(ds.root)


def prepare_photos(study: config.Photos) -> str:
    """The packaged photographs and our annotations; each missing source said once here."""
    report = photo_album.prepare_photos(study.root, fetch=study.fetch_darknet)
    for line in report.missing:
        print(f"[build] photos: {line}", flush=True)
    print(f"[build] photos: {len(report.present)} photographs in {study.root / 'images'}",
          flush=True)
    return photo_album.fingerprint(study.root)


@dataclass
class BuildResult:
    profile_dir: Path
    executed: list[str]
    cached: list[str]


def check_models(params: config.Params) -> None:
    """Check every models list against the registry (`models.check_choices`) before any work:
    a model that cannot be used stops the build here with one line naming it."""
    study = params.shared_interest
    try:
        models.check_choices(params.models, ModelChoice.STUDY, "models")
        if study is not None:
            models.check_choices(study.models, SIModelChoice.STUDY, "shared_interest.models")
    except models.ModelError as error:
        raise UsageError(str(error)) from None


def build(params_path: Path, *, root: Path, report_root: Path | None = None,
          only: list[str] | None = None, force: bool = False, jobs: int | None = None
          ) -> BuildResult:
    """Run the stale notebooks of a profile, ``jobs`` at a time (default `default_jobs`), each
    once the notebooks it needs are done; then (re)make the report if anything changed."""
    from . import report

    params = config.load_params(params_path, base=root)
    check_models(params)
    preflight.check_checkpoints(params)
    if params.execution.engine == "ray":
        execution.ensure_ray()
        execution.check_address(params.execution.address)
    profile_dir = (report_root or root / "report") / params.profile
    notebooks = discover(root / "notebooks")
    if only:
        unknown = sorted(set(only) - {nb.name for nb in notebooks})
        if unknown:
            raise UsageError(f"--only: no notebook named {', '.join(unknown)}; the notebooks are: "
                             f"{', '.join(nb.name for nb in notebooks)}")
    upstream = _upstream(notebooks, only or [])
    print(f"[build] profile '{params.profile}' -> {profile_dir}", flush=True)
    started = time.perf_counter()
    data_digest, offer = prepare_dataset(params)
    print(f"[build] data ready ({time.perf_counter() - started:.1f} s)", flush=True)
    for note in preflight.class_target_notes(params, offer):
        print(f"[build] note: {note}", flush=True)
    (profile_dir / "tables").mkdir(parents=True, exist_ok=True)
    (profile_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    stamps_path = profile_dir / "stamps.json"
    records: dict[str, dict] = json.loads(stamps_path.read_text()) if stamps_path.exists() else {}
    lib_digest = library_digest(root)
    stamps: dict[str, str] = {}
    todo, cached = {}, []
    for nb in notebooks:
        # e.g. the WikiChurches notebooks in a Shared-Interest-only profile
        absent = [f"no '{name}'" for name in nb.parameters if getattr(params, name, 0) is None]
        absent += [f"'{n}' is skipped" for n in nb.needs if stamps[n] == _SKIPPED]
        if params.dataset:
            absent += preflight.unmet(nb.requires, params, offer)
        if absent:
            stamps[nb.name] = _SKIPPED
            if only is None or nb.name in only:
                print(f"[build] {nb.name}: skipped (in this profile {absent[0]})", flush=True)
            continue
        injected = _parameters(nb, params, profile_dir, root)
        stamps[nb.name] = _digest(
            nb.path.read_bytes(), injected, lib_digest,
            data_digest if {"dataset", "shared_interest", "photos"} & set(nb.parameters) else "",
            [stamps[n] for n in nb.needs])
        output = profile_dir / "notebooks" / f"{nb.name}.ipynb"
        fresh = records.get(nb.name, {}).get("stamp") == stamps[nb.name] and output.exists()
        # --only runs the named notebooks, plus any notebook they need that is stale
        wanted = only is None or nb.name in only or (nb.name in upstream and not fresh)
        if (fresh and not force) or not wanted:
            if wanted:
                print(f"[build] {nb.name}: cached (unchanged)", flush=True)
                cached.append(nb.name)
            continue
        todo[nb.name] = (nb, injected, output)

    jobs = jobs or default_jobs()
    seconds: dict[str, float] = {}
    with project_kernel(SIGHTLINE_BUILD="1", **kernel_threads(jobs)):
        for name, took in schedule(
            [todo[name] for name in longest_first(notebooks, records) if name in todo], jobs,
            lambda nb, injected, output: execute(nb, injected, output, root),
        ):
            print(f"[build] {name}: done in {took:.1f} s", flush=True)
            seconds[name] = took
            records[name] = {"stamp": stamps[name], "seconds": round(took, 1), "commit":
                             git_commit(root), "executed_at": time.strftime("%Y-%m-%d %H:%M:%S")}
            stamps_path.write_text(json.dumps(records, indent=2))
    executed = [nb.name for nb in notebooks if nb.name in seconds]

    report_stamp = _digest([records[nb.name]["stamp"] for nb in notebooks if nb.name in records],
                           Path(report.__file__).read_bytes(), report.CSS)
    index = profile_dir / "index.html"
    if executed or force or not index.exists() or records.get("_report") != report_stamp:
        report.build_report(params, params_path, profile_dir, notebooks, records)
        records["_report"] = report_stamp
        stamps_path.write_text(json.dumps(records, indent=2))
        print(f"[build] report: {index} and {profile_dir / 'report.pdf'}", flush=True)
    for leftover in (profile_dir / "notebooks").glob("*.running.ipynb"):  # from a killed build
        leftover.unlink()
    if not executed:
        print("[build] nothing changed: no notebook executed", flush=True)
    else:
        path, longest = critical_path(notebooks, seconds)
        print(f"[build] notebooks: {', '.join(f'{n} {seconds[n]:.0f} s' for n in executed)}; "
              f"critical path {' -> '.join(path)}: {longest:.0f} s ({jobs} at a time)", flush=True)
    print(f"[build] finished in {time.perf_counter() - started:.1f} s", flush=True)
    return BuildResult(profile_dir, executed, cached)


def default_jobs() -> int:
    """Notebooks run at once: two where there are two cores (the demo's tiny models use one
    core each far better than two: a 2-thread training step costs more CPU than two 1-thread
    steps, and many times more on a busy machine), else one."""
    return min(2, _cores())


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def kernel_threads(jobs: int) -> dict[str, str]:
    """The kernels' thread count: the cores shared by the ``jobs`` notebooks running at once
    (``OMP_NUM_THREADS`` where the caller set none). Fixed per machine and ``jobs``, since
    training's last bits depend on it."""
    return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(max(1, _cores() // jobs))}


def longest_first(notebooks: list[Notebook], records: dict[str, dict]) -> list[str]:
    """Notebook names by the seconds from each to the build's end (its own, as last recorded,
    else 1, plus its longest chain of dependents): the critical path starts first."""
    below: dict[str, float] = {}
    for nb in reversed(notebooks):  # a notebook's dependents come after it
        after = [below[other.name] for other in notebooks if nb.name in other.needs]
        below[nb.name] = records.get(nb.name, {}).get("seconds", 1.0) + max(after, default=0.0)
    return sorted((nb.name for nb in notebooks), key=lambda name: -below[name])


def critical_path(notebooks: list[Notebook], seconds: dict[str, float]) -> tuple[list[str], float]:
    """The chain of needs among the executed notebooks with the most seconds, and its sum."""
    chain: dict[str, tuple[float, list[str]]] = {}
    for nb in notebooks:
        if nb.name in seconds:
            before = max((chain[n] for n in nb.needs if n in chain), default=(0.0, []))
            chain[nb.name] = (before[0] + seconds[nb.name], [*before[1], nb.name])
    longest, path = max(chain.values())
    return path, longest


def schedule(todo: list[tuple[Notebook, dict, Path]], jobs: int,
             run: Callable[[Notebook, dict, Path], float]) -> Iterator[tuple[str, float]]:
    """``run`` each notebook of ``todo`` (in that order of preference) once those it needs
    among them are done, ``jobs`` at a time; yields (name, what ``run`` returned) as each ends.
    After a failure nothing new starts; the running ones finish, then the failure is raised."""
    ended: queue.Queue = queue.Queue()
    waiting, running, failure = list(todo), set(), None

    def work(nb: Notebook, injected: dict, output: Path) -> None:
        try:
            ended.put((nb.name, run(nb, injected, output), None))
        except BaseException as error:  # raised in the caller's thread
            ended.put((nb.name, None, error))

    while waiting or running:
        blocked = {nb.name for nb, *_ in waiting} | running
        ready = [task for task in waiting if not blocked & set(task[0].needs)]
        if not ready and not running:  # a cycle of needs: nothing could ever start
            raise BuildError(f"the needs of {', '.join(nb.name for nb, *_ in waiting)} form a cycle")
        for task in ready[:jobs - len(running)]:
            waiting.remove(task)
            running.add(task[0].name)
            print(f"[build] {task[0].name}: started", flush=True)
            threading.Thread(target=work, args=task, daemon=True).start()
        name, result, error = ended.get()
        running.discard(name)
        if error is None:
            yield name, result
            continue
        failure, waiting = failure or error, []
        if running:
            print(f"[build] {name}: failed; waiting for {', '.join(sorted(running))}", flush=True)
    if failure is not None:
        raise failure


def _upstream(notebooks: list[Notebook], names: list[str]) -> set[str]:
    """Every notebook the named ones need, directly or not."""
    found: set[str] = set()
    for nb in reversed(notebooks):  # a notebook's needs run before it (`discover` checks)
        if nb.name in names or nb.name in found:
            found.update(nb.needs)
    return found


def _parameters(nb: Notebook, params: config.Params, profile_dir: Path, root: Path) -> dict:
    sections = params.model_dump(mode="json")
    provided = {"tables_dir": str(profile_dir / "tables"), "project_root": str(root)}
    available = {**provided, **sections}
    unknown = [name for name in nb.parameters if name not in available]
    if unknown:
        raise BuildError(
            f"{nb.path}: parameter '{unknown[0]}' is neither a params section "
            f"({', '.join(sections)}) nor provided by the build ({', '.join(provided)})")
    return {name: available[name] for name in nb.parameters}


def execute(nb: Notebook, parameters: dict, output: Path, root: Path) -> float:
    """Execute one notebook (inside a `project_kernel`); on failure keep the partial notebook
    and raise BuildError."""
    running = output.with_suffix(".running.ipynb")
    failed = output.with_suffix(".failed.ipynb")
    notebook = jupytext.read(nb.path)
    notebook.metadata["kernelspec"] = dict(KERNEL_SPEC)
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            notebook, str(running), parameters=parameters, kernel_name=KERNEL_NAME,
            progress_bar=False, stderr_file=sys.stderr, kernel_manager_class=_BuildKernelManager,
            resources={"metadata": {"path": str(root)}},  # the kernel's cwd (no process chdir)
            shutdown_kernel="immediate", record_timing=False)
    except PapermillExecutionError as error:
        os.replace(running, failed)
        raise BuildError(
            f"notebook {nb.name} failed in cell {error.exec_count} "
            f"({error.ename}: {error.evalue}).\nThe partial notebook is kept at {failed}; "
            "earlier outputs are left as they were.") from None
    except BaseException:
        if running.exists():
            os.replace(running, failed)
        raise
    executed = reproducible(nbformat.read(running, as_version=4), nb.name)
    executed.metadata.papermill.update(input_path=str(nb.path), output_path=str(output))
    nbformat.write(executed, running)
    os.replace(running, output)
    failed.unlink(missing_ok=True)
    return time.perf_counter() - started


_PROGRESS_BAR = re.compile(r"\|\s*\S+/\S+ \[[\d:?]+<")  # tqdm's "| 12/24 [00:01<"
# finetune.PROGRESS_PREFIX (one line per epoch) and extract.ESTIMATE_PREFIX (a stage's cost)
_CONSOLE_LINE = re.compile(r"^\[(train|estimate)\] ")


def reproducible(notebook: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """An executed notebook without what differs between identical runs: random cell ids
    (now ``<name>-<index>``), papermill's timings, and stderr's progress bars, per-epoch
    training lines and cost estimates (the build's console shows them)."""
    for holder in (notebook, *notebook.cells):
        for key in ("start_time", "end_time", "duration"):
            holder.metadata.get("papermill", {}).pop(key, None)
    for index, cell in enumerate(notebook.cells):
        cell.id = f"{name}-{index}"[-64:]
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.outputs:
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                lines = [line.rsplit("\r", 1)[-1] for line in output.text.split("\n")]
                output.text = "\n".join(line for line in lines if not _PROGRESS_BAR.search(line)
                                        and not _CONSOLE_LINE.match(line))
                if not output.text.strip():
                    continue
            outputs.append(output)
        cell.outputs = outputs
    return notebook


class _BuildKernelManager(AsyncKernelManager):
    """Kernels for a build: IPC sockets of their own in the temporary folder (by default two
    kernels started at once could pick the same name in the working directory), and no SIGINT
    at shut-down (an idle kernel would log "KeyboardInterrupt caught in kernel")."""

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

    @default("ip")
    def _ip_default(self) -> str:
        return str(Path(tempfile.gettempdir()) / f"sightline-{uuid.uuid4().hex[:12]}-ipc")

    async def _async_interrupt_kernel(self) -> None:
        if not self.shutting_down:
            await super()._async_interrupt_kernel()


@contextmanager
def project_kernel(**env: str) -> Iterator[None]:
    """A kernelspec for this very interpreter, so notebooks run in the project environment:
    inside the block, Jupyter (papermill, JupyterLab started from it) finds the kernel
    ``python3`` here, ahead of any other; ``env`` adds variables to the kernel's environment."""
    with tempfile.TemporaryDirectory(prefix="sightline-kernel-") as folder:
        spec_dir = Path(folder) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": KERNEL_SPEC["display_name"],
            "language": KERNEL_SPEC["language"],
            "env": {"PYTHONPATH": os.environ.get("PYTHONPATH", ""),
                    "MPLBACKEND": "module://matplotlib_inline.backend_inline", **env},
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        path = os.pathsep.join(p for p in (folder, os.environ.get("JUPYTER_PATH")) if p)
        with mock.patch.dict(os.environ, JUPYTER_PATH=path):
            yield


def git_commit(root: Path) -> str:
    """The current commit (with '+dirty' when the work tree differs), or 'unknown'."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
