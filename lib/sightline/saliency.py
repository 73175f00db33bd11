"""Saliency maps behind one interface: `extract(model, pixel_values, methods)`.

Maps come back keyed ``(method, layer)`` as float32 arrays ``(B, K, gh, gw)`` on the
patch grid (CNN: the stage's grid), non-negative, larger = more attention. Per-head
methods have ``K = num_heads + 1`` (the last slot is the mean over heads); the others
``K = 1``. Methods:

- ``cls``: the CLS token's attention row over patch tokens (CLS, registers and any other
  prefix token skipped), per layer;
- ``rollout``: attention rollout (Abnar & Zuidema 2020) through layers ``0..l``, read at
  the CLS row, for every end layer ``l``;
- ``probe``: the pooling head's probe attention over patches (SigLIP family), as layer
  ``num_layers`` since the head sits after the last block;
- ``mean_received``: per layer, the attention each patch receives, averaged over query rows;
- ``chefer``: gradient-weighted attention relevance (Chefer, Gur & Wolf, "Generic
  Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder
  Transformers", ICCV 2021) for a class logit: ``R = I``; per block ``l``,
  ``Ā_l = mean_heads((∇A_l ⊙ A_l)⁺)`` and ``R ← R + Ā_l R``; the map is the CLS row of ``R``
  over patch tokens. A model with no CLS token (SigLIP) reads the pooling head's probe
  instead: ``r = ā_probe R`` with ``ā_probe = mean_heads((∇a ⊙ a)⁺)`` of the probe's attention
  row ``a``, the probe joining as one more query token after the last block. Per end layer
  ``l`` (layers ``0..L-1``, like rollout): ``R`` through blocks ``0..l``, always weighted by
  the gradients of the full model's logit, so layer ``L-1`` is the paper's map and an earlier
  layer is that propagation stopped early (not the relevance of a model cut at ``l``).
  Target and head requirement as Grad-CAM's; one backward pass per batch, on the forward
  pass the other attention methods read;
- ``gradcam``: pytorch-grad-cam's GradCAM, kept at the layer's grid. CNN: each stage's
  last block (layers 0..3). ViT: the last block's pre-attention LayerNorm (layer L-1).
  Target: a class logit of the model's classifier, the predicted class by default (or
  a given one, e.g. the true style). A backbone's classifier is a style head
  (`LoadedModel.head`: a linear probe or a fine-tuned head, see `sightline.finetune`);
  a backbone without one has no class logit and so no Grad-CAM: by default it is left
  out of the methods, and asked for explicitly it is an error.
  Classifiers explained at one layer (the Shared Interest models, specs with a
  ``target_layer``): that layer (layer 0), its token / NHWC layout reshaped by the spec.
- ``attnlrp`` and ``legrad``: AttnLRP and LeGrad relevance per layer for a class logit
  (LeGrad per head too), with Chefer's target and head requirement (`sightline.attribution`);
- ``xrai``: XRAI (Kapishnikov et al. 2019) from PAIR's ``saliency`` package on the model's
  input frame, for classifiers, explaining the predicted (or a given) class; integrated
  gradients steps, batch size and the full / fast algorithm are `XraiSettings`. The
  region gains are min-max scaled to [0, 1] (order kept): one ``(B, 1, S, S)`` map, layer 0.

The methods are entries of `sightline.registry.METHODS`, each naming its function here;
extraction dispatches on the entry's ``runs``. All attention methods (``chefer`` included) share
one forward pass (`LoadedModel.attentions`: HF ``output_attentions`` or hooks on timm attention
blocks). Which methods apply to a model is derived from its readout
(`sightline.registry.applicable_methods`). `extract_with_logits` also returns a
classifier's class logits from the forward pass the maps ran (its prediction at no extra cost).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from saliency.core import XRAI, XRAIParameters
from saliency.core import xrai as pair_xrai
from saliency.core.base import INPUT_OUTPUT_GRADIENTS
from skimage.morphology import disk
from torch import nn

from sightline import registry
from sightline.models import LoadedModel, pooling_heads

# the built-in methods by kind, as registered (`registry.METHODS` is the live list)
METHODS = registry.METHODS.names()
ATTENTION_METHODS = tuple(m.name for m in registry.METHODS if m.runs != "own")
CLASS_METHODS = registry.METHODS.names(explains_class=True)

_HEAD_FUSIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda a: a.mean(dim=1),
    "max": lambda a: a.amax(dim=1),
    "min": lambda a: a.amin(dim=1),
}

MapKey = tuple[str, int]
Attentions = Sequence[torch.Tensor]


@dataclass(frozen=True)
class XraiSettings:
    """XRAI's cost knobs: integrated-gradients steps per baseline (2 baselines: black and
    white), model inputs per batch, and the ``full`` or approximate ``fast`` region ranking."""

    steps: int = 100
    batch_size: int = 20
    algorithm: Literal["full", "fast"] = "full"


def extract(
    model: LoadedModel,
    pixel_values: torch.Tensor,
    methods: Sequence[str] | None = None,
    *,
    classes: Sequence[int] | None = None,
    xrai: XraiSettings | None = None,
    segments: Sequence[list[np.ndarray]] | None = None,
    on_image: Callable[[], None] | None = None,
) -> dict[MapKey, np.ndarray]:
    """Maps ``(method, layer) -> (B, K, gh, gw)`` for ``methods`` (default: all that apply).

    ``classes`` (one per image) sets the Chefer / Grad-CAM / XRAI target class of a
    classifier; by default it is the predicted class. ``xrai`` sets XRAI's cost (default
    `XraiSettings()`); ``segments`` (one `xrai_segments` list per image, default: computed)
    lets a caller reading the same inputs again skip XRAI's segmentation; ``on_image`` is
    called as XRAI finishes each image (a progress bar's tick).
    """
    return extract_with_logits(model, pixel_values, methods, classes=classes, xrai=xrai,
                               segments=segments, on_image=on_image)[0]


def extract_with_logits(
    model: LoadedModel,
    pixel_values: torch.Tensor,
    methods: Sequence[str] | None = None,
    *,
    classes: Sequence[int] | None = None,
    xrai: XraiSettings | None = None,
    segments: Sequence[list[np.ndarray]] | None = None,
    on_image: Callable[[], None] | None = None,
) -> tuple[dict[MapKey, np.ndarray], torch.Tensor | None]:
    """`extract`'s maps and a classifier's class logits ``(B, C)`` (a style head's, an
    ImageNet model's) on the same images, read from the first forward pass a method ran
    (XRAI alone, which runs hundreds, gets one more); None for a model with no classifier.
    ``on_image`` is called as XRAI finishes each image (progress of the slow method)."""
    methods = _check_methods(model, methods)
    pixel_values = _check_input(model, pixel_values)
    class_methods = registry.METHODS.names(explains_class=True)
    if classes is not None and not set(class_methods) & set(methods):
        raise ValueError(f"`classes` sets the target class of {list(class_methods)}: pass it "
                         "only with one of them in methods")
    maps: dict[MapKey, np.ndarray] = {}
    passes: list[torch.Tensor | None] = []  # each forward pass's class logits
    attention_methods = [m for m in methods if registry.METHODS[m].runs != "own"]
    if attention_methods:
        found, logits = _attention_maps(model, pixel_values, attention_methods, classes)
        maps, passes = maps | found, [*passes, logits]
    for method in registry.METHODS:
        if method.name in methods and method.runs == "own":
            if method.explains_class:
                _require_classifier(model, method.label)
            found, logits = method(model, pixel_values, classes, xrai=xrai or XraiSettings(),
                                   segments=segments, on_image=on_image)
            maps, passes = maps | found, [*passes, logits]
    if not model.is_classifier:
        return maps, None
    passes = [p for p in passes if p is not None]
    if not passes:  # XRAI alone
        with torch.inference_mode():
            passes = [model.score(pixel_values)]
    return maps, passes[0].detach()


def _check_methods(model: LoadedModel, methods: Sequence[str] | None) -> list[str]:
    allowed = model.methods
    if methods is None:
        return [m for m in allowed if not registry.METHODS[m].explains_class or model.is_classifier]
    if isinstance(methods, str):
        methods = [methods]
    wrong = [m for m in methods if m not in allowed]
    if wrong:
        raise ValueError(
            f"method(s) {wrong} do not apply to model {model.spec.key!r}; "
            f"its methods are {list(allowed)} (all methods: {list(registry.METHODS.names())})"
        )
    return list(dict.fromkeys(methods))


def _check_input(model: LoadedModel, pixel_values: torch.Tensor) -> torch.Tensor:
    if model.module.training:
        raise ValueError(
            f"model {model.spec.key!r} is in training mode (dropout; DINOv3 jitters its RoPE "
            "positions): call model.module.eval() before extracting maps"
        )
    size = model.spec.geometry.size
    if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (3, size, size):
        raise ValueError(
            f"model {model.spec.key!r} takes pixel_values of shape (B, 3, {size}, {size}) "
            f"(use model.preprocess), got {tuple(pixel_values.shape)}"
        )
    return pixel_values.to(model.device, torch.float32)


# --- attention methods -------------------------------------------------------------------


def _attention_maps(
    model: LoadedModel,
    pixel_values: torch.Tensor,
    methods: Sequence[str],
    classes: Sequence[int] | None = None,
) -> tuple[dict[MapKey, np.ndarray], torch.Tensor | None]:
    """One forward pass capturing every layer's attention, then each method reads it; also
    the pass's class logits (`class_logits`; None for a model with no classifier).

    With a method that reads gradients (``chefer``) the forward pass keeps its graph and one
    backward pass from the target logits gives every attention's gradient; the other methods
    read the same attentions.
    """
    relevance = [m for m in methods if registry.METHODS[m].runs == "attention_gradients"]
    readers = [m for m in methods if m not in relevance]
    if not relevance:
        with torch.inference_mode():
            output, attentions = model.attentions(pixel_values)
            attentions = _checked_attentions(model, attentions, pixel_values.shape[0])
            return (_read_attentions(model, attentions, output, readers),
                    class_logits(model, output) if model.is_classifier else None)
    _require_classifier(model, registry.METHODS[relevance[0]].label)
    classes = _checked_classes(classes, pixel_values.shape[0])
    # gradients are needed even when the caller runs under no_grad / inference_mode
    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        _frozen(model.module, model.head),
        _probe_recorder(model) as probe,
    ):
        # parameters frozen, so the graph runs from the input and no weight gradient is made
        pixels = pixel_values.clone().requires_grad_(True)
        output, attentions = model.attentions(pixels)
        attentions = _checked_attentions(model, attentions, pixels.shape[0])
        logits = class_logits(model, output)
        if classes is not None and not all(0 <= c < logits.shape[-1] for c in classes):
            raise ValueError(f"target classes {classes} out of range for {logits.shape[-1]} logits")
        targets = logits.argmax(dim=-1) if classes is None else torch.tensor(classes)
        # images are independent in eval mode: one backward of the sum gives each its gradient
        score = logits.gather(1, targets.to(logits.device)[:, None]).sum()
        if model.readout == "probe" and not probe:
            raise RuntimeError(f"model {model.spec.key!r}: the pooling head did not run")
        gradients = torch.autograd.grad(score, [*attentions, *probe])
    with torch.no_grad():
        attentions = [a.detach() for a in attentions]
        maps: dict[MapKey, np.ndarray] = {}
        for method in relevance:
            maps |= registry.METHODS[method](model, attentions, gradients[: len(attentions)],
                                             (probe[0].detach(), gradients[-1]) if probe else None)
        return maps | _read_attentions(model, attentions, output, readers), logits


def _read_attentions(
    model: LoadedModel, attentions: Attentions, output: Any, methods: Sequence[str]
) -> dict[MapKey, np.ndarray]:
    maps: dict[MapKey, np.ndarray] = {}
    for method in methods:
        maps |= registry.METHODS[method](model, attentions, output)
    return maps


def _checked_attentions(model: LoadedModel, attentions: Attentions, batch: int) -> Attentions:
    """The captured attentions: one ``(B, heads, T, T)`` tensor per layer, or an error."""
    tokens = model.num_prefix_tokens + model.grid[0] * model.grid[1]
    expected = (batch, model.num_heads, tokens, tokens)
    if not attentions or len(attentions) != model.num_layers:
        raise RuntimeError(
            f"model {model.spec.key!r} returned {len(attentions or ())} attention tensors, "
            f"expected {model.num_layers}: is attention eager / unfused (not SDPA/flash)?"
        )
    for layer, attention in enumerate(attentions):
        if tuple(attention.shape) != expected:
            raise RuntimeError(
                f"model {model.spec.key!r} layer {layer}: attention shape "
                f"{tuple(attention.shape)}, expected {expected} "
                f"({model.num_prefix_tokens} prefix tokens + {model.grid} patches)"
            )
    return attentions


def _on_grid(model: LoadedModel, values: torch.Tensor) -> np.ndarray:
    """``(B, K, N)`` patch values -> float32 ``(B, K, gh, gw)``."""
    grid = values.reshape(*values.shape[:2], *model.grid)
    return grid.float().cpu().numpy()


def _with_head_mean(model: LoadedModel, per_head: torch.Tensor) -> np.ndarray:
    """``(B, H, N)`` -> ``(B, H + 1, gh, gw)``, the last slot the mean over heads."""
    return _on_grid(model, torch.cat([per_head, per_head.mean(dim=1, keepdim=True)], dim=1))


def cls_maps(model: LoadedModel, attentions: Attentions, output: Any) -> dict[MapKey, np.ndarray]:
    start = model.num_prefix_tokens
    return {
        ("cls", layer): _with_head_mean(model, a[:, :, 0, start:])
        for layer, a in enumerate(attentions)
    }


def rollout_maps(
    model: LoadedModel, attentions: Attentions, output: Any
) -> dict[MapKey, np.ndarray]:
    start = model.num_prefix_tokens
    return {
        ("rollout", layer): _on_grid(model, joint[:, None, 0, start:])
        for layer, joint in enumerate(rollout_matrices(attentions))
    }


def mean_received_maps(
    model: LoadedModel, attentions: Attentions, output: Any
) -> dict[MapKey, np.ndarray]:
    start = model.num_prefix_tokens
    return {
        ("mean_received", layer): _with_head_mean(model, a[:, :, :, start:].mean(dim=2))
        for layer, a in enumerate(attentions)
    }


def probe_maps(
    model: LoadedModel, attentions: Attentions, output: Any
) -> dict[MapKey, np.ndarray]:
    weights = probe_attention(model.module, output.last_hidden_state)
    return {
        ("probe", model.num_layers): _with_head_mean(
            model, weights[:, :, model.num_prefix_tokens :]
        )
    }


def probe_attention(module: nn.Module, last_hidden_state: torch.Tensor) -> torch.Tensor:
    """Per-head attention ``(B, H, T)`` of a MAP pooling head's learned probe over tokens.

    The head (a module with a ``probe`` parameter and an ``nn.MultiheadAttention``
    ``attention``) is re-run on its own input with per-head weights returned.
    """
    head = _pooling_head(module)
    probe = head.probe.expand(last_hidden_state.shape[0], -1, -1)
    _, weights = head.attention(
        probe, last_hidden_state, last_hidden_state, need_weights=True, average_attn_weights=False
    )
    return weights[:, :, 0, :]


def _pooling_head(module: nn.Module) -> nn.Module:
    """The one MAP pooling head of a module: a ``probe`` and an nn.MultiheadAttention."""
    heads = pooling_heads(module)
    if len(heads) != 1:
        raise ValueError(
            f"{type(module).__name__} has {len(heads)} attention-pooling heads (a module with a "
            "`probe` and an nn.MultiheadAttention `attention`), expected 1"
        )
    return heads[0]


def rollout_matrices(
    attentions: Sequence[torch.Tensor], head_fusion: str = "mean", start_layer: int = 0
) -> Iterator[torch.Tensor]:
    """Cumulative rollout ``(B, T, T)`` through layers ``start_layer..l``, for each ``l`` in turn.

    Per layer: fuse heads (mean / max / min), add the identity, renormalise each row to
    sum 1; then ``A_l @ ... @ A_start``. One matrix product per layer.
    """
    if head_fusion not in _HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {list(_HEAD_FUSIONS)}, got {head_fusion!r}")
    if not 0 <= start_layer < len(attentions):
        raise ValueError(f"start_layer must be in [0, {len(attentions)}), got {start_layer}")
    fuse = _HEAD_FUSIONS[head_fusion]
    joint = None
    for attention in attentions[start_layer:]:
        if attention.ndim != 4 or attention.shape[-1] != attention.shape[-2]:
            raise ValueError(f"attention must be (B, heads, T, T), got {tuple(attention.shape)}")
        fused = fuse(attention.float())
        fused = fused + torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        fused = fused / fused.sum(dim=-1, keepdim=True)
        joint = fused if joint is None else fused @ joint
        yield joint


def rollout(
    attentions: Sequence[torch.Tensor],
    num_prefix_tokens: int,
    head_fusion: str = "mean",
    start_layer: int = 0,
) -> torch.Tensor:
    """Attention rollout read at the CLS row (token 0) over patch tokens: ``(B, num_patches)``.

    All ``num_prefix_tokens`` leading tokens (CLS, registers) are skipped as columns.
    """
    if num_prefix_tokens < 1:
        raise ValueError("rollout reads the CLS row (token 0): num_prefix_tokens must be >= 1")
    *_, joint = rollout_matrices(attentions, head_fusion, start_layer)
    return joint[:, 0, num_prefix_tokens:]


# --- Chefer relevance ----------------------------------------------------------------------


def gradient_weighted(attention: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """``mean_heads((∇A ⊙ A)⁺)``: ``(B, H, Q, T)`` attention and its gradient -> ``(B, Q, T)``."""
    if attention.shape != gradient.shape or attention.ndim != 4:
        raise ValueError(
            f"attention and gradient must both be (B, heads, Q, T), got "
            f"{tuple(attention.shape)} and {tuple(gradient.shape)}"
        )
    return (gradient.float() * attention.float()).clamp(min=0).mean(dim=1)


def chefer_matrices(
    attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor]
) -> Iterator[torch.Tensor]:
    """Relevance ``(B, T, T)`` after blocks ``0..l``, for each ``l`` in turn (Chefer et al. 2021).

    ``R = I``; per block ``R ← R + Ā R`` with ``Ā = mean_heads((∇A ⊙ A)⁺)``.
    """
    if len(attentions) != len(gradients):
        raise ValueError(f"{len(attentions)} attentions but {len(gradients)} gradients")
    relevance = None
    for attention, gradient in zip(attentions, gradients, strict=True):
        if attention.shape[-1] != attention.shape[-2]:
            raise ValueError(f"attention must be (B, heads, T, T), got {tuple(attention.shape)}")
        weighted = gradient_weighted(attention, gradient)
        if relevance is None:
            eye = torch.eye(weighted.shape[-1], dtype=weighted.dtype, device=weighted.device)
            relevance = eye.expand_as(weighted)
        relevance = relevance + weighted @ relevance
        yield relevance


def chefer_maps(
    model: LoadedModel,
    attentions: Attentions,
    gradients: Sequence[torch.Tensor],
    probe: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[MapKey, np.ndarray]:
    """``("chefer", l) -> (B, 1, gh, gw)``: the relevance through blocks ``0..l`` read at the CLS
    row, or (``probe`` = the pooling probe's attention ``(B, H, 1, T)`` and its gradient) at
    the probe's gradient-weighted attention row times ``R``; prefix tokens skipped."""
    start = model.num_prefix_tokens
    if probe is None and model.readout != "cls":
        raise ValueError(
            f"model {model.spec.key!r} has no CLS token: Chefer relevance reads the pooling "
            "head's probe, pass its attention and gradient"
        )
    readout = gradient_weighted(*probe) if probe is not None else None  # (B, 1, T)
    maps = {}
    for layer, relevance in enumerate(chefer_matrices(attentions, gradients)):
        row = relevance[:, :1] if readout is None else readout @ relevance
        maps[("chefer", layer)] = _on_grid(model, row[:, :, start:])
    return maps


def class_logits(model: LoadedModel, output: Any) -> torch.Tensor:
    """The class logits of a forward pass's output: the style head's on the pooled features
    (`LoadedModel.score` on an output already computed)."""
    features = model.spec.arch.features(output)
    return features if model.head is None else model.head(features)


@contextmanager
def _probe_recorder(model: LoadedModel) -> Iterator[list[torch.Tensor]]:
    """For a probe-readout model, the pooling head's per-head probe attention ``(B, H, 1, T)``
    as used in the forward pass (so it has a gradient), recorded in the yielded list.

    ``nn.MultiheadAttention`` returns its weights averaged or as a copy, never the tensor its
    output is computed from, so a hook recomputes the head's attention from its own
    projections and hands that output on (equal to the module's; tested).
    """
    recorded: list[torch.Tensor] = []
    if model.readout != "probe":
        yield recorded
        return
    attention = _pooling_head(model.module).attention

    def hook(module: nn.MultiheadAttention, args: tuple, kwargs: dict, output: Any) -> Any:
        if len(args) != 3 or kwargs or recorded:
            raise RuntimeError(
                f"{type(model.module).__name__}'s pooling head must call its attention once per "
                "forward pass with (probe, tokens, tokens) only, for Chefer relevance to "
                "recompute it"
            )
        out, weights = multihead_attention(module, *args)
        recorded.append(weights)
        return out, output[1]

    handle = attention.register_forward_hook(hook, with_kwargs=True)
    try:
        yield recorded
    finally:
        handle.remove()


def multihead_attention(
    module: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """An ``nn.MultiheadAttention``'s output and the per-head softmax weights ``(B, H, Q, T)``
    it is computed from (batch-first, packed projections, no masks / bias_k / zero attention)."""
    if not module.batch_first or module.in_proj_weight is None or module.bias_k is not None \
            or module.add_zero_attn:
        raise ValueError(
            "Chefer relevance recomputes the pooling head's attention and supports a batch-first "
            "nn.MultiheadAttention with packed in-projections, no bias_k and no add_zero_attn"
        )
    heads, width = module.num_heads, module.head_dim
    biases = module.in_proj_bias.chunk(3) if module.in_proj_bias is not None else (None,) * 3

    def project(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return nn.functional.linear(x, weight, bias).unflatten(-1, (heads, width)).transpose(1, 2)

    q, k, v = (
        project(x, w, b)
        for x, w, b in zip((query, key, value), module.in_proj_weight.chunk(3), biases, strict=True)
    )
    weights = (q @ k.transpose(-1, -2) / math.sqrt(width)).softmax(dim=-1)
    out = (weights @ v).transpose(1, 2).flatten(2)
    return module.out_proj(out), weights


# --- Grad-CAM ----------------------------------------------------------------------------


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
    """pytorch-grad-cam's GradCAM stopped at the layers' grids.

    Returns one ReLU'd CAM per target layer, before the library resizes it to the input
    and min-max scales it (the library's output is that map resized and rescaled).
    """

    def compute_cam_per_layer(self, input_tensor, targets, eigen_smooth):
        recorded = self.activations_and_grads
        return [
            np.maximum(
                self.get_cam_image(
                    input_tensor, layer, targets, act.numpy(), grad.numpy(), eigen_smooth
                ),
                0,
            ).astype(np.float32)
            for layer, act, grad in zip(
                self.target_layers, recorded.activations, recorded.gradients, strict=True
            )
        ]

    def aggregate_multi_layers(self, cam_per_target_layer):
        return cam_per_target_layer


def token_reshape_transform(num_prefix_tokens: int, grid: tuple[int, int]) -> Callable:
    """Tokens ``(B, prefix + gh*gw, C)`` -> ``(B, C, gh, gw)``, dropping all prefix tokens."""
    height, width = grid

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, num_prefix_tokens:, :]
        if patches.shape[1] != height * width:
            raise ValueError(
                f"{tokens.shape[1]} tokens do not split into {num_prefix_tokens} prefix tokens "
                f"and a {height}x{width} grid"
            )
        return patches.reshape(tokens.shape[0], height, width, tokens.shape[2]).permute(0, 3, 1, 2)

    return reshape


def gradcam_maps(
    model: LoadedModel, pixel_values: torch.Tensor, classes: Sequence[int] | None = None,
    **settings: Any,
) -> tuple[dict[MapKey, np.ndarray], torch.Tensor]:
    """Grad-CAM ``(B, 1, h, w)`` at each of the model's Grad-CAM layers, in one forward/backward,
    and that forward pass's class logits (``settings``: other methods' settings, unused)."""
    _require_classifier(model, "Grad-CAM")
    layers = model.gradcam_layers()
    classes = _checked_classes(classes, pixel_values.shape[0])
    if classes is not None:
        targets = [ClassifierOutputTarget(c) for c in classes]
    else:
        targets = None  # pytorch-grad-cam: the predicted class
    reshape = _gradcam_reshape(model)
    scorer = _Scorer(model)
    # gradients are needed even when the caller runs under no_grad / inference_mode
    with torch.inference_mode(False), torch.enable_grad(), _backward_from(scorer, layers[0][1]):
        cam = _GridGradCAM(scorer, [module for _, module in layers], reshape_transform=reshape)
        try:
            grids = cam(pixel_values.clone(), targets)
        finally:
            cam.activations_and_grads.release()
    maps = {("gradcam", index): grid[:, None] for (index, _), grid in zip(layers, grids, strict=True)}
    return maps, cam.outputs.detach()


def _require_classifier(model: LoadedModel, method: str) -> None:
    if not model.is_classifier:
        raise ValueError(
            f"model {model.spec.key!r} has no classifier head, so {method} has no class logit "
            "to explain; train a linear probe (sightline.finetune, strategy 'linear_probe') "
            "and load it with finetune.load_run"
        )


def _checked_classes(classes: Sequence[int] | None, batch: int) -> list[int] | None:
    """The target classes as ints, one per image (None: the predicted ones)."""
    if classes is None:
        return None
    if len(classes) != batch:
        raise ValueError(f"need one class per image: {len(classes)} for {batch}")
    return [int(c) for c in classes]


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
    """Backpropagate only down to ``first_layer``'s output.

    Parameters stop requiring gradients and the layer's output becomes a leaf, so the
    backward pass computes no weight gradients and skips the blocks before the layer.
    Gradients at and after the layer are unchanged.
    """
    trainable = [p for p in module.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    handle = first_layer.register_forward_hook(
        lambda _module, _inputs, output: output.detach().requires_grad_(True), prepend=True
    )
    try:
        yield
    finally:
        handle.remove()
        for parameter in trainable:
            parameter.requires_grad_(True)


# --- XRAI --------------------------------------------------------------------------------


def _targets(
    model: LoadedModel, pixel_values: torch.Tensor, classes: Sequence[int] | None
) -> list[int]:
    """The class each image is explained for: the given ones, else the predicted class."""
    _require_classifier(model, "XRAI")
    classes = _checked_classes(classes, pixel_values.shape[0])
    if classes is not None:
        return classes
    with torch.inference_mode():
        return model.score(pixel_values).argmax(dim=-1).tolist()


def xrai_call_function(model: LoadedModel, target: int) -> Callable:
    """PAIR ``saliency``'s model call: HWC batches in, d(logit of ``target``)/d(input) out."""

    def call(x_batch: np.ndarray, call_model_args: Any = None, expected_keys: Any = None) -> dict:
        x = torch.from_numpy(np.ascontiguousarray(x_batch, dtype=np.float32))
        x = x.permute(0, 3, 1, 2).to(model.device).requires_grad_(True)
        with torch.inference_mode(False), torch.enable_grad():
            logit = model.score(x)[:, target].sum()
            (grads,) = torch.autograd.grad(logit, x)
        return {INPUT_OUTPUT_GRADIENTS: grads.permute(0, 2, 3, 1).cpu().numpy()}

    return call


def xrai_maps(
    model: LoadedModel,
    pixel_values: torch.Tensor,
    classes: Sequence[int] | None = None,
    settings: XraiSettings = XraiSettings(),
    segments: Sequence[list[np.ndarray]] | None = None,
    on_image: Callable[[], None] | None = None,
) -> dict[MapKey, np.ndarray]:
    """XRAI ``(B, 1, S, S)`` on the input frame, min-max scaled to [0, 1], one image at a time;
    ``segments``: each image's `xrai_segments` (default: computed here); ``on_image`` is
    called after each image."""
    if settings.algorithm not in ("full", "fast"):
        raise ValueError(f"XRAI algorithm must be 'full' or 'fast', got {settings.algorithm!r}")
    if settings.steps < 2 or settings.batch_size < 1:
        raise ValueError(f"XRAI needs steps >= 2 and batch_size >= 1, got {settings}")
    if segments is not None and len(segments) != len(pixel_values):
        raise ValueError(f"XRAI got {len(segments)} segment lists for {len(pixel_values)} images")
    parameters = XRAIParameters(steps=settings.steps, algorithm=settings.algorithm)
    maps = []
    with _frozen(model.module):
        targets = _targets(model, pixel_values, classes)
        for index, (image, target) in enumerate(zip(pixel_values, targets, strict=True)):
            x = image.permute(1, 2, 0).detach().cpu().numpy()
            raw = XRAI().GetMask(
                x,
                xrai_call_function(model, target),
                segments=xrai_segments(x) if segments is None else segments[index],
                batch_size=settings.batch_size,
                extra_parameters=parameters,
            )
            maps.append(_unit_range(raw))
            if on_image is not None:
                on_image()
    return {("xrai", 0): np.stack(maps)[:, None].astype(np.float32)}


def run_xrai(model: LoadedModel, pixel_values: torch.Tensor,
             classes: Sequence[int] | None = None, *, xrai: XraiSettings = XraiSettings(),
             segments: Sequence[list[np.ndarray]] | None = None,
             on_image: Callable[[], None] | None = None, **settings: Any
             ) -> tuple[dict[MapKey, np.ndarray], None]:
    """`xrai_maps` as the registered method: no class logits of its own passes."""
    return xrai_maps(model, pixel_values, classes, xrai, segments, on_image), None


XRAI_DILATION = 5  # saliency 0.2.1's default dilation radius of the Felzenszwalb segments


def xrai_segments(image_hwc: np.ndarray) -> list[np.ndarray]:
    """XRAI's own segments of an image, the same masks ``saliency`` makes by default.

    ``saliency`` 0.2.1 segments with Felzenszwalb at several scales (its private
    ``_get_segments_felzenszwalb``) and dilates each mask by a disk of radius 5 with
    scikit-image; the dilation is about two thirds of that time, so it runs here through
    OpenCV with the same footprint (binary dilation: identical masks, tested).
    """
    masks = pair_xrai._get_segments_felzenszwalb(image_hwc, dilation_rad=0)
    footprint = disk(XRAI_DILATION).astype(np.uint8)
    return [
        cv2.dilate(mask.astype(np.uint8), footprint, borderType=cv2.BORDER_CONSTANT).astype(bool)
        for mask in masks
    ]


def _unit_range(values: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] (a constant map becomes all zero)."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


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
