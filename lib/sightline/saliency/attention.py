"""Maps read from attention weights, all from one forward pass (with one backward pass for
``chefer``): ``cls``, ``rollout``, ``probe``, ``mean_received``, ``chefer``; their definitions are
in docs/methods.md and each entry's ``help`` in `sightline.registry`."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from sightline import registry
from sightline.models import LoadedModel, pooling_heads

from .common import Attentions, MapKey, _gradients_on, _on_grid, _require_classifier, _target_classes


def _attention_maps(model: LoadedModel, pixel_values: torch.Tensor, methods: Sequence[str],
                    classes: Sequence[int] | None = None
                    ) -> tuple[dict[MapKey, np.ndarray], torch.Tensor | None]:
    """One forward pass capturing every layer's attention (with its graph and one backward
    pass for ``chefer``), read by each method; also the class logits (None: no classifier)."""
    relevance = [m for m in methods if registry.METHODS[m].runs == "attention_gradients"]
    readers = [m for m in methods if m not in relevance]
    if not relevance:
        with torch.inference_mode():
            output, attentions = model.attentions(pixel_values)
            attentions = _checked_attentions(model, attentions, pixel_values.shape[0])
            return (_read_attentions(model, attentions, output, readers),
                    class_logits(model, output) if model.is_classifier else None)
    _require_classifier(model, registry.METHODS[relevance[0]].label)
    with _gradients_on(model), _probe_recorder(model) as probe:
        # parameters frozen, so the graph runs from the input and no weight gradient is made
        pixels = pixel_values.clone().requires_grad_(True)
        output, attentions = model.attentions(pixels)
        attentions = _checked_attentions(model, attentions, pixels.shape[0])
        logits = class_logits(model, output)
        # images are independent in eval mode: one backward of the sum gives each its gradient
        score = logits.gather(1, _target_classes(logits, classes)[:, None]).sum()
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


def _read_attentions(model: LoadedModel, attentions: Attentions, output: Any,
                     methods: Sequence[str]) -> dict[MapKey, np.ndarray]:
    """Each reader method's maps of the same attentions."""
    return {key: grid for method in methods
            for key, grid in registry.METHODS[method](model, attentions, output).items()}


def _checked_attentions(model: LoadedModel, attentions: Attentions, batch: int) -> Attentions:
    """The captured attentions: one ``(B, heads, T, T)`` tensor per layer, or an error."""
    tokens = model.num_prefix_tokens + model.grid[0] * model.grid[1]
    expected = (batch, model.num_heads, tokens, tokens)
    if not attentions or len(attentions) != model.num_layers:
        raise RuntimeError(f"model {model.spec.key!r} returned {len(attentions or ())} attention tensors, "
                           f"expected {model.num_layers}: is attention eager / unfused (not SDPA/flash)?")
    for layer, attention in enumerate(attentions):
        if tuple(attention.shape) != expected:
            raise RuntimeError(f"model {model.spec.key!r} layer {layer}: attention shape "
                               f"{tuple(attention.shape)}, expected {expected} "
                               f"({model.num_prefix_tokens} prefix tokens + {model.grid} patches)")
    return attentions


def _with_head_mean(model: LoadedModel, per_head: torch.Tensor) -> np.ndarray:
    """``(B, H, N)`` -> ``(B, H + 1, gh, gw)``, the last slot the mean over heads."""
    return _on_grid(model, torch.cat([per_head, per_head.mean(dim=1, keepdim=True)], dim=1))


def cls_maps(model: LoadedModel, attentions: Attentions, output: Any) -> dict[MapKey, np.ndarray]:
    """Per layer, each head's CLS row over patch tokens and their mean."""
    start = model.num_prefix_tokens
    return {("cls", layer): _with_head_mean(model, a[:, :, 0, start:])
            for layer, a in enumerate(attentions)}


def rollout_maps(model: LoadedModel, attentions: Attentions, output: Any
                 ) -> dict[MapKey, np.ndarray]:
    """Per end layer, the rollout's CLS row over patch tokens."""
    start = model.num_prefix_tokens
    return {("rollout", layer): _on_grid(model, joint[:, None, 0, start:])
            for layer, joint in enumerate(rollout_matrices(attentions))}


def mean_received_maps(model: LoadedModel, attentions: Attentions, output: Any
                       ) -> dict[MapKey, np.ndarray]:
    """Per layer, the attention each patch receives averaged over query rows, per head."""
    start = model.num_prefix_tokens
    return {("mean_received", layer): _with_head_mean(model, a[:, :, :, start:].mean(dim=2))
            for layer, a in enumerate(attentions)}


def probe_maps(model: LoadedModel, attentions: Attentions, output: Any
               ) -> dict[MapKey, np.ndarray]:
    """The pooling head's probe attention over patch tokens, as layer ``num_layers``."""
    weights = probe_attention(model.module, output.last_hidden_state)
    return {("probe", model.num_layers): _with_head_mean(model, weights[:, :, model.num_prefix_tokens:])}


def probe_attention(module: nn.Module, last_hidden_state: torch.Tensor) -> torch.Tensor:
    """Per-head attention ``(B, H, T)`` of a MAP pooling head's learned probe over tokens (the
    head re-run on its own input with per-head weights returned)."""
    head = _pooling_head(module)
    probe = head.probe.expand(last_hidden_state.shape[0], -1, -1)
    _, weights = head.attention(probe, last_hidden_state, last_hidden_state, need_weights=True,
                                average_attn_weights=False)
    return weights[:, :, 0, :]


def _pooling_head(module: nn.Module) -> nn.Module:
    """The one MAP pooling head of a module: a ``probe`` and an nn.MultiheadAttention."""
    heads = pooling_heads(module)
    if len(heads) != 1:
        raise ValueError(f"{type(module).__name__} has {len(heads)} attention-pooling heads (a module with a "
                         "`probe` and an nn.MultiheadAttention `attention`), expected 1")
    return heads[0]


