"""What the saliency method families share: map keys, the classifier and target-class
checks, and frozen parameters (backward passes that compute input gradients only)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from sightline.models import LoadedModel

MapKey = tuple[str, int]
Attentions = Sequence[torch.Tensor]


def _require_classifier(model: LoadedModel, method: str) -> None:
    if not model.is_classifier:
        raise ValueError(f"model {model.spec.key!r} has no classifier head, so {method} has no class logit "
                         "to explain; train a linear probe (sightline.finetune, strategy 'linear_probe') "
                         "and load it with finetune.load_run")


def _checked_classes(classes: Sequence[int] | None, batch: int) -> list[int] | None:
    """The target classes as ints, one per image (None: the predicted ones)."""
    if classes is None:
        return None
    if len(classes) != batch:
        raise ValueError(f"need one class per image: {len(classes)} for {batch}")
    return [int(c) for c in classes]


def _target_classes(logits: torch.Tensor, classes: Sequence[int] | None) -> torch.Tensor:
    """The class ``(B,)`` each image is explained for: ``classes`` (checked), else the predicted."""
    classes = _checked_classes(classes, len(logits))
    if classes is None:
        return logits.argmax(dim=-1)
    if not all(0 <= c < logits.shape[-1] for c in classes):
        raise ValueError(f"target classes {list(classes)} out of range for {logits.shape[-1]} logits")
    return torch.as_tensor(classes, device=logits.device)


@contextmanager
def _frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Parameters stop requiring gradients, so backward computes input gradients only."""
    trainable = [p for m in modules if m is not None for p in m.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


@contextmanager
def _gradients_on(model: LoadedModel) -> Iterator[None]:
    """Gradient tracking from the input, even under inference mode; weights frozen."""
    with torch.inference_mode(False), torch.enable_grad(), _frozen(model.module, model.head):
        yield


def _on_grid(model: LoadedModel, patches: torch.Tensor) -> np.ndarray:
    """``(B, [K,] patches)`` values -> ``(B, K or 1, gh, gw)`` float32 maps."""
    return patches.float().reshape(len(patches), -1, *model.grid).detach().cpu().numpy()
