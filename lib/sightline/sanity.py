"""The model-parameter randomisation test (Adebayo et al., *Sanity Checks for Saliency
Maps*, NeurIPS 2018): does a map change when the model's weights are scrambled?

*Units*, in cascade order: ``head`` (the classifier head and every parameter that runs after
the first block starts and lies in no block), the blocks last first (``b{L-1}`` ... ``b0``:
transformer layers, a CNN's Grad-CAM stages, or the children of a timm classifier's Grad-CAM
container), then ``stem`` (what starts before the first block); head or stem is read off one
forward pass. *Cascade* depth ``d`` re-initialises the first ``d`` units; *independent* one
unit. Re-initialisation: a module's own ``reset_parameters()``, else a truncated normal with
std 0.02; unit ``k`` draws under ``torch.manual_seed(unit_seed(seed, k))`` in both modes.
After each step every method is extracted again for the original model's predicted class
(XRAI's segments computed once per image) into its own map store, and each head-mean map is
compared with the original's at ``resolution``² after bilinear upsampling: Spearman's rank
correlation of the maps and of their absolute values, and SSIM (scikit-image's definition:
7 × 7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03) on maps min-max scaled to
[0, 1] per map, data range 1; batched in float64 on the model's device.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import cache, data, extract, registry, saliency
from . import stats as st
from .metrics import upsample
from .models import LoadedModel

MODES = ("cascade", "independent")
METRICS = ("spearman", "spearman_abs", "ssim")
INIT_STD = 0.02
SSIM_WINDOW = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03


class SanityError(ValueError):
    """A randomisation test that cannot run as asked; the message says what to change."""


# --- units and re-initialisation ---------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """One randomised unit: its name and the modules (paths under `holder`) it re-initialises."""

    name: str
    modules: tuple[str, ...]


def holder(model: LoadedModel) -> nn.ModuleDict:
    """The backbone (``module.``) and the head (``head.``) under one root, to name paths."""
    parts = {"module": model.module}
    if model.head is not None:
        parts["head"] = model.head
    return nn.ModuleDict(parts)


def blocks(model: LoadedModel) -> list[nn.Module]:
    """The backbone's blocks in forward order, from the layer lists Grad-CAM and attention
    read (see the module docstring)."""
    arch, module = model.spec.arch, model.module
    if hasattr(arch, "blocks"):
        return arch.blocks(module, model.num_layers)
    if hasattr(arch, "stages"):
        return [getattr(module, stage) for stage in arch.stages]
    if hasattr(arch, "target"):
        container = module.get_submodule(arch.target.split(".")[0])
        return list(container.children())
    raise SanityError(f"{model.spec.key}: its registry entry ({type(arch).__name__}) names no "
                      "blocks: an architecture with `blocks` (transformer), `stages` or a Grad-CAM `target`")


def units(model: LoadedModel) -> list[Unit]:
    """The model's units in cascade order: head, last block, ..., first block, stem."""
    root = holder(model)
    path_of = {id(m): path for path, m in root.named_modules()}
    block_paths = [path_of[id(b)] for b in blocks(model)]
    in_block = {
        path: index
        for index, block in enumerate(block_paths)
        for path, _ in root.get_submodule(block).named_modules(prefix=block)
    }
    started = _forward_order(model, root)
    first_block = started[block_paths[0]]
    head, stem = [], []
    per_block: list[list[str]] = [[] for _ in block_paths]
    for path, module in root.named_modules():
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        if path in in_block:
            per_block[in_block[path]].append(path)
        elif started.get(path, np.inf) < first_block:
            stem.append(path)
        else:
            head.append(path)
    ordered = [Unit("head", tuple(head)),
               *(Unit(f"b{i}", tuple(per_block[i])) for i in reversed(range(len(block_paths)))),
               Unit("stem", tuple(stem))]
    return [unit for unit in ordered if unit.modules]


