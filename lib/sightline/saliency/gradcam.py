"""``gradcam``: pytorch-grad-cam's GradCAM, kept at the layer's grid. CNN: each stage's
last block (layers 0..3); ViT: the last block's pre-attention LayerNorm (layer L-1); a spec's
``target_layer``: that layer (layer 0). Target: a class logit of the model's classifier or
style head (`LoadedModel.head`), the predicted class by default."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from sightline.models import LoadedModel

from .common import MapKey, _checked_classes, _frozen, _require_classifier


class _Scorer(nn.Module):
    """A LoadedModel as the tensor-in, tensor-out module pytorch-grad-cam expects."""

    def __init__(self, model: LoadedModel):
        super().__init__()
        self.model = model
        self.backbone = model.module
        self.head = model.head

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.score(pixel_values)


class _GridGradCAM(GradCAM):
    """pytorch-grad-cam's GradCAM stopped at the layers' grids: one ReLU'd CAM per target
    layer, before the library resizes it to the input and min-max scales it."""

    def compute_cam_per_layer(self, input_tensor, targets, eigen_smooth):
        recorded = self.activations_and_grads
        return [np.maximum(self.get_cam_image(input_tensor, layer, targets, act.numpy(), grad.numpy(),
                                              eigen_smooth), 0).astype(np.float32)
                for layer, act, grad in zip(self.target_layers, recorded.activations,
                                            recorded.gradients, strict=True)]

    def aggregate_multi_layers(self, cam_per_target_layer):
        return cam_per_target_layer


def token_reshape_transform(num_prefix_tokens: int, grid: tuple[int, int]) -> Callable:
    """Tokens ``(B, prefix + gh*gw, C)`` -> ``(B, C, gh, gw)``, dropping all prefix tokens."""
    height, width = grid

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, num_prefix_tokens:, :]
        if patches.shape[1] != height * width:
            raise ValueError(f"{tokens.shape[1]} tokens do not split into {num_prefix_tokens} "
                             f"prefix tokens and a {height}x{width} grid")
        return patches.reshape(tokens.shape[0], height, width, tokens.shape[2]).permute(0, 3, 1, 2)

    return reshape


def gradcam_maps(model: LoadedModel, pixel_values: torch.Tensor, classes: Sequence[int] | None = None,
                 **settings: Any) -> tuple[dict[MapKey, np.ndarray], torch.Tensor]:
    """Grad-CAM ``(B, 1, h, w)`` at each of the model's Grad-CAM layers, in one forward/backward,
    and that forward pass's class logits (``settings``: other methods' settings, unused)."""
    _require_classifier(model, "Grad-CAM")
    layers = model.gradcam_layers()
    classes = _checked_classes(classes, pixel_values.shape[0])
    # None: pytorch-grad-cam explains the predicted class
    targets = None if classes is None else [ClassifierOutputTarget(c) for c in classes]
    scorer = _Scorer(model)
    # gradients are needed even when the caller runs under no_grad / inference_mode
    with torch.inference_mode(False), torch.enable_grad(), _backward_from(scorer, layers[0][1]):
        cam = _GridGradCAM(scorer, [module for _, module in layers],
                           reshape_transform=_gradcam_reshape(model))
        try:
            grids = cam(pixel_values.clone(), targets)
        finally:
            cam.activations_and_grads.release()
    return ({("gradcam", index): grid[:, None] for (index, _), grid in zip(layers, grids, strict=True)},
            cam.outputs.detach())


def _gradcam_reshape(model: LoadedModel) -> Callable | None:
    """How the Grad-CAM layer's output becomes ``(B, C, gh, gw)``: the registry entry's own
    reshape if it has one, token sequences with prefix tokens, or none (CNN maps)."""
    arch = model.spec.arch
    if hasattr(arch, "gradcam_reshape"):
        return arch.gradcam_reshape(model.grid)
    if arch.token_outputs:
        return token_reshape_transform(model.num_prefix_tokens, model.grid)
    return None


@contextmanager
def _backward_from(module: nn.Module, first_layer: nn.Module) -> Iterator[None]:
    """Backpropagate only down to ``first_layer``'s output (made a leaf; parameters frozen): no
    weight gradients and no pass through the blocks before it; gradients after it unchanged."""
    hook = first_layer.register_forward_hook(
        lambda _module, _inputs, output: output.detach().requires_grad_(True), prepend=True)
    with hook, _frozen(module):
        yield
