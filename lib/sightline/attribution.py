"""AttnLRP and LeGrad: relevance of a ViT's patch tokens for a class logit (the model's, or a
backbone's style head; the predicted class by default), per layer; definitions in docs/methods.md."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from .models import LoadedModel
from .saliency.attention import class_logits
from .saliency.common import _gradients_on, _on_grid, _target_classes

# children whose output is an attention's queries or keys (HF ViT / MAE / CLIP / SigLIP /
# DINOv3 projections; timm's q_norm / k_norm, applied to every query and key)
_QUERY_KEY = ("query", "key", "q_proj", "k_proj", "q_norm", "k_norm")
_ACTIVATIONS = (nn.GELU, nn.SiLU, nn.ReLU, nn.Tanh, nn.Sigmoid)


class _IdentityRule(torch.autograd.Function):
    """AttnLRP's identity rule for an element-wise ``f``: relevance passes unchanged, i.e. the
    gradient is ``f(x) / x`` times the output's."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fn: Any) -> torch.Tensor:
        out = fn(x)
        ctx.save_for_backward(out / (x + 1e-10))
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.saved_tensors[0] * grad, None


def _layer_norm_identity(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm with its standard deviation held constant (AttnLRP's identity rule)."""
    centred = x - x.mean(dim=-1, keepdim=True)
    y = centred / (centred.pow(2).mean(dim=-1, keepdim=True) + norm.eps).sqrt().detach()
    if norm.weight is not None:
        y = y * norm.weight
    return y + norm.bias if norm.bias is not None else y


def _constant_query_key(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """nn.MultiheadAttention's query and key detached (CP-LRP), positional or keyword."""
    args, kwargs = list(args), dict(kwargs)
    for position, name in enumerate(("query", "key")):
        if len(args) > position:
            args[position] = args[position].detach()
        elif name in kwargs:
            kwargs[name] = kwargs[name].detach()
    return tuple(args), kwargs


@contextmanager
def attnlrp_rules(module: nn.Module) -> Iterator[None]:
    """Patch ``module`` in place, for the context, so that input x gradient is AttnLRP relevance."""
    with ExitStack() as undo:
        for name, child in module.named_modules():
            if isinstance(child, nn.LayerNorm):
                child.forward = _layer_norm_identity.__get__(child)
                undo.callback(delattr, child, "forward")
            elif isinstance(child, _ACTIVATIONS) or type(child).__module__ == \
                    "transformers.activations":
                child.forward = (lambda original: lambda x: _IdentityRule.apply(x, original))(
                    child.forward)
                undo.callback(delattr, child, "forward")
            elif isinstance(child, nn.MultiheadAttention):
                undo.callback(child.register_forward_pre_hook(
                    _constant_query_key, with_kwargs=True).remove)
            elif name.rsplit(".", 1)[-1] in _QUERY_KEY:
                undo.callback(child.register_forward_hook(
                    lambda _m, _i, output: output.detach()).remove)
        yield


def _tokens(value: Any) -> torch.Tensor:
    """A block's hidden states from its input args or its output (HF blocks may return tuples)."""
    return value[0] if isinstance(value, tuple | list) else value


def attnlrp_relevance(model: LoadedModel, pixel_values: torch.Tensor, classes: Sequence[int] | None = None
                      ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """AttnLRP relevance ``(B, T)`` of every token entering each block (prefix tokens
    included: with zero biases each layer's relevance sums to the logit), and the logits."""
    blocks = model.spec.arch.blocks(model.module, model.num_layers)
    entering: list[torch.Tensor] = []
    with ExitStack() as stack:
        stack.enter_context(_gradients_on(model))
        stack.enter_context(attnlrp_rules(model.module))
        if model.head is not None:
            stack.enter_context(attnlrp_rules(model.head))
        for block in blocks:
            stack.callback(block.register_forward_pre_hook(
                lambda _m, args, kwargs: entering.append(
                    _tokens(args) if args else kwargs["hidden_states"]),
                with_kwargs=True).remove)
        pixels = pixel_values.detach().clone().requires_grad_(True)
        logits = model.score(pixels)
        score = logits.gather(1, _target_classes(logits, classes)[:, None]).sum()
        gradients = torch.autograd.grad(score, entering)
    return ([(h * g).sum(dim=-1).detach() for h, g in zip(entering, gradients, strict=True)],
            logits.detach())


def attnlrp_maps(model: LoadedModel, pixel_values: torch.Tensor,
                 classes: Sequence[int] | None = None, **settings: Any
                 ) -> tuple[dict[tuple[str, int], np.ndarray], torch.Tensor]:
    """``("attnlrp", l) -> (B, 1, gh, gw)``: the positive relevance of the patch tokens
    entering block ``l``, for every block; and the class logits."""
    relevance, logits = attnlrp_relevance(model, pixel_values, classes)
    start = model.num_prefix_tokens
    return ({("attnlrp", layer): _on_grid(model, r[:, start:].clamp(min=0))
             for layer, r in enumerate(relevance)}, logits)


def _fresh_leaf(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """A block's hidden states as a new leaf that requires grad (positional or keyword)."""
    if args:
        return (args[0].detach().requires_grad_(True), *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": kwargs["hidden_states"].detach().requires_grad_(True)}


def legrad_heads(gradients: Sequence[torch.Tensor], num_prefix_tokens: int) -> torch.Tensor:
    """``(B, L, H, keys - prefix)``: per block and head, the mean over queries of
    ``(∂ s^l / ∂ A^l)⁺``, from each block's ``(B, H, Q, T)`` attention gradient (LeGrad)."""
    return torch.stack([g.clamp(min=0).mean(dim=2)[..., num_prefix_tokens:] for g in gradients],
                       dim=1)


def legrad_maps(model: LoadedModel, pixel_values: torch.Tensor,
                classes: Sequence[int] | None = None, **settings: Any
                ) -> tuple[dict[tuple[str, int], np.ndarray], torch.Tensor]:
    """``("legrad", l) -> (B, H + 1, gh, gw)`` (blocks ``l..L-1``, per head and the head mean),
    and the class logits. One forward pass: every block's output is stacked along the batch
    after the last block, so the model's own tail scores each; each block starts from a fresh
    leaf of its input, so one backward pass of the scores' sum gives every ``∂s^l/∂A^l``."""
    blocks = model.spec.arch.blocks(model.module, model.num_layers)
    outputs: list[torch.Tensor] = []

    def stack_blocks(_m: nn.Module, _args: Any, output: Any) -> Any:
        outputs.append(_tokens(output))
        if len(outputs) < len(blocks):
            return None
        stacked = torch.cat(outputs)
        return (stacked, *output[1:]) if isinstance(output, tuple) else stacked

    with ExitStack() as stack:
        stack.enter_context(_gradients_on(model))
        for block in blocks:
            stack.callback(block.register_forward_pre_hook(_fresh_leaf, with_kwargs=True).remove)
            stack.callback(block.register_forward_hook(stack_blocks).remove)
        output, attentions = model.attentions(pixel_values.detach())
        per_block = class_logits(model, output).reshape(len(blocks), len(pixel_values), -1)
        logits = per_block[-1]
        targets = _target_classes(logits, classes)[None, :, None].expand(len(blocks), -1, 1)
        scores = per_block.gather(2, targets)[..., 0]
        gradients = torch.autograd.grad(scores.sum(), list(attentions))
    layers = legrad_heads(gradients, model.num_prefix_tokens)
    from_top = layers.flip(1).cumsum(dim=1).flip(1) / torch.arange(
        len(blocks), 0, -1, device=layers.device)[:, None, None]
    return ({("legrad", layer): _on_grid(model, torch.cat(
        [from_top[:, layer], from_top[:, layer].mean(dim=1, keepdim=True)], dim=1))
        for layer in range(len(blocks))}, logits.detach())