def _forward_order(model: LoadedModel, root: nn.Module) -> dict[str, int]:
    """When each module first starts its forward in one pass of `LoadedModel.score`."""
    started: dict[str, int] = {}

    def hook(path: str) -> Callable:
        def record(_module: nn.Module, _inputs: Any) -> None:  # None: the inputs stay as they are
            started.setdefault(path, len(started))

        return record

    handles = [m.register_forward_pre_hook(hook(path)) for path, m in root.named_modules()]
    size = model.spec.geometry.size
    try:
        with torch.inference_mode():
            model.score(torch.zeros(1, 3, size, size, device=model.device))
    finally:
        for handle in handles:
            handle.remove()
    return started


def unit_seed(seed: int, position: int) -> int:
    """The torch seed of the unit at ``position`` (0 = head) of the cascade order."""
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


def randomised(model: LoadedModel, plan: Sequence[Unit], positions: Sequence[int],
               seed: int) -> LoadedModel:
    """A copy of ``model`` with the units at ``positions`` of ``plan`` re-initialised."""
    twin = dataclasses.replace(model, module=copy.deepcopy(model.module),
                               head=copy.deepcopy(model.head))
    root = holder(twin)
    devices = sorted({p.device.index or 0 for p in root.parameters() if p.device.type == "cuda"})
    for position in positions:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(unit_seed(seed, position))
            for path in plan[position].modules:
                _reinitialise(root.get_submodule(path))
    return twin


def _reinitialise(module: nn.Module) -> None:
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()
        return
    for parameter in module.parameters(recurse=False):
        nn.init.trunc_normal_(parameter, std=INIT_STD)


# --- steps -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One randomised model: ``mode``, ``depth`` (cascade: units re-initialised; independent:
    the unit's position, 1 = head; original: 0), the deepest / only ``unit`` and the positions."""

    mode: str
    depth: int
    unit: str
    positions: tuple[int, ...]

    @property
    def tag(self) -> str:
        """The step's part of the store variant: ``cascade.d2``, ``independent.b3``."""
        if self.mode == "original":
            return "original"
        return f"cascade.d{self.depth}" if self.mode == "cascade" else f"independent.{self.unit}"


def steps(plan: Sequence[Unit], depths: str | Sequence[int] = "all",
          modes: Sequence[str] = MODES, section: str = "sanity") -> list[Step]:
    """The original, then each mode's steps at ``depths`` (1-based; ``"all"``: every unit).
    Cascade always includes the whole network, the depth the not-model-sensitive flag reads.
    ``section`` names the params section in an error."""
    wrong = [m for m in modes if m not in MODES]
    if wrong:
        raise SanityError(f"{section}.modes: {wrong} unknown; allowed: {list(MODES)}")
    count = len(plan)
    chosen = range(1, count + 1) if depths == "all" else sorted(set(depths))
    outside = [d for d in chosen if not 1 <= d <= count]
    if outside:
        raise SanityError(f"{section}.depths: {outside} outside 1..{count}, the units of this model "
                          f"({', '.join(u.name for u in plan)})")
    result = [Step("original", 0, "original", ())]
    if "cascade" in modes:
        result += [Step("cascade", d, plan[d - 1].name, tuple(range(d)))
                   for d in sorted({*chosen, count})]
    if "independent" in modes:
        result += [Step("independent", d, plan[d - 1].name, (d - 1,)) for d in chosen]
    return result


# --- similarity --------------------------------------------------------------------------
Device = str | torch.device


def _rows(values: Any, device: Device) -> torch.Tensor:
    values = torch.as_tensor(np.asarray(values) if not torch.is_tensor(values) else values)
    return values.to(device, torch.float64).reshape(len(values), -1)


