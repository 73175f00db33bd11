"""Fill the map cache: every model's maps (and the naive baselines') for every sample.

Extraction skips what the cache holds and writes batch by batch, so it resumes after a kill;
model maps are extracted in tasks (``ShardTask``) run as ``params.execution`` says."""

from __future__ import annotations

import hashlib
import math
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import baselines, cache, data, geometry, models, registry, saliency
from . import execution as engine
from .config import Execution, ModelChoice
from .finetune import checkpoints
from .geometry import Geometry

# Baselines see the whole image (squash frame) and are stored on a coarse grid, like a
# model's patch grid, then scored through the same upsampling as every model.
BASELINE_GEOMETRY = Geometry(size=224)
BASELINE_GRID = 56
STYLES = tuple(data.MAIN_STYLES.values())  # a style head's classes, in order (finetune.STYLES)


def code_hash(*modules: ModuleType) -> str:
    """Hash of the modules' source files (a package's: every file, sorted)."""
    files = [file for m in modules for file in (
        sorted(Path(m.__file__).parent.rglob("*.py")) if Path(m.__file__).name == "__init__.py"
        else [Path(m.__file__)])]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]


def code_version() -> str:
    """Hash of the code that decides what a map is and of the methods registered (a method
    registered from outside these modules gets stores of its own); part of every store's key."""
    code = code_hash(geometry, models, checkpoints, saliency, baselines, registry)
    return hashlib.sha256(f"{code} {' '.join(registry.METHODS.names())}".encode()).hexdigest()[:12]


def model_name(choice: ModelChoice) -> str:
    """How a model choice is named in the cache and in every table, e.g. ``dinov2`` or
    ``dinov2-tiny-random`` for the offline stand-ins; a spec by its key (``mynet``, or
    ``mynet-random`` with random weights)."""
    if choice.source is not None:
        return f"{choice.key}-random" if choice.weights == "random" else choice.key
    if choice.weights == "pretrained" and choice.size == "base":
        return choice.key
    return f"{choice.key}-{choice.size}-{choice.weights}"


def store_for(cache_dir: str | Path, dataset_id: str, name: str, variant: str, key: str = "",
              xrai: saliency.XraiSettings | None = None) -> cache.MapStore:
    """The store of one (dataset, model, variant) at the current code version; ``key`` (a
    fine-tuning run's) and ``xrai`` (its settings) give other weights or settings their own."""
    tag = f"{variant}-{key}" if key else variant
    tag += f".xrai{xrai.steps}{xrai.algorithm}" if xrai else ""
    return cache.MapStore(Path(cache_dir) / dataset_id[:16] / f"{name}__{tag}__{code_version()}.h5")


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise models.ModelError("extraction.device is 'cuda' but torch sees no GPU; use 'auto' or 'cpu'")
    return device


def _batches(items: Sequence, size: int) -> list[Sequence]:
    return [items[i : i + size] for i in range(0, len(items), size)]


TargetClasses = Callable[[Sequence, torch.Tensor], list[int] | None]  # (batch, pixels) -> classes


class MapJob(NamedTuple):
    """One store to fill: the model, its store, (default: every applicable) methods, the
    fine-tuning run whose weights to read the maps from (None: the model's own) and XRAI's
    settings (None: `saliency.XraiSettings()`)."""

    choice: ModelChoice
    store: cache.MapStore
    methods: tuple[str, ...] | None = None
    run: Path | None = None
    xrai: saliency.XraiSettings | None = None


@dataclass(frozen=True)
class ShardTask:
    """A map job's maps for a run of whole batches of images, written as shards of its store;
    ``code``: the driver's `code_version`, ``probe``: its `execution.shared_dir` probe."""

    job: MapJob
    samples: tuple[data.Sample, ...]
    shard: int
    batch_size: int
    device: str
    seed: int
    code: str
    probe: Path | None = None


def extract_models(samples: Sequence[data.Sample], jobs: Sequence[MapJob | tuple], *,
                   batch_size: int = 16, device: str = "auto", seed: int = 0,
                   execution: Execution | None = None, progress: bool = True) -> dict[Path, int]:
    """Store the maps of each job (``MapJob`` or a ``(choice, store)`` pair) for the samples
    its store lacks; how many images each store (by path) gained. On Ray, each job's images are
    split into ``2 * workers`` shards of whole batches (so every map is as locally)."""
    jobs = list({job.store.path: job for job in (MapJob(*j) for j in jobs)}.values())  # once each
    execution = execution or Execution()
    on_ray = execution.engine == "ray"
    with ExitStack() as stack:
        probes = {
            parent: stack.enter_context(engine.shared_dir(parent)) if on_ray else None
            for parent in {job.store.path.parent for job in jobs}
        }
        tasks = []
        for job in jobs:
            done = job.store.image_ids()
            todo = [s for s in samples if s.image_id not in done]
            batches = _batches(todo, batch_size)
            n_shards = max(1, min(len(batches), 2 * execution.workers)) if on_ray else 1
            for shard, part in enumerate(_split(batches, n_shards)):
                task = ShardTask(job, tuple(s for batch in part for s in batch), shard, batch_size, device,
                                 seed, code_version(), probes[job.store.path.parent])
                tasks.append((task, progress and execution.engine == "local"))
        counts = engine.run_tasks(extract_shard, tasks, execution=execution, desc="maps",
                                  unit="shard")
    extracted = {job.store.path: 0 for job in jobs}
    for (task, _), count in zip(tasks, counts, strict=True):
        extracted[task.job.store.path] += count
    for job in jobs:
        job.store.compact()
    return extracted


