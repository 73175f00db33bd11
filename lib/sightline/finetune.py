"""Q2 fine-tuning: linear probe, LoRA and full fine-tuning on the style-labelled pool.

A *run* is one (model choice, strategy, seed). `train_run` trains it as a pure function of
its arguments: it loads the data and the model itself, writes everything under a
content-keyed folder and returns the run's manifest, so a scheduler can run it in another
process or on another machine. A finished run is reused (its manifest exists); a killed
run resumes from its last completed epoch and ends with the same weights as an
uninterrupted one (each epoch's randomness is seeded by (seed, epoch)).

Strategies (the head is always a linear layer on the backbone's pooled embedding, the
one `LoadedModel.score` and Grad-CAM use):

- ``linear_probe``: backbone frozen. The embeddings of the train and val images are
  computed once (eval frame, no augmentation, the usual linear-probe protocol) and only
  the head is trained; the backbone's maps are bit-identical to the frozen model's.
- ``lora``: peft LoRA adapters on the registry's target modules (query / value
  projections) plus the head; the backbone's own weights stay as they were. Saved: the
  adapter and the head.
- ``full``: every weight, the backbone at a lower learning rate than the head. From
  random weights this is training from scratch. Saved: all weights.

Recipe (defaults in `config.Finetune`): AdamW, cosine schedule with linear warm-up,
gradient clipping, class-weighted cross-entropy (the pool is imbalanced), random resized
crop + horizontal flip + colour jitter on the model's input frame; mixed precision and
gradient accumulation on a GPU; the best epoch by validation accuracy (ties: macro-F1)
is kept, with optional early stopping.

The train/val split (`make_split`) is stratified by style and church-disjoint, one per
dataset and seed, shared by every model and strategy. The annotated images and every
image of their churches never enter it (`check_no_leak`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2 as T
from tqdm import tqdm

from . import data, extract, frames, geometry, models, saliency, variants
from . import execution as engine
from .config import STRATEGIES, Execution, Finetune, ModelChoice
from .frames import Item
from .variants import ADAPTER_DIR as _ADAPTER
from .variants import BACKBONE_FILE as _BACKBONE
from .variants import HEAD_FILE as _HEAD
from .variants import MANIFEST, FinetuneError, checkpoint_hash, load_run, read_manifest
from .variants import backbone as _backbone
from .variants import embed as _embed
from .variants import feature_dim as _feature_dim
from .variants import quiet_peft as _quiet_peft

PROGRESS_PREFIX = "[train] "  # starts each per-epoch line (stderr); builds drop them from notebooks

STYLES: tuple[str, ...] = tuple(data.MAIN_STYLES.values())
_STATE = "state.pt"
# settings that change where or how fast a run trains, not what it learns
_NOT_KEYED = ("device", "num_workers", "checkpoint_dir", "strategies", "seeds")



# --- the split ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """A stratified, church-disjoint train/val split of one dataset's pool, for one seed."""

    dataset_id: str
    seed: int
    val_fraction: float
    train: tuple[Item, ...]
    val: tuple[Item, ...]

    @property
    def id(self) -> str:
        """Hash of the dataset, seed and the exact (image, label) lists."""
        payload = [self.dataset_id, self.seed, self.val_fraction, self.train, self.val]
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:12]

    def to_json(self) -> dict:
        return {"id": self.id, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, record: dict) -> Split:
        fields = {k: record[k] for k in ("dataset_id", "seed", "val_fraction")}
        lists = {k: tuple(tuple(item) for item in record[k]) for k in ("train", "val")}
        split = cls(**fields, **lists)
        if "id" in record and record["id"] != split.id:
            raise FinetuneError(f"split record {record['id']} does not match its contents")
        return split

    def save(self, folder: Path) -> Path:
        """Write ``split-s<seed>-<id>.json`` under ``folder`` (the record every run cites)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"split-s{self.seed}-{self.id}.json"
        if not path.exists():
            _write_json(path, self.to_json())
        return path


def check_no_leak(image_ids: Sequence[str], annotated: Sequence[str]) -> None:
    """Raise if any image, or any image of a church, that is annotated is among ``image_ids``."""
    annotated_churches = {data.church_of(i) for i in annotated}
    leaks = sorted(i for i in image_ids if data.church_of(i) in annotated_churches)
    if leaks:
        raise data.DataError(
            f"{len(leaks)} training/validation images are annotated or share a church with an "
            f"annotated image (e.g. {leaks[:3]}); the annotated images are the evaluation set "
            "and must never be trained on. Fix the split files or the pool."
        )


def make_split(wc: data.WikiChurches, dataset_id: str, seed: int, val_fraction: float) -> Split:
    """Split the pool's train + val images (the dataset's test split stays out) anew.

    Per style, the style's churches in a seeded random order fill the validation set
    until it holds ``round(val_fraction * n_style)`` images; the rest train.
    """
    pool = wc.pool[wc.pool["split"].isin(["train", "val"])].sort_values("image_id")
    annotated = [s.image_id for s in wc.samples] + list(wc.report.get("annotated_moved_to_test", []))
    check_no_leak(list(pool["image_id"]), annotated)
    rng = np.random.default_rng([seed, 9])
    church_split: dict[str, str] = {}
    for style in STYLES:
        rows = pool[pool["style"] == style]
        churches = [c for c in sorted(rows["church_id"].unique()) if c not in church_split]
        per_church = rows.groupby("church_id").size()
        target, taken = round(val_fraction * len(rows)), 0
        for church in rng.permutation(np.array(churches, dtype=object)):
            church_split[church] = "val" if taken < target else "train"
            taken += int(per_church[church]) if taken < target else 0
    items = {"train": [], "val": []}
    for row in pool.itertuples():
        items[church_split[row.church_id]].append(
            (row.image_id, str(row.path), STYLES.index(row.style))
        )
    for part in ("train", "val"):
        missing = sorted(set(STYLES) - {STYLES[label] for *_, label in items[part]})
        if missing:
            raise FinetuneError(
                f"the {part} split of {wc.root} (seed {seed}) has no image of {missing}: "
                "the pool is too small to fine-tune on; add images or lower val_fraction"
            )
    return Split(dataset_id, seed, val_fraction, tuple(items["train"]), tuple(items["val"]))


def test_items(wc: data.WikiChurches) -> tuple[Item, ...]:
    """The pool's ``test`` split as ``(image_id, path, label)``: never trained on, never
    used to pick an epoch, so accuracy on it is an honest held-out number."""
    pool = wc.pool[wc.pool["split"] == "test"].sort_values("image_id")
    return tuple((r.image_id, str(r.path), STYLES.index(r.style)) for r in pool.itertuples())


# --- runs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One planned fine-tuning run."""

    choice: ModelChoice
    strategy: str
    seed: int

    @property
    def variant(self) -> str:
        return variant_name(self.strategy, self.seed)


