"""Training one run (linear probe, LoRA or full; resumable, seeded per epoch) and scoring a
trained run's style predictions; `train_all` runs every planned run as a task."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2 as T
from tqdm import tqdm

from .. import data, extract, frames, models
from .. import execution as engine
from ..config import Execution, Finetune, ModelChoice
from ..frames import Item
from . import checkpoints
from .checkpoints import FinetuneError
from .plan import Run, check_strategy, code_version, recipe, run_dir
from .splits import STYLES, Split

PROGRESS_PREFIX = "[train] "  # starts each per-epoch line (stderr); builds drop them from notebooks
_STATE = "state.pt"


def _transforms(spec: models.ModelSpec, finetune: Finetune, train: bool) -> T.Compose:
    """Per image: the training crop and flip (uint8 kept: `_augment_batch` does the rest per
    batch); evaluation frames are converted and normalised here."""
    if train:
        crop = T.RandomResizedCrop(spec.geometry.size, scale=tuple(finetune.crop_scale), antialias=True)
        return T.Compose([crop, T.RandomHorizontalFlip()] if finetune.hflip else [crop])
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
    """A training batch (uint8) to [0, 1] floats, colour-jittered (factors uniform in [1 − c,
    1 + c] per image, from the epoch's seeded generator) and normalised."""
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    c = finetune.color_jitter

    def augment(images: torch.Tensor) -> torch.Tensor:
        images = images.float().div_(255)
        if c:
            images = color_jitter(images, *torch.empty(3, len(images)).uniform_(max(0.0, 1 - c), 1 + c))
        return (images - mean.to(images.device)) / std.to(images.device)

    return augment


def evaluate_run(run: str | Path | dict, items: Sequence[Item], *, batch_size: int = 32,
                 device: str = "cpu") -> dict[str, float]:
    """Accuracy and macro-F1 of a trained run's style predictions on ``items`` (e.g.
    `test_items`), read through the same frame as its maps."""
    if not items:
        raise FinetuneError("no images to evaluate on (the dataset's pool has no test split?)")
    loaded = checkpoints.load_run(run, device)
    batches = (
        (loaded.preprocess([data.load_image(Path(path)) for _, path, _ in chunk]),
         torch.tensor([label for *_, label in chunk]))
        for chunk in (items[i:i + batch_size] for i in range(0, len(items), batch_size))
    )
    accuracy, f1 = _evaluate(loaded.score, loaded.module, loaded.head, batches, device)
    return {"accuracy": accuracy, "macro_f1": f1, "n": len(items),
            "correct": round(accuracy * len(items))}


def macro_f1(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Unweighted mean over classes of F1 (a class absent from both counts as F1 = 0)."""
    scores = []
    for c in range(n_classes):
        denominator = np.sum(predicted == c) + np.sum(truth == c)
        scores.append(2 * np.sum((predicted == c) & (truth == c)) / denominator if denominator else 0.0)
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


def _amp(device: str) -> tuple[AbstractContextManager, torch.amp.GradScaler]:
    """bf16 autocast where the GPU has it, else fp16 with a gradient scaler; neither on CPU (a
    disabled scaler passes everything through)."""
    if device != "cuda":
        return nullcontext(), torch.amp.GradScaler("cuda", enabled=False)
    bf16 = torch.cuda.is_bf16_supported()
    return (torch.autocast("cuda", dtype=torch.bfloat16 if bf16 else torch.float16),
            torch.amp.GradScaler("cuda", enabled=not bf16))


def train_run(choice: ModelChoice, strategy: str, seed: int, split: Split, finetune: Finetune,
              out_dir: str | Path, *, model_seed: int = 0, progress: bool = True) -> dict:
    """Train one run (or reuse / resume it) and return its manifest; ``model_seed`` builds a
    random-weight backbone as the frozen model is built (the untrained model is the start)."""
    run = Run(choice, strategy, seed)
    check_strategy(choice, strategy)
    folder = run_dir(out_dir, run, split, finetune, model_seed)
    if (folder / checkpoints.MANIFEST).is_file():
        return checkpoints.read_manifest(folder)
    folder.mkdir(parents=True, exist_ok=True)
    split_path = split.save(Path(out_dir) / split.dataset_id[:16] / "splits")
    settings = recipe(finetune, choice, strategy)
    device = extract.resolve_device(finetune.device)
    started = time.perf_counter()

    loaded = checkpoints.backbone(choice, model_seed, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(checkpoints.feature_dim(loaded), len(STYLES)).to(device)
    module = loaded.module
    if strategy != "linear_probe":  # the probe's embeddings come from the model as extracted
        loaded.spec.arch.for_training(module)
    if strategy == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=settings["lora_rank"], lora_alpha=settings["lora_alpha"],
                          lora_dropout=settings["lora_dropout"],
                          target_modules=settings["lora_targets"])
        # the adapters' random init from the run's seed, not from whatever ran before it here
        with checkpoints.quiet_peft(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = get_peft_model(module, lora)
        loaded = dataclasses.replace(loaded, module=module)
    elif strategy == "linear_probe":
        module.requires_grad_(False)
    groups = [{"params": list(head.parameters()), "lr": finetune.head_lr}]
    if strategy != "linear_probe":
        lr = finetune.backbone_lr_full if strategy == "full" else finetune.backbone_lr_lora
        groups.append({"params": [p for p in module.parameters() if p.requires_grad], "lr": lr})
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
        loader = _loader(frame_set(split.train, True), finetune, shuffle=True, device=device)
        val_loader = _loader(frame_set(split.val, False), finetune, shuffle=False, device=device)
        augment = _augment_batch(loaded.spec, finetune)

        def forward(pixels: torch.Tensor) -> torch.Tensor:
            return head(checkpoints.embed(loaded, pixels))

    total = math.ceil(len(loader) / finetune.accumulation) * finetune.epochs
    from transformers import get_cosine_schedule_with_warmup

    schedule = get_cosine_schedule_with_warmup(optimiser, round(finetune.warmup * total), total)
    autocast, scaler = _amp(device)
    trainable = _trainable(module, strategy)

    state_path = folder / _STATE
    history: list[dict] = []
    best: dict | None = None
    elapsed_before = 0.0
    if state_path.is_file():  # resume after the last completed epoch
        state = torch.load(state_path, map_location=device, weights_only=False)
        module.load_state_dict(state["backbone"], strict=False)
        head.load_state_dict(state["head"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        scaler.load_state_dict(state["scaler"])
        history, best, elapsed_before = state["history"], state["best"], state["elapsed"]
    first_epoch = len(history)

    meter = extract.ImageProgress(  # every step left, with an ETA; the cost from the first
        f"train {extract.model_name(choice)} {run.variant}",
        len(loader) * (finetune.epochs - first_epoch), device=device, enabled=progress,
        unit="step", note="fewer finetune.epochs or strategies lower it")
    for epoch in range(first_epoch, finetune.epochs):
        torch.manual_seed(_epoch_seed(seed, epoch))
        module.train()  # the probe's backbone is not run here (its embeddings are computed)
        head.train()
        losses = []
        epoch_started = time.perf_counter()
        for step, (inputs, labels) in enumerate(loader):
            inputs = inputs.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if strategy != "linear_probe":
                inputs = augment(inputs)
            with autocast:
                loss = loss_fn(forward(inputs), labels) / finetune.accumulation
            scaler.scale(loss).backward()
            losses.append(loss.item() * finetune.accumulation)
            if (step + 1) % finetune.accumulation == 0 or step + 1 == len(loader):
                scaler.unscale_(optimiser)
                nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], finetune.clip_norm)
                scaler.step(optimiser)
                scaler.update()
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
            "scaler": scaler.state_dict(), "history": history,
            "best": best, "elapsed": elapsed_before + time.perf_counter() - started,
        })
        if finetune.patience and epoch + 1 - best["epoch"] >= finetune.patience:
            break
    meter.close()

    module.load_state_dict(best["backbone"], strict=False)
    head.load_state_dict(best["head"])
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, folder / checkpoints.HEAD_FILE)
    if strategy == "full":
        save_file({k: v.contiguous() for k, v in module.state_dict().items()},
                  folder / checkpoints.BACKBONE_FILE)
    elif strategy == "lora":
        module.save_pretrained(folder / checkpoints.ADAPTER_DIR)
    manifest = {
        "dir": str(folder),
        "key": folder.name.rsplit("__", 1)[-1],
        "model": {"name": extract.model_name(choice),
                  "choice": choice.model_dump(mode="json", exclude_none=True)},
        "strategy": strategy, "variant": run.variant, "seed": seed, "model_seed": model_seed,
        "params": settings,
        "split": {"id": split.id, "seed": split.seed, "file": str(split_path),
                  "n_train": len(split.train), "n_val": len(split.val)},
        "best_epoch": best["epoch"], "val_accuracy": best["val_accuracy"],
        "val_macro_f1": best["val_macro_f1"], "chance_accuracy": 1 / len(STYLES),
        "epochs_run": len(history), "history": history,
        "trainable_params": int(sum(p.numel() for g in groups for p in g["params"])),
        "total_params": sum(p.numel() for m in (module, head) for p in m.parameters()),
        "device": device,
        "wall_time_s": round(elapsed_before + time.perf_counter() - started, 2),
        "versions": {name: version(name) for name in ("torch", "torchvision", "transformers", "timm",
                                                      "peft")},
        "code_version": code_version(),
        "checkpoint_hash": checkpoints.checkpoint_hash(folder),
        "checkpoint_bytes": sum(f.stat().st_size for f in folder.rglob("*.safetensors")),
    }
    checkpoints.write_json(folder / checkpoints.MANIFEST, manifest)
    state_path.unlink()
    return manifest


def _trainable(module: nn.Module, strategy: str) -> Callable[[], dict[str, torch.Tensor]]:
    """What a checkpoint of the backbone holds: nothing (probe), the adapter (LoRA), all."""
    if strategy == "full":
        return module.state_dict
    names = {n for n, p in module.named_parameters() if p.requires_grad}
    return lambda: {k: v for k, v in module.state_dict().items() if k in names}


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def _loader(dataset: Dataset, finetune: Finetune, shuffle: bool, device: str = "cpu"
            ) -> DataLoader:
    """Batches in page-locked memory for a GPU. Workers start anew each epoch: their crops draw
    from the epoch's seed, so a resumed run is the same run."""
    return DataLoader(dataset, batch_size=finetune.batch_size, shuffle=shuffle,
                      num_workers=finetune.num_workers, pin_memory=device == "cuda")


def _embedding_loaders(loaded: models.LoadedModel, split: Split, finetune: Finetune,
                       frame_set: Callable, progress: bool) -> tuple[DataLoader, DataLoader]:
    """Linear probe: the frozen backbone's embeddings of train and val, computed once."""
    loaded.module.eval()
    loaders = []
    for name, items in (("train", split.train), ("val", split.val)):
        batches = _loader(frame_set(items, False), finetune, shuffle=False, device=loaded.device)
        chunks = []
        with torch.inference_mode():
            for pixels, _ in tqdm(batches, desc=f"embeddings {name}", disable=not progress,
                                  leave=False):
                pixels = pixels.to(loaded.device, non_blocking=True)
                chunks.append(checkpoints.embed(loaded, pixels).float().cpu())
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
            predicted.append(forward(inputs.to(device, non_blocking=True)).argmax(dim=1).cpu())
            truth.append(labels)
    y, p = torch.cat(truth).numpy(), torch.cat(predicted).numpy()
    return float(np.mean(y == p)), macro_f1(y, p, len(STYLES))


def train_all(runs: Sequence[Run], splits: dict[int, Split], finetune: Finetune, *,
              model_seed: int, execution: Execution | None = None,
              progress: bool = True) -> list[dict]:
    """Train (or reuse) every planned run, one task each (see `execution`), the longest first;
    the manifests in plan order."""
    execution = execution or Execution()
    on_ray = execution.engine == "ray"
    with engine.shared_dir(Path(finetune.checkpoint_dir)) if on_ray else nullcontext() as probe:
        tasks = [(r.choice, r.strategy, r.seed, splits[r.seed], finetune, finetune.checkpoint_dir, model_seed,
                  progress and execution.engine == "local", probe) for r in runs]
        order = sorted(range(len(tasks)), key=lambda i: _LONGEST_FIRST.index(runs[i].strategy))
        done = engine.run_tasks(_train_task, [tasks[i] for i in order], execution=execution,
                                desc="fine-tuning", unit="run")
    return [manifest for _, manifest in sorted(zip(order, done, strict=True))]


_LONGEST_FIRST = ("full", "lora", "linear_probe")


def _train_task(choice: ModelChoice, strategy: str, seed: int, split: Split, finetune: Finetune,
                out_dir: Path, model_seed: int, progress: bool, probe: Path | None) -> dict:
    """One run as a task: in a Ray worker, first check it sees the driver's checkpoint folder."""
    if probe is not None:
        engine.require_shared(probe, "finetune.checkpoint_dir")
    return train_run(choice, strategy, seed, split, finetune, out_dir, model_seed=model_seed,
                     progress=progress)