def extract_model(samples: Sequence[data.Sample], choice: ModelChoice, store: cache.MapStore, *,
                  batch_size: int = 16, device: str = "auto", seed: int = 0, progress: bool = True,
                  execution: Execution | None = None, methods: Sequence[str] | None = None,
                  xrai: saliency.XraiSettings | None = None, loaded: models.LoadedModel | None = None,
                  target_classes: TargetClasses | None = None) -> int:
    """Store the maps of one model for the samples not yet cached; returns how many.
    ``target_classes(batch, pixels)``: the class each image is explained for (default: the
    predicted one). A ``loaded`` model or ``target_classes`` (neither travels) runs here."""
    job = MapJob(choice, store, tuple(methods) if methods else None, None, xrai)
    if loaded is None and target_classes is None:
        return extract_models(samples, [job], batch_size=batch_size, device=device, seed=seed,
                              execution=execution, progress=progress)[store.path]
    task = ShardTask(job, tuple(samples), 0, batch_size, device, seed, code_version())
    count = extract_shard(task, progress, loaded=loaded, target_classes=target_classes)
    store.compact()
    return count


def extract_shard(task: ShardTask, progress: bool = False, *, loaded: models.LoadedModel | None = None,
                  target_classes: TargetClasses | None = None) -> int:
    """Store the maps (and a classifier's predicted class) of the task's images the store
    lacks, each batch an atomic shard file named after the task (a retry goes on from it)."""
    if task.probe is not None:
        engine.require_shared(task.probe, "extraction.cache_dir")
    if code_version() != task.code:
        raise engine.ExecutionError(f"node {socket.gethostname()} runs other sightline code "
                                    f"({code_version()}) than the driver ({task.code}): run the "
                                    "same checkout of the project on every node")
    job = task.job
    done = job.store.image_ids()
    todo = [s for s in task.samples if s.image_id not in done]
    if not todo:
        return 0
    device = resolve_device(task.device)
    loaded = loaded or load_for(job.choice, job.run, seed=task.seed, device=device)
    job.store.shard_dir.mkdir(parents=True, exist_ok=True)
    writer = cache.ShardWriter(job.store.shard_dir, prefix=f"{task.shard:04d}-")
    xrai = job.xrai or saliency.XraiSettings()
    note = (f"XRAI ({xrai.steps} steps, {xrai.algorithm}) is most of it; fewer steps lower it "
            "(extraction.xrai; Shared Interest: shared_interest.xrai)"
            if "xrai" in (job.methods or loaded.methods) else "")
    with ImageProgress(f"maps {model_name(job.choice)}", len(todo), device=device, note=note,
                       enabled=progress) as meter:
        for batch in _batches(todo, task.batch_size):
            pixels = loaded.preprocess([data.load_image(s.path) for s in batch]).to(device)
            classes = target_classes(batch, pixels) if target_classes else None
            with meter.batch(len(batch)) as on_image:
                maps, logits = saliency.extract_with_logits(loaded, pixels, job.methods, classes=classes,
                                                            xrai=job.xrai, on_image=on_image)
            predicted = logits.argmax(dim=-1).tolist() if logits is not None else None
            writer.put([s.image_id for s in batch], maps, predicted)
    return len(todo)


ESTIMATE_PREFIX = "[estimate] "  # the build shows these lines; an executed notebook drops them


class ImageProgress(AbstractContextManager):
    """A stage's progress per image (or training step) with an ETA (tqdm), and once its first
    ``per`` items are timed one line of what the whole stage will cost (``ESTIMATE_PREFIX``;
    for a stage over a minute), said per ``per`` items as one ``unit`` (a sanity step's images)."""

    def __init__(self, stage: str, total: int, *, device: str, note: str = "",
                 enabled: bool = True, unit: str = "image", per: int = 1):
        self.stage, self.total, self.device, self.note = stage, total, device, note
        self.unit, self.per = unit, max(per, 1)
        self.count, self._said = 0, not enabled
        self._bar = tqdm(total=total, desc=stage, disable=not enabled, mininterval=1.0,
                         unit="img" if unit == "image" or per > 1 else unit)
        self._started = time.perf_counter()

    def tick(self, images: int = 1) -> None:
        """``images`` more are done."""
        if images <= 0:
            return
        self.count += images
        self._bar.update(images)
        if not self._said and self.count >= min(self.per, self.total):
            self._said = True
            each = (time.perf_counter() - self._started) * self.per / self.count
            line = estimate_line(self.stage, each, math.ceil(self.total / self.per), self.device,
                                 self.note, unit=self.unit)
            if line:
                tqdm.write(line, file=sys.stderr)

    def cached(self, images: int) -> None:
        """``images`` were found done (cached): no part of this stage's work."""
        if images > 0:
            self.total -= images
            self._bar.total = self.total
            self._bar.refresh()

    @contextmanager
    def batch(self, images: int) -> Iterator[Callable[[], None]]:
        """A batch of ``images``: yields `tick` for per-image callbacks (XRAI), then ticks
        the images they did not."""
        before = self.count
        yield self.tick
        self.tick(images - (self.count - before))

    def close(self) -> None:
        self._bar.close()

    def __exit__(self, *exc: object) -> None:
        self.close()