def _ranks(rows: torch.Tensor) -> torch.Tensor:
    """1-based ranks along each row, ties sharing their mean rank (scipy's ``rankdata``), from
    one sort: a run of equal values at sorted positions ``first..last`` ranks ``(first + last)
    / 2 + 1``, ``first`` carried forward from each run's start, ``last`` back from its end."""
    ordered, order = rows.sort(dim=1)
    size = rows.size(1)
    position = torch.arange(size, device=rows.device).expand_as(rows)
    starts = torch.ones_like(rows, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.where(starts, position, 0).cummax(dim=1).values
    last = torch.where(ends, position, size).flip(1).cummin(dim=1).values.flip(1)
    return torch.empty_like(rows).scatter_(1, order, (first + last + 2).to(rows.dtype) / 2)


def spearman(a: Any, b: Any, device: Device = "cpu") -> np.ndarray:
    """Spearman's rank correlation of each pair of maps in two ``(N, ...)`` batches, as
    `scipy.stats.spearmanr` per pair (average ranks for ties; NaN where a map is constant),
    batched on ``device``."""
    ranks_a, ranks_b = _ranks(_rows(a, device)), _ranks(_rows(b, device))
    ranks_a -= ranks_a.mean(dim=1, keepdim=True)
    ranks_b -= ranks_b.mean(dim=1, keepdim=True)
    scale = ((ranks_a**2).sum(dim=1) * (ranks_b**2).sum(dim=1)).sqrt()
    rho = ((ranks_a * ranks_b).sum(dim=1) / scale).clamp(-1, 1)
    return torch.where(scale > 0, rho, torch.nan).cpu().numpy()


def ssim(a: Any, b: Any, device: Device = "cpu") -> np.ndarray:
    """Mean SSIM of each pair of ``(N, H, W)`` maps in [0, 1], batched on ``device``, as
    `skimage.metrics.structural_similarity` with data range 1 and its defaults (7 × 7 uniform
    window, sample covariance, reflected borders, the window's half-width cropped before the mean)."""
    if np.shape(a) != np.shape(b) or len(np.shape(a)) != 3 or min(np.shape(a)[1:]) < SSIM_WINDOW:
        raise ValueError(f"ssim takes two (N, H, W) batches with H, W >= {SSIM_WINDOW}, "
                         f"got {np.shape(a)} and {np.shape(b)}")
    x, y = (_rows(v, device).reshape(np.shape(a)) for v in (a, b))
    pad = (SSIM_WINDOW - 1) // 2

    def mean(values: torch.Tensor) -> torch.Tensor:  # scipy's uniform_filter, mode "reflect"
        for axis in (1, 2):
            edge = values.size(axis)
            values = torch.cat([values.narrow(axis, 0, pad).flip(axis), values,
                                values.narrow(axis, edge - pad, pad).flip(axis)], dim=axis)
        return torch.nn.functional.avg_pool2d(values.unsqueeze(1), SSIM_WINDOW, 1).squeeze(1)

    norm = SSIM_WINDOW**2 / (SSIM_WINDOW**2 - 1)
    ux, uy = mean(x), mean(y)
    vx = norm * (mean(x * x) - ux * ux)
    vy = norm * (mean(y * y) - uy * uy)
    vxy = norm * (mean(x * y) - ux * uy)
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    index = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return index[:, pad:-pad, pad:-pad].mean(dim=(1, 2)).cpu().numpy()


def unit_range(maps: Any, device: Device = "cpu") -> np.ndarray:
    """Min-max scale each ``(N, ...)`` map to [0, 1]; a constant map becomes all zero."""
    return _unit_range(_rows(maps, device)).reshape(np.shape(maps)).cpu().numpy()


def _unit_range(rows: torch.Tensor) -> torch.Tensor:
    low, high = rows.amin(dim=1, keepdim=True), rows.amax(dim=1, keepdim=True)
    return torch.where(high > low, (rows - low) / (high - low), 0.0)


def similarity(original: np.ndarray, changed: np.ndarray, resolution: int,
               device: Device = "cpu") -> dict[str, np.ndarray]:
    """Per-map ``spearman``, ``spearman_abs`` and ``ssim`` of two ``(N, h, w)``
    map batches, both upsampled to ``resolution``² first (SSIM on per-map min-max scaled
    maps), batched on ``device``. Non-negative maps have ``spearman_abs == spearman``."""
    a, b = upsample(original, resolution), upsample(changed, resolution)
    rho = spearman(a, b, device)
    signed = (a < 0).any() or (b < 0).any()
    scaled = [_unit_range(_rows(m, device)).reshape(m.shape) for m in (a, b)]
    return {"spearman": rho,
            "spearman_abs": spearman(np.abs(a), np.abs(b), device) if signed else rho.copy(),
            "ssim": ssim(*scaled, device=device)}


# --- the test ----------------------------------------------------------------------------
class SanityResult(NamedTuple):
    """Per-image similarities (long), and one row per step: its store, units and seed."""

    similarities: pd.DataFrame
    steps: pd.DataFrame


def randomisation_test(model: LoadedModel, samples: Sequence[data.Sample], *, cache_dir: str | Path,
                       dataset_id: str, name: str, variant: str, key: str = "",
                       methods: Sequence[str] | None = None, depths: str | Sequence[int] = "all",
                       modes: Sequence[str] = MODES, seed: int = 0, resolution: int = 64,
                       batch_size: int = 16, xrai: saliency.XraiSettings | None = None,
                       section: str = "sanity", progress: bool = True) -> SanityResult:
    """Run the cascading / independent randomisation test of ``model`` on ``samples``, maps
    cached per step in ``extract.store_for(cache_dir, dataset_id, name, f"{variant}.{step.tag}")``
    keyed by ``key`` (the weights), XRAI's settings and, once randomised, the seed. ``methods``
    and ``xrai`` pass to `saliency.extract`; ``section`` names the params section in an error."""
    if not samples:
        raise SanityError(f"{section}: the randomisation test needs at least one image")
    plan = units(model)
    schedule = steps(plan, depths, modes, section)
    inputs = _Inputs(model, methods)
    uses_xrai = "xrai" in (model.methods if methods is None else methods)
    if uses_xrai:
        xrai = xrai or saliency.XraiSettings()
        key = ".".join(part for part in (key, f"xrai{xrai.steps}{xrai.algorithm}") if part)
    stores = {step: _store(cache_dir, dataset_id, name, variant, key, seed, step)
              for step in schedule}
    counts = {}
    original = schedule[0]
    note = (f"XRAI ({xrai.steps} steps, {xrai.algorithm}) is most of it; " if uses_xrai and xrai
            else "") + f"{section}.depths, modes or max_images lower it"
    with extract.ImageProgress(f"{section} {name}", len(schedule) * len(samples),
                               device=str(model.device), note=note, enabled=progress,
                               unit="step", per=len(samples)) as meter:
        counts[original] = _fill(stores[original], lambda: model, inputs, samples, methods,
                                 batch_size, xrai, meter)
        stored = {method for method, _ in stores[original].keys()}
        methods = [m for m in model.methods if m in stored]
        for step in schedule[1:]:
            counts[step] = _fill(stores[step],
                                 lambda s=step: randomised(model, plan, s.positions, seed),
                                 inputs, samples, methods, batch_size, xrai, meter)
    ids = [s.image_id for s in samples]
    frames = [_compare(stores[original], stores[step], ids, resolution, step, model.device)
              for step in schedule]
    similarities = pd.concat(frames, ignore_index=True).assign(model=name, variant=variant)
    step_rows = pd.DataFrame([
        {"model": name, "variant": variant, "key": model.spec.key, "mode": step.mode, "depth": step.depth,
         "unit": step.unit, "units": " ".join(plan[p].name for p in step.positions),
         "seed": seed, "unit_seeds": " ".join(str(unit_seed(seed, p)) for p in step.positions),
         "store": str(stores[step].path), "extracted": counts[step], "images": len(ids)}
        for step in schedule
    ])
    return SanityResult(similarities, step_rows)


def randomisation_version() -> str:
    """Hash of the code that decides which weights a step re-initialises and how: part of
    every randomised store's key, so a change there recomputes those maps (and only those)."""
    functions = (holder, blocks, units, _forward_order, unit_seed, randomised, _reinitialise)
    source = "".join(inspect.getsource(f) for f in functions)
    return hashlib.sha256(source.encode()).hexdigest()[:8]


def _store(cache_dir: str | Path, dataset_id: str, name: str, variant: str, key: str, seed: int,
           step: Step) -> cache.MapStore:
    if step.mode != "original":
        tag = f"r{seed}-{randomisation_version()}"
        key = f"{key}.{tag}" if key else tag
    return extract.store_for(cache_dir, dataset_id, name, f"{variant}.{step.tag}", key=key)


class _Inputs:
    """Each image's model input, (for class-specific methods) the class the original model
    predicts for it and (for XRAI) its segments, which depend on the input alone: computed
    once on first use and shared by every step."""

    def __init__(self, original: LoadedModel, methods: Sequence[str] | None):
        asked = original.methods if methods is None else methods
        self.original = original
        # a method that explains a class logit keeps the original prediction as its target
        self.targeted = original.is_classifier and any(registry.METHODS[m].explains_class
                                                       for m in asked)
        self.xrai = "xrai" in asked
        self._memo: dict[str, tuple[torch.Tensor, int | None, list[np.ndarray] | None]] = {}

    def batch(self, samples: Sequence[data.Sample]) -> tuple[
            torch.Tensor, list[int] | None, list[list[np.ndarray]] | None]:
        """``(B, 3, S, S)`` inputs, the target classes and XRAI's segments (None: the methods
        take none)."""
        new = [s for s in samples if s.image_id not in self._memo]
        if new:
            pixels = self.original.preprocess([data.load_image(s.path) for s in new])
            classes = [None] * len(new)
            if self.targeted:
                with torch.inference_mode():
                    classes = self.original.score(pixels).argmax(dim=-1).tolist()
            segments = ([saliency.xrai_segments(p.permute(1, 2, 0).numpy()) for p in pixels]
                        if self.xrai else [None] * len(new))
            self._memo.update(zip([s.image_id for s in new],
                                  zip(pixels, classes, segments, strict=True), strict=True))
        pixels, classes, segments = zip(*(self._memo[s.image_id] for s in samples), strict=True)
        return (torch.stack(pixels), list(classes) if self.targeted else None,
                list(segments) if self.xrai else None)


def _fill(store: cache.MapStore, build: Callable[[], LoadedModel], inputs: _Inputs,
          samples: Sequence[data.Sample], methods: Sequence[str] | None, batch_size: int,
          xrai: saliency.XraiSettings | None, meter: extract.ImageProgress) -> int:
    """Extract the maps ``store`` lacks with the model ``build`` makes (only if needed),
    ticking ``meter`` per image; returns how many images were extracted."""
    have_all = methods is None or set(methods) <= {m for m, _ in store.keys()}
    done = store.image_ids() if have_all else set()
    todo = [s for s in samples if s.image_id not in done]
    meter.cached(len(samples) - len(todo))
    if not todo:
        return 0
    model = build()
    with store.writer() as writer:
        for batch in extract._batches(todo, batch_size):
            pixels, classes, segments = inputs.batch(batch)
            with meter.batch(len(batch)) as on_image:
                maps = saliency.extract(model, pixels, methods, classes=classes, xrai=xrai,
                                        segments=segments, on_image=on_image)
            writer.put([s.image_id for s in batch], maps)
    return len(todo)


def _compare(original: cache.MapStore, changed: cache.MapStore, ids: Sequence[str],
             resolution: int, step: Step, device: Device) -> pd.DataFrame:
    """Long rows (mode, depth, unit, method, layer, image_id, metric, value) of one step."""
    frames = []
    for method, layer in original.keys():
        _, before = original.read(method, layer, ids)
        _, after = changed.read(method, layer, ids)
        for metric, values in similarity(before[:, -1], after[:, -1], resolution,
                                         device).items():
            frames.append(pd.DataFrame({
                "mode": step.mode, "depth": step.depth, "unit": step.unit, "method": method,
                "layer": layer, "image_id": list(ids), "metric": metric, "value": values,
            }))
    return pd.concat(frames, ignore_index=True)


# --- summaries ---------------------------------------------------------------------------

SUMMARY_KEYS = ["model", "variant", "mode", "depth", "unit", "method", "layer", "metric"]


def summarise(similarities: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean and percentile-bootstrap 95% CI over images per (model, variant, mode, depth,
    unit, method, layer, metric); ``n`` counts the images with a defined value. The
    original (depth 0) is listed under both modes, so each curve starts at it."""
    original = similarities[similarities["mode"] == "original"]
    modes = [m for m in MODES if m in set(similarities["mode"])]
    curves = pd.concat([similarities[similarities["mode"] != "original"],
                        *(original.assign(mode=m) for m in modes)], ignore_index=True)
    rows = []
    for keys, group in curves.groupby(SUMMARY_KEYS, sort=True):
        values = group["value"].to_numpy()
        low, high = st.bootstrap_ci(values, n_boot=n_boot, seed=seed)
        rows.append({**dict(zip(SUMMARY_KEYS, keys, strict=True)),
                     "mean": float(np.nanmean(values)) if np.isfinite(values).any() else np.nan,
                     "ci_low": low, "ci_high": high, "n": int(np.isfinite(values).sum())})
    return pd.DataFrame(rows)


def sensitivity_flags(summary: pd.DataFrame, *, threshold: float = 0.5,
                      metric: str = "spearman") -> pd.DataFrame:
    """Per (model, method): the layer whose maps stay most similar after the whole network
    is re-initialised (the deepest cascade step), and ``not_model_sensitive`` when its mean
    ``metric`` exceeds ``threshold``."""
    cascade = summary[(summary["mode"] == "cascade") & (summary["metric"] == metric)]
    full = cascade[cascade["depth"] == cascade.groupby(["model", "variant"])["depth"]
                   .transform("max")]
    columns = ["model", "method", "variant", "layer", "depth", "metric", "mean", "ci_low",
               "ci_high", "n"]
    if full.empty:
        return pd.DataFrame(columns=[*columns, "not_model_sensitive"])
    worst = full.loc[full.fillna({"mean": -np.inf}).groupby(["model", "variant", "method"])
                     ["mean"].idxmax()]
    flags = worst[columns].reset_index(drop=True)
    return flags.assign(not_model_sensitive=flags["mean"] > threshold)


# --- a study's models --------------------------------------------------------------------
def subsample(samples: Sequence[data.Sample], count: int | None, seed: int) -> list[data.Sample]:
    """``count`` samples drawn with ``seed`` (all when ``count`` is None), in id order."""
    chosen = list(samples)
    if count is not None and count < len(chosen):
        chosen = random.Random(seed).sample(chosen, count)
    return sorted(chosen, key=lambda s: s.image_id)


def targets(settings: Any, names: Mapping[str, str], seed: int) -> list[tuple[str, str]]:
    """The (model name, variant) pairs ``settings`` (`config.Sanity`) asks for: ``"all"``
    is every model's frozen variant; a strategy becomes its run's variant (seed ``seed``)."""
    from .finetune import variant_name  # finetune builds on extract

    if settings.models == "all":
        return [(name, "frozen") for name in names.values()]
    return [(names[m.key], m.variant if m.variant == "frozen" else variant_name(m.variant, seed))
            for m in settings.models]


def run_study(settings: Any, jobs: Mapping[tuple[str, str], extract.MapJob],
              samples: Sequence[data.Sample], names: Mapping[str, str], *, cache_dir: str | Path,
              dataset_id: str, seed: int, device: str = "cpu", batch_size: int = 16,
              n_boot: int = 2000) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The test on every model `targets` lists, read from its map job (``finetune.map_jobs``):
    (summary, flags, steps) tables. ``"all"`` skips a model with no frozen maps."""
    from .finetune import read_manifest

    chosen = subsample(samples, settings.max_images, settings.seed)
    summaries, all_steps = [], []
    for name, variant in targets(settings, names, seed):
        job = jobs.get((name, variant))
        if job is None:
            if settings.models == "all":
                continue
            raise SanityError(
                f"sanity.models: no maps of {name} variant {variant!r} (have: "
                f"{sorted(v for n, v in jobs if n == name)}); add its strategy to "
                "finetune.strategies or pick another variant")
        key = read_manifest(job.run)["key"] if job.run is not None else ""
        model = extract.load_for(job.choice, job.run, seed=seed, device=device)
        result = randomisation_test(
            model, chosen, cache_dir=cache_dir, dataset_id=dataset_id, name=name,
            variant=variant, key=key, methods=job.methods, depths=settings.depths,
            modes=settings.modes, seed=settings.seed, resolution=settings.resolution,
            batch_size=batch_size)
        summaries.append(summarise(result.similarities, n_boot=n_boot, seed=seed))
        all_steps.append(result.steps)
    if not summaries:
        empty = pd.DataFrame(columns=[*SUMMARY_KEYS, "mean", "ci_low", "ci_high", "n"])
        return empty, sensitivity_flags(empty), pd.DataFrame()
    summary = pd.concat(summaries, ignore_index=True)
    flags = sensitivity_flags(summary, threshold=settings.threshold)
    return summary, flags, pd.concat(all_steps, ignore_index=True)