def rollout_matrices(attentions: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Cumulative rollout ``(B, T, T)`` through layers ``0..l``, for each ``l``: per layer
    average the heads, add the identity, renormalise rows to sum 1; ``A_l @ ... @ A_0``."""
    joint = None
    for attention in attentions:
        if attention.ndim != 4 or attention.shape[-1] != attention.shape[-2]:
            raise ValueError(f"attention must be (B, heads, T, T), got {tuple(attention.shape)}")
        fused = attention.float().mean(dim=1)
        fused = fused + torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        fused = fused / fused.sum(dim=-1, keepdim=True)
        joint = fused if joint is None else fused @ joint
        yield joint


def rollout(attentions: Sequence[torch.Tensor], num_prefix_tokens: int) -> torch.Tensor:
    """Attention rollout read at the CLS row (token 0) over patch tokens: ``(B, num_patches)``
    (all ``num_prefix_tokens`` leading tokens skipped as columns)."""
    if num_prefix_tokens < 1:
        raise ValueError("rollout reads the CLS row (token 0): num_prefix_tokens must be >= 1")
    *_, joint = rollout_matrices(attentions)
    return joint[:, 0, num_prefix_tokens:]


def gradient_weighted(attention: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """``mean_heads((∇A ⊙ A)⁺)``: ``(B, H, Q, T)`` attention and its gradient -> ``(B, Q, T)``."""
    if attention.shape != gradient.shape or attention.ndim != 4:
        raise ValueError(f"attention and gradient must both be (B, heads, Q, T), got "
                         f"{tuple(attention.shape)} and {tuple(gradient.shape)}")
    return (gradient.float() * attention.float()).clamp(min=0).mean(dim=1)


def chefer_matrices(
    attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor]
) -> Iterator[torch.Tensor]:
    """Relevance ``(B, T, T)`` after blocks ``0..l``, for each ``l`` (Chefer et al. 2021):
    ``R = I``; per block ``R ← R + Ā R`` with ``Ā = mean_heads((∇A ⊙ A)⁺)``."""
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


def chefer_maps(model: LoadedModel, attentions: Attentions, gradients: Sequence[torch.Tensor],
                probe: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[MapKey, np.ndarray]:
    """``("chefer", l) -> (B, 1, gh, gw)``: the relevance through blocks ``0..l`` read at the CLS
    row, or (``probe`` = the pooling probe's attention ``(B, H, 1, T)`` and its gradient) at
    the probe's gradient-weighted attention row times ``R``; prefix tokens skipped."""
    start = model.num_prefix_tokens
    if probe is None and model.readout != "cls":
        raise ValueError(f"model {model.spec.key!r} has no CLS token: Chefer relevance reads the pooling "
                         "head's probe, pass its attention and gradient")
    readout = gradient_weighted(*probe) if probe is not None else None  # (B, 1, T)
    return {("chefer", layer): _on_grid(model, (relevance[:, :1] if readout is None
                                                else readout @ relevance)[:, :, start:])
            for layer, relevance in enumerate(chefer_matrices(attentions, gradients))}


def class_logits(model: LoadedModel, output: Any) -> torch.Tensor:
    """The class logits of a forward pass's output: the style head's on the pooled features
    (`LoadedModel.score` on an output already computed)."""
    features = model.spec.arch.features(output)
    return features if model.head is None else model.head(features)


@contextmanager
def _probe_recorder(model: LoadedModel) -> Iterator[list[torch.Tensor]]:
    """For a probe-readout model, the pooling head's probe attention ``(B, H, 1, T)`` as the
    forward pass used it (with a gradient), in the yielded list: ``nn.MultiheadAttention``
    returns only a copy, so a hook recomputes it from the head's projections (tested equal)."""
    recorded: list[torch.Tensor] = []
    if model.readout != "probe":
        yield recorded
        return
    attention = _pooling_head(model.module).attention

    def hook(module: nn.MultiheadAttention, args: tuple, kwargs: dict, output: Any) -> Any:
        if len(args) != 3 or kwargs or recorded:
            raise RuntimeError(f"{type(model.module).__name__}'s pooling head must call its attention "
                               "once per forward pass with (probe, tokens, tokens) only, for Chefer "
                               "relevance to recompute it")
        out, weights = multihead_attention(module, *args)
        recorded.append(weights)
        return out, output[1]

    with attention.register_forward_hook(hook, with_kwargs=True):
        yield recorded


def multihead_attention(
    module: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """An ``nn.MultiheadAttention``'s output and the per-head softmax weights ``(B, H, Q, T)``
    it is computed from (batch-first, packed projections, no masks / bias_k / zero attention)."""
    if not module.batch_first or module.in_proj_weight is None or module.bias_k is not None \
            or module.add_zero_attn:
        raise ValueError("Chefer relevance recomputes the pooling head's attention and supports a "
                         "batch-first nn.MultiheadAttention with packed in-projections, no bias_k and "
                         "no add_zero_attn")
    heads, width = module.num_heads, module.head_dim
    biases = module.in_proj_bias.chunk(3) if module.in_proj_bias is not None else (None,) * 3

    def project(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return nn.functional.linear(x, weight, bias).unflatten(-1, (heads, width)).transpose(1, 2)

    q, k, v = (project(x, w, b) for x, w, b in zip((query, key, value), module.in_proj_weight.chunk(3),
                                                       biases, strict=True))
    weights = (q @ k.transpose(-1, -2) / math.sqrt(width)).softmax(dim=-1)
    out = (weights @ v).transpose(1, 2).flatten(2)
    return module.out_proj(out), weights