def variant_name(strategy: str, seed: int) -> str:
    """How a fine-tuned model is named in the ``variant`` column: ``lora.s0``, ``full.s2``."""
    return f"{strategy}.s{seed}"


def strategy_of(variant: str) -> str:
    """The strategy of a variant name (``frozen`` / ``baseline`` stay as they are)."""
    return variant.split(".s", 1)[0]


def plan(choices: Sequence[ModelChoice], finetune: Finetune, seed: int) -> list[Run]:
    """Every (model, strategy, seed) the params ask for, checked against the registry."""
    runs = []
    for choice in choices:
        for strategy in finetune.strategies.get(choice.key, ()):
            _check_strategy(choice, strategy)
            runs += [Run(choice, strategy, seed + i) for i in range(finetune.seeds)]
    return runs


def _check_strategy(choice: ModelChoice, strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise FinetuneError(f"unknown strategy {strategy!r}; strategies: {list(STRATEGIES)}")
    if strategy == "lora" and models.spec_for(choice).arch.lora is None:
        raise FinetuneError(
            f"model {choice.key!r} has no LoRA defaults in the registry (its family is "
            "fine-tuned by linear probe or in full); drop 'lora' for it in finetune.strategies"
        )


def code_version() -> str:
    """Hash of the code that decides what a run learns; part of every run's key."""
    return extract.code_hash(geometry, models, variants, data, frames, sys.modules[__name__])


def recipe(finetune: Finetune, choice: ModelChoice, strategy: str) -> dict[str, Any]:
    """The settings that determine what a run learns (LoRA defaults filled in)."""
    settings = finetune.model_dump(mode="json", exclude=set(_NOT_KEYED))
    lora = models.spec_for(choice).arch.lora
    if strategy == "lora":
        settings["lora_targets"] = list(lora.targets)
        for name in ("rank", "alpha", "dropout"):
            if settings[f"lora_{name}"] is None:
                settings[f"lora_{name}"] = getattr(lora, name)
    else:
        settings = {k: v for k, v in settings.items() if not k.startswith("lora_")}
    if strategy != "full":
        settings.pop("backbone_lr_full")
    if strategy != "lora":
        settings.pop("backbone_lr_lora")
    if strategy == "linear_probe":  # embeddings are computed once, unaugmented
        for name in ("crop_scale", "hflip", "color_jitter"):
            settings.pop(name)
    return settings


def run_dir(out_dir: str | Path, run: Run, split: Split, finetune: Finetune, model_seed: int) -> Path:
    """The run's content-keyed folder: dataset, model, strategy, seed, recipe, split, code."""
    settings = recipe(finetune, run.choice, run.strategy)
    payload = [run.choice.model_dump(mode="json", exclude_none=True), run.strategy, run.seed,
               model_seed, settings, split.id, code_version()]
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    name = f"{extract.model_name(run.choice)}__{run.variant}__{key}"
    return Path(out_dir) / split.dataset_id[:16] / name


# --- data -----------------------------------------------------------------------------------


def _transforms(spec: models.ModelSpec, finetune: Finetune, train: bool) -> T.Compose:
    """Per image: the training crop and flip (``train``, uint8 kept: the float conversion,
    colour jitter and normalisation of a training batch are `_augment_batch`'s, one pass over
    the whole batch); evaluation frames are converted and normalised here."""
    size = spec.geometry.size
    if train:
        steps: list[Callable] = [T.RandomResizedCrop(size, scale=tuple(finetune.crop_scale),
                                                     antialias=True)]
        if finetune.hflip:
            steps.append(T.RandomHorizontalFlip())
        return T.Compose(steps)
    return T.Compose([T.ToDtype(torch.float32, scale=True), T.Normalize(spec.mean, spec.std)])


_LUMA = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def color_jitter(images: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor,
                 saturation: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_brightness``, ``adjust_contrast`` and ``adjust_saturation``
    (in that order) on a batch of [0, 1] images, with one factor per image ((B,) each)."""
    def grey(x: torch.Tensor) -> torch.Tensor:
        r, g, b = x.unbind(dim=1)
        return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)

    def blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        factor = factor.view(-1, 1, 1, 1)
        return (factor * x + (1 - factor) * other).clamp_(0, 1)

    x = (images * brightness.view(-1, 1, 1, 1)).clamp_(0, 1)
    x = blend(x, grey(x).mean(dim=(-3, -2, -1), keepdim=True), contrast)
    return blend(x, grey(x), saturation)


def _augment_batch(spec: models.ModelSpec, finetune: Finetune) -> Callable:
    """A training batch (uint8) to [0, 1] floats, its colour jitter (factors uniform in
    [1 − c, 1 + c], drawn per image from the epoch's seeded generator) and normalisation,
    vectorised over the batch."""
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    c = finetune.color_jitter

    def augment(images: torch.Tensor) -> torch.Tensor:
        images = images.float().div_(255)
        if c:
            low, high = max(0.0, 1 - c), 1 + c
            factors = torch.empty(3, len(images)).uniform_(low, high)
            images = color_jitter(images, *factors)
        return (images - mean.to(images.device)) / std.to(images.device)

    return augment


# --- models ---------------------------------------------------------------------------------


def _lora_config(settings: dict) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=settings["lora_rank"],
        lora_alpha=settings["lora_alpha"],
        lora_dropout=settings["lora_dropout"],
        target_modules=settings["lora_targets"],
    )


def evaluate_run(run: str | Path | dict, items: Sequence[Item], *, batch_size: int = 32,
                 device: str = "cpu") -> dict[str, float]:
    """Accuracy and macro-F1 of a trained run's style predictions on ``items`` (e.g.
    `test_items`), read through the same frame as its maps."""
    if not items:
        raise FinetuneError("no images to evaluate on (the dataset's pool has no test split?)")
    loaded = load_run(run, device)
    batches = (
        (loaded.preprocess([data.load_image(Path(path)) for _, path, _ in chunk]),
         torch.tensor([label for *_, label in chunk]))
        for chunk in (items[i:i + batch_size] for i in range(0, len(items), batch_size))
    )
    accuracy, f1 = _evaluate(loaded.score, loaded.module, loaded.head, batches, device)
    return {"accuracy": accuracy, "macro_f1": f1, "n": len(items),
            "correct": round(accuracy * len(items))}


# --- training -------------------------------------------------------------------------------


def macro_f1(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Unweighted mean over classes of F1 (a class absent from both counts as F1 = 0)."""
    scores = []
    for c in range(n_classes):
        tp = np.sum((predicted == c) & (truth == c))
        denominator = np.sum(predicted == c) + np.sum(truth == c)
        scores.append(2 * tp / denominator if denominator else 0.0)
    return float(np.mean(scores))


def class_weights(labels: Sequence[int], n_classes: int) -> torch.Tensor:
    """``n / (k * n_c)`` per class, so every class weighs the same in the loss."""
    counts = np.bincount(np.asarray(labels), minlength=n_classes).astype(np.float64)
    if np.any(counts == 0):
        raise FinetuneError(f"a class has no training image (counts {counts.tolist()})")
    return torch.tensor(len(labels) / (n_classes * counts), dtype=torch.float32)


def _epoch_seed(seed: int, epoch: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{epoch}".encode()).digest()[:4], "little")


def _save_state(path: Path, state: dict) -> None:
    """Write the resume state atomically (a kill leaves the previous epoch's state)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _amp(device: str) -> tuple[torch.autocast | None, torch.amp.GradScaler | None]:
    """bf16 autocast where the GPU has it, else fp16 with a gradient scaler; none on CPU."""
    if device != "cuda":
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


def train_run(
    choice: ModelChoice,
    strategy: str,
    seed: int,
    split: Split,
    finetune: Finetune,
    out_dir: str | Path,
    *,
    model_seed: int = 0,
    progress: bool = True,
) -> dict:
    """Train one run (or reuse / resume it) and return its manifest.

    ``model_seed`` builds random-weight backbones exactly as the frozen model is built, so
    the untrained model is the run's starting point.
    """
    run = Run(choice, strategy, seed)
    _check_strategy(choice, strategy)
    folder = run_dir(out_dir, run, split, finetune, model_seed)
    if (folder / MANIFEST).is_file():
        return read_manifest(folder)
    folder.mkdir(parents=True, exist_ok=True)
    split_path = split.save(Path(out_dir) / split.dataset_id[:16] / "splits")
    settings = recipe(finetune, choice, strategy)
    device = extract.resolve_device(finetune.device)
    started = time.perf_counter()

    loaded = _backbone(choice, model_seed, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(_feature_dim(loaded), len(STYLES)).to(device)
    module = loaded.module
    if strategy != "linear_probe":  # the probe's embeddings come from the model as extracted
        loaded.spec.arch.for_training(module)
    if strategy == "lora":
        from peft import get_peft_model

        with _quiet_peft():
            module = get_peft_model(module, _lora_config(settings))
        loaded = dataclasses.replace(loaded, module=module)
    elif strategy == "linear_probe":
        module.requires_grad_(False)
    backbone_params = [p for p in module.parameters() if p.requires_grad]
    backbone_lr = {"full": finetune.backbone_lr_full, "lora": finetune.backbone_lr_lora}
    groups = [{"params": list(head.parameters()), "lr": finetune.head_lr}]
    if backbone_params:
        groups.append({"params": backbone_params, "lr": backbone_lr[strategy]})
    optimiser = torch.optim.AdamW(groups, weight_decay=finetune.weight_decay)

    train_labels = [label for *_, label in split.train]
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(train_labels, len(STYLES)).to(device))
    paths = [path for _, path, _ in (*split.train, *split.val)]
    stored = frames.ensure_frames(Path(out_dir) / split.dataset_id[:16] / "frames", paths,
                                  loaded.spec.geometry, workers=finetune.num_workers,
                                  progress=progress)

    def frame_set(items: Sequence[Item], train: bool) -> frames.FrameSet:
        return frames.FrameSet(stored, paths, items, _transforms(loaded.spec, finetune, train))

    if strategy == "linear_probe":
        loader, val_loader = _embedding_loaders(loaded, split, finetune, frame_set, progress)
        forward = head
    else:
        train_set, val_set = frame_set(split.train, True), frame_set(split.val, False)
        loader = _loader(train_set, finetune, shuffle=True)
        val_loader = _loader(val_set, finetune, shuffle=False)
        augment = _augment_batch(loaded.spec, finetune)

        def forward(pixels: torch.Tensor) -> torch.Tensor:
            return head(_embed(loaded, pixels))

    steps_per_epoch = math.ceil(len(loader) / finetune.accumulation)
    total = steps_per_epoch * finetune.epochs
    from transformers import get_cosine_schedule_with_warmup

    schedule = get_cosine_schedule_with_warmup(optimiser, round(finetune.warmup * total), total)
    autocast, scaler = _amp(device)
    trainable = _trainable(module, strategy)

    state_path = folder / _STATE
    history: list[dict] = []
    best: dict | None = None
    first_epoch, elapsed_before = 0, 0.0
    if state_path.is_file():  # resume after the last completed epoch
        state = torch.load(state_path, map_location=device, weights_only=False)
        module.load_state_dict(state["backbone"], strict=False)
        head.load_state_dict(state["head"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        if scaler is not None:
            scaler.load_state_dict(state["scaler"])
        history, best = state["history"], state["best"]
        first_epoch, elapsed_before = len(history), state["elapsed"]

    meter = extract.ImageProgress(  # every step left, with an ETA; the cost from the first
        f"train {extract.model_name(choice)} {run.variant}",
        len(loader) * (finetune.epochs - first_epoch), device=device, enabled=progress,
        unit="step", note="fewer finetune.epochs or strategies lower it")
    for epoch in range(first_epoch, finetune.epochs):
        torch.manual_seed(_epoch_seed(seed, epoch))
        if strategy != "linear_probe":
            module.train()
        head.train()
        losses = []
        epoch_started = time.perf_counter()
        for step, (inputs, labels) in enumerate(loader):
            inputs, labels = inputs.to(device), labels.to(device)
            if strategy != "linear_probe":
                inputs = augment(inputs)
            with autocast or _nothing():
                loss = loss_fn(forward(inputs), labels) / finetune.accumulation
            (scaler.scale(loss) if scaler else loss).backward()
            losses.append(loss.item() * finetune.accumulation)
            if (step + 1) % finetune.accumulation == 0 or step + 1 == len(loader):
                if scaler:
                    scaler.unscale_(optimiser)
                nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]],
                                         finetune.clip_norm)
                if scaler:
                    scaler.step(optimiser)
                    scaler.update()
                else:
                    optimiser.step()
                optimiser.zero_grad(set_to_none=True)
                schedule.step()
            meter.tick()
        train_seconds = time.perf_counter() - epoch_started
        accuracy, f1 = _evaluate(forward, module, head, val_loader, device)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                        "val_accuracy": accuracy, "val_macro_f1": f1,
                        "train_seconds": round(train_seconds, 3)})
        if best is None or (accuracy, f1) > (best["val_accuracy"], best["val_macro_f1"]):
            best = {"epoch": epoch + 1, "val_accuracy": accuracy, "val_macro_f1": f1,
                    "backbone": _copy(trainable()), "head": _copy(head.state_dict())}
        if progress:  # the console's (stderr) record; a saved notebook keeps the summary table
            tqdm.write(f"{PROGRESS_PREFIX}{extract.model_name(choice)} {run.variant} epoch "
                       f"{epoch + 1}/{finetune.epochs}: loss {history[-1]['train_loss']:.3f}, "
                       f"val accuracy {accuracy:.3f}, macro-F1 {f1:.3f}", file=sys.stderr)
        _save_state(state_path, {
            "backbone": trainable(), "head": head.state_dict(),
            "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict() if scaler else None, "history": history,
            "best": best, "elapsed": elapsed_before + time.perf_counter() - started,
        })
        if finetune.patience and epoch + 1 - best["epoch"] >= finetune.patience:
            break
    meter.close()

    module.load_state_dict(best["backbone"], strict=False)
    head.load_state_dict(best["head"])
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, folder / _HEAD)
    if strategy == "full":
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, folder / _BACKBONE)
    elif strategy == "lora":
        module.save_pretrained(folder / _ADAPTER)
    n_params = sum(p.numel() for p in module.parameters()) + sum(
        p.numel() for p in head.parameters())
    manifest = {
        "dir": str(folder),
        "key": folder.name.rsplit("__", 1)[-1],
        "model": {"name": extract.model_name(choice),
                  "choice": choice.model_dump(mode="json", exclude_none=True)},
        "strategy": strategy,
        "variant": run.variant,
        "seed": seed,
        "model_seed": model_seed,
        "params": settings,
        "split": {"id": split.id, "seed": split.seed, "file": str(split_path),
                  "n_train": len(split.train), "n_val": len(split.val)},
        "best_epoch": best["epoch"],
        "val_accuracy": best["val_accuracy"],
        "val_macro_f1": best["val_macro_f1"],
        "chance_accuracy": 1 / len(STYLES),
        "epochs_run": len(history),
        "history": history,
        "trainable_params": int(sum(p.numel() for g in groups for p in g["params"])),
        "total_params": int(n_params),
        "device": device,
        "wall_time_s": round(elapsed_before + time.perf_counter() - started, 2),
        "versions": _versions(),
        "code_version": code_version(),
        "checkpoint_hash": checkpoint_hash(folder),
        "checkpoint_bytes": sum(f.stat().st_size for f in folder.rglob("*.safetensors")),
    }
    _write_json(folder / MANIFEST, manifest)
    state_path.unlink()
    return manifest


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _trainable(module: nn.Module, strategy: str) -> Callable[[], dict[str, torch.Tensor]]:
    """What a checkpoint of the backbone holds: nothing (probe), the adapter (LoRA), all."""
    if strategy == "full":
        return module.state_dict
    names = {n for n, p in module.named_parameters() if p.requires_grad}
    return lambda: {k: v for k, v in module.state_dict().items() if k in names}


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def _loader(dataset: Dataset, finetune: Finetune, shuffle: bool) -> DataLoader:
    return DataLoader(dataset, batch_size=finetune.batch_size, shuffle=shuffle,
                      num_workers=finetune.num_workers, persistent_workers=False)


def _embedding_loaders(loaded: models.LoadedModel, split: Split, finetune: Finetune,
                       frame_set: Callable, progress: bool) -> tuple[DataLoader, DataLoader]:
    """Linear probe: the frozen backbone's embeddings of train and val, computed once."""
    loaded.module.eval()
    loaders = []
    for name, items in (("train", split.train), ("val", split.val)):
        batches = DataLoader(frame_set(items, False), batch_size=finetune.batch_size,
                             num_workers=finetune.num_workers)
        chunks = []
        with torch.inference_mode():
            for pixels, _ in tqdm(batches, desc=f"embeddings {name}", disable=not progress,
                                  leave=False):
                chunks.append(_embed(loaded, pixels.to(loaded.device)).float().cpu())
        labels = torch.tensor([label for *_, label in items])
        dataset = torch.utils.data.TensorDataset(torch.cat(chunks), labels)
        loaders.append(_loader(dataset, finetune, shuffle=name == "train"))
    return loaders[0], loaders[1]


def _evaluate(forward: Callable, module: nn.Module, head: nn.Module,
              loader: Iterable[tuple[torch.Tensor, torch.Tensor]], device: str
              ) -> tuple[float, float]:
    """Accuracy and macro-F1 of ``forward``'s style predictions over ``(inputs, labels)``."""
    module.eval()
    head.eval()
    truth, predicted = [], []
    with torch.inference_mode():
        for inputs, labels in loader:
            predicted.append(forward(inputs.to(device)).argmax(dim=1).cpu())
            truth.append(labels)
    y, p = torch.cat(truth).numpy(), torch.cat(predicted).numpy()
    return float(np.mean(y == p)), macro_f1(y, p, len(STYLES))


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "torchvision", "transformers", "timm",
                                             "peft")}


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # runs on Ray may write at once
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    tmp.replace(path)


# --- the study: train, then extract every variant through the one map path ----------------


def splits_for(wc: data.WikiChurches, dataset_id: str, finetune: Finetune,
               seeds: Sequence[int]) -> dict[int, Split]:
    return {s: make_split(wc, dataset_id, s, finetune.val_fraction) for s in sorted(set(seeds))}


def train_all(runs: Sequence[Run], splits: dict[int, Split], finetune: Finetune, *,
              model_seed: int, execution: Execution | None = None,
              progress: bool = True) -> list[dict]:
    """Train (or reuse) every planned run, one task each (in turn here, or in parallel on
    Ray with ``execution.gpus_per_task`` GPUs each); the manifests in plan order."""
    execution = execution or Execution()
    on_ray = execution.engine == "ray"
    todo = [(r.choice, r.strategy, r.seed, splits[r.seed], finetune, finetune.checkpoint_dir)
            for r in runs]
    with engine.shared_dir(Path(finetune.checkpoint_dir)) if on_ray else nullcontext() as probe:
        tasks = [(*task, model_seed, progress and not on_ray, probe) for task in todo]
        return engine.run_tasks(_train_task, tasks, execution=execution, desc="fine-tuning",
                                unit="run")


def _train_task(choice: ModelChoice, strategy: str, seed: int, split: Split, finetune: Finetune,
                out_dir: Path, model_seed: int, progress: bool, probe: Path | None) -> dict:
    """One run as a task: in a Ray worker, first check it sees the driver's checkpoint folder."""
    if probe is not None:
        engine.require_shared(probe, "finetune.checkpoint_dir")
    return train_run(choice, strategy, seed, split, finetune, out_dir, model_seed=model_seed,
                     progress=progress)


def map_jobs(choices: Sequence[ModelChoice], manifests: Sequence[dict], *, cache_dir: str | Path,
             dataset_id: str, seed: int, xrai: saliency.XraiSettings | None = None
             ) -> dict[tuple[str, str], extract.MapJob]:
    """The map stores of each frozen model and of each of its trained runs, as extraction
    jobs ``{(model name, variant): job}`` for `extract.extract_models`.

    The frozen variant's class-target methods (Grad-CAM, Chefer relevance) explain the
    style logit of its linear probe (the probe run with seed ``seed``); without one, a
    classifier (an ImageNet model) explains its own predicted class, and a backbone has none
    of them (no class logit), so a backbone whose only method is Grad-CAM has no frozen job.
    Stores are keyed by the run, so a retrained run gets new maps, and by ``xrai`` where
    XRAI is read; the probe run's own variant shares the frozen store (a linear probe leaves
    every map as it was).
    """
    jobs = {}
    for choice in choices:
        name = extract.model_name(choice)
        own = [m for m in manifests if m["model"]["name"] == name]
        probe = next((m for m in own if m["strategy"] == "linear_probe" and m["seed"] == seed),
                     None)
        for variant, manifest in [("frozen", probe), *((m["variant"], m) for m in own)]:
            if manifest is probe and variant != "frozen":  # the frozen model's very maps
                jobs[(name, variant)] = jobs[(name, "frozen")]
                continue
            methods = None
            spec = models.spec_for(choice)
            if manifest is None and not spec.arch.classifier:
                methods = tuple(m for m in spec.methods if m not in saliency.CLASS_METHODS)
                if not methods:
                    continue
            key = manifest["key"] if manifest else ""
            reads = xrai if "xrai" in (methods or spec.methods) else None
            store = extract.store_for(cache_dir, dataset_id, name, variant, key=key, xrai=reads)
            run = Path(manifest["dir"]) if manifest else None
            jobs[(name, variant)] = extract.MapJob(choice, store, methods, run, reads)
    return jobs


def runs_table(manifests: Sequence[dict]) -> Iterator[dict]:
    """One flat row per run (for ``finetune_runs.csv``)."""
    for m in manifests:
        yield {
            "model": m["model"]["name"], "strategy": m["strategy"], "variant": m["variant"],
            "seed": m["seed"], "split_id": m["split"]["id"], "n_train": m["split"]["n_train"],
            "n_val": m["split"]["n_val"], "best_epoch": m["best_epoch"],
            "epochs_run": m["epochs_run"], "val_accuracy": m["val_accuracy"],
            "val_macro_f1": m["val_macro_f1"], "chance_accuracy": m["chance_accuracy"],
            "trainable_params": m["trainable_params"], "total_params": m["total_params"],
            "wall_time_s": m["wall_time_s"], "device": m["device"],
            "checkpoint_mib": round(m["checkpoint_bytes"] / 2**20, 3),
            "checkpoint_hash": m["checkpoint_hash"][:12], "key": m["key"],
        }