def estimate_line(stage: str, each: float, count: int, device: str, note: str = "", *,
                  unit: str = "image", at_least: float = 60.0) -> str | None:
    """``[estimate] XRAI: ~74 s per image x 6 images ≈ 7.4 min on cpu; NOTE`` (``unit``:
    what one ``each`` seconds is spent on), or None for a stage shorter than ``at_least`` s."""
    total = each * count
    if total < at_least:
        return None
    span = f"{total / 60:.1f} min" if total < 3600 else f"{total / 3600:.1f} h"
    seconds = f"{each:.0f}" if each >= 10 else f"{each:.2g}"
    return (f"{ESTIMATE_PREFIX}{stage}: ~{seconds} s per {unit} × {count} {unit}s ≈ {span} "
            f"on {device}" + (f"; {note}" if note else ""))


def load_for(choice: ModelChoice, run: Path | None, *, seed: int, device: str) -> models.LoadedModel:
    """The model a map job reads: a trained run's weights and head, else the choice's own."""
    if run is not None:
        return checkpoints.load_run(run, resolve_device(device))
    return models.load_choice(choice, seed=seed, device=resolve_device(device))


def style_correct(job: MapJob, samples: Sequence[data.Sample], *, batch_size: int = 32,
                  device: str = "cpu") -> dict[str, bool | None] | None:
    """Whether the style head behind a map job (the logit its class maps explain) predicts
    each image's style, ``{image_id: bool}`` (None: no main-style label); None for a job with
    no style head. From the predictions the extraction recorded (`predicted_classes`)."""
    if job.run is None:
        return None
    predicted = predicted_classes(job.store, samples,
                                  lambda: checkpoints.load_run(job.run, resolve_device(device)),
                                  batch_size=batch_size)
    return {s.image_id: STYLES[predicted[s.image_id]] == s.label if s.label in STYLES else None
            for s in samples}


def predicted_classes(store: cache.MapStore, samples: Sequence[data.Sample],
                      load: Callable[[], models.LoadedModel], *, batch_size: int = 32
                      ) -> dict[str, int]:
    """The class the classifier behind a store's maps predicts on each sample, ``{image_id:
    class}``, as the extraction recorded it; images stored without one are predicted once by
    ``load()``'s model and added to the store."""
    predicted = store.predicted()
    todo = [s for s in samples if s.image_id not in predicted]
    if not todo:
        return predicted
    unmapped = [s.image_id for s in todo if s.image_id not in store.image_ids()]
    if unmapped:
        raise KeyError(f"{store.path}: no maps for {len(unmapped)} image(s), e.g. "
                       f"{unmapped[:3]}; extract them first")
    loaded = load()
    with store.writer() as writer:
        for batch in _batches(todo, batch_size):
            pixels = loaded.preprocess([data.load_image(s.path) for s in batch])
            with torch.inference_mode():
                classes = loaded.score(pixels.to(loaded.device)).argmax(dim=-1).tolist()
            writer.put([s.image_id for s in batch], {}, classes)
    return store.predicted()


def _split(items: Sequence, parts: int) -> list[Sequence]:
    """``items`` cut into ``parts`` consecutive runs of near-equal length."""
    bounds = [round(i * len(items) / parts) for i in range(parts + 1)]
    return [items[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def extract_baselines(samples: Sequence[data.Sample], names: Sequence[str], store: cache.MapStore, *,
                      seed: int = 0, batch_size: int = 32, progress: bool = True) -> int:
    """Store the naive baseline maps (method = baseline name, layer 0, one map per image)."""
    done = store.image_ids()
    todo = [s for s in samples if s.image_id not in done]
    if not todo or not names:
        return 0
    with store.writer() as writer, ImageProgress("maps baselines", len(todo), device="cpu",
                                                 enabled=progress) as meter:
        for batch in _batches(todo, batch_size):
            frames = np.stack([np.asarray(BASELINE_GEOMETRY.frame_image(data.load_image(s.path)))
                               for s in batch])
            ids = [s.image_id for s in batch]
            writer.put(ids, {(name, 0): F.adaptive_avg_pool2d(
                torch.from_numpy(baselines.baseline_maps(name, frames, seed, ids))[:, None].float(),
                BASELINE_GRID).numpy().astype(np.float32) for name in names})
            meter.tick(len(batch))
    return len(todo)
