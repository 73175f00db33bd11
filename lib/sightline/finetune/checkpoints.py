"""A fine-tuned run's checkpoint: the backbone as a feature extractor (`backbone`, `embed`)
and a run's folder (manifest, head, full weights or LoRA adapter) as a `LoadedModel` with its
head (`load_run`), for training and map extraction alike."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from .. import models
from ..config import ModelChoice

MANIFEST = "manifest.json"
HEAD_FILE = "head.safetensors"
BACKBONE_FILE = "backbone.safetensors"
ADAPTER_DIR = "adapter"


class FinetuneError(Exception):
    """A run that cannot be trained or loaded; the message says which and what to do."""


def backbone(choice: ModelChoice, model_seed: int, device: str) -> models.LoadedModel:
    """The chosen model as a feature extractor (a timm classifier loses its own head)."""
    loaded = models.load_choice(choice, seed=model_seed, device=device)
    if hasattr(loaded.module, "reset_classifier"):
        loaded.module.reset_classifier(0)
    return loaded


def embed(loaded: models.LoadedModel, pixels: torch.Tensor) -> torch.Tensor:
    """The backbone's pooled embedding ``(B, D)``: what a style head reads."""
    return loaded.spec.arch.features(loaded.forward(pixels))


def feature_dim(loaded: models.LoadedModel) -> int:
    size = loaded.spec.geometry.size
    with torch.no_grad():
        return int(embed(loaded, torch.zeros(1, 3, size, size, device=loaded.device)).shape[-1])


def load_run(run: str | Path | dict, device: str = "cpu") -> models.LoadedModel:
    """A trained run as a `LoadedModel` in eval mode with its style head (LoRA merged into the
    backbone); the checkpoint's hash is checked against the manifest."""
    manifest = run if isinstance(run, dict) else read_manifest(run)
    folder = Path(manifest["dir"])
    if checkpoint_hash(folder) != manifest["checkpoint_hash"]:
        raise FinetuneError(f"{folder}: the checkpoint files do not match the manifest's hash; "
                            "delete the folder and train the run again")
    choice = ModelChoice(**manifest["model"]["choice"])
    loaded = backbone(choice, manifest["model_seed"], device)
    module = loaded.module
    if manifest["strategy"] == "full":
        module.load_state_dict(load_file(folder / BACKBONE_FILE, device=device))
    elif manifest["strategy"] == "lora":
        from peft import PeftModel

        with quiet_peft():
            module = PeftModel.from_pretrained(module, folder / ADAPTER_DIR).merge_and_unload()
    state = load_file(folder / HEAD_FILE, device=device)
    head = nn.Linear(*state["weight"].shape[::-1]).to(device)
    head.load_state_dict(state)
    return dataclasses.replace(loaded, module=module.eval(), head=head.eval())


@contextmanager
def quiet_peft() -> Iterator[None]:
    """peft 0.21 reads a transformers attribute deprecated in 5.x (nothing a user can fix)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                                category=FutureWarning)
        yield


def write_json(path: Path, obj: object) -> None:
    """Write ``obj`` atomically (runs on Ray may write the same record at once)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    tmp.replace(path)


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FinetuneError(f"{path} not found: the run is not trained (or not finished)")
    return json.loads(path.read_text())


def checkpoint_hash(folder: Path) -> str:
    """sha256 over what determines a run's behaviour, in a canonical order: its weight files
    (names and bytes) and its LoRA adapter's config as peft reads it, with sorted keys and
    sorted sets (peft writes ``target_modules`` in hash-seed order); not the model card."""
    digest = hashlib.sha256()
    adapter = folder / ADAPTER_DIR
    weights = sorted(p for p in adapter.glob("*") if p.suffix not in (".json", ".md"))
    for path in [folder / HEAD_FILE, folder / BACKBONE_FILE, *weights]:
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    if (adapter / "adapter_config.json").is_file():
        from peft import PeftConfig

        config = PeftConfig.from_pretrained(adapter).to_dict()
        digest.update(json.dumps(config, sort_keys=True, default=sorted).encode())
    return digest.hexdigest()
