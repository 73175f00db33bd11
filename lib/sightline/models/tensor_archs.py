"""Archs of modules that map pixels to one tensor (timm, torchvision, factories): a
timm-style ViT whose attention is captured, a CNN by stages, a classifier explained by
Grad-CAM at one layer; and which of them a built module is (`tensor_arch`)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import timm
import torch
from torch import nn

from ..geometry import Geometry
from ..registry import applicable_methods
from .from_timm import TimmBuilder
from .spec import TIMM_QKV, Builder, Layout, LoraDefaults, ModelError, Size, TokenLayout, lora_defaults

if TYPE_CHECKING:
    from sightline.config import ModelChoice


class _TensorModel:
    """Shared by the modules that map pixels to one tensor (timm, torchvision, factories)."""

    builder: Builder

    def random(self, checkpoint: str, size: Size) -> nn.Module:
        return self.builder.random(checkpoint, size)

    def pretrained(self, checkpoint: str, cache_dir: Path | None) -> nn.Module:
        return self.builder.pretrained(checkpoint, cache_dir)

    def hub_id(self, checkpoint: str) -> str:
        return self.builder.hub_id(checkpoint)

    def download_hint(self, checkpoint: str) -> str | None:
        hint = getattr(self.builder, "download_hint", None)
        return hint(checkpoint) if hint else None

    def prepare(self, module: nn.Module) -> None:
        """Nothing to switch."""

    def for_training(self, module: nn.Module) -> None:
        """Nothing to switch (channels-last convolutions: a 14-epoch tiny ResNet-50 run measured no
        faster on a 2-core CPU)."""

    def forward(self, module: nn.Module, pixel_values: torch.Tensor, grid: tuple[int, int],
                **kwargs: Any) -> torch.Tensor:
        return module(pixel_values)

    def features(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def attentions(self, module: nn.Module, pixel_values: torch.Tensor,
                   grid: tuple[int, int]) -> tuple[Any, Sequence[torch.Tensor]]:
        raise ModelError(f"{type(module).__name__} has no attention maps to capture")

    def set_attention(self, module: nn.Module, implementation: str) -> None:
        """Attention capture is not switched here."""

    def describe(self, module: nn.Module, geometry: Geometry, key: str) -> Layout:
        """A CNN-style layout (no heads, no prefix tokens); a ViT reads its own."""
        layers, heads, grid = self.layout(module, geometry)
        return Layout("cnn", layers, heads, 0, grid, applicable_methods("cnn", self.classifier))


@dataclass(frozen=True, eq=False)  # identity-hashed, so a ModelSpec hashes
class TimmViT(_TensorModel):
    """A timm-style vision transformer (``blocks[i].attn``, ``patch_embed``,
    ``num_prefix_tokens``), from any source: attention captured by a forward hook on each
    block's ``attn_drop`` with fused attention off; Grad-CAM at the last block's ``norm1``."""

    builder: Builder = field(default_factory=TimmBuilder)
    lora: LoraDefaults | None = TIMM_QKV
    classifier: bool = True

    token_outputs = True

    def prepare(self, module: nn.Module) -> None:
        """Fused attention (SDPA) off in every block, so the softmax weights exist."""
        for block in module.blocks:
            block.attn.fused_attn = False

    def for_training(self, module: nn.Module) -> None:
        """Fused attention (SDPA) on: training reads no attention weights."""
        for block in module.blocks:
            block.attn.fused_attn = True

    def layout(self, module: nn.Module, geometry: Geometry) -> tuple[int, int, tuple[int, int]]:
        grid = tuple(int(g) for g in module.patch_embed.grid_size)
        return len(module.blocks), int(module.blocks[0].attn.num_heads), grid

    def describe(self, module: nn.Module, geometry: Geometry, key: str) -> Layout:
        layers, heads, grid = self.layout(module, geometry)
        if grid[0] != grid[1]:
            raise ModelError(f"model {key!r}: its patch grid is {grid[0]}x{grid[1]} (img_size "
                             f"{tuple(module.patch_embed.img_size)}); sightline's input frame is square "
                             "(geometry.Geometry): build it for a square input and set input.size")
        patch = module.patch_embed.patch_size[0]
        if not getattr(module.patch_embed, "dynamic_img_size", False) and \
                grid[0] * patch != geometry.size:
            raise ModelError(
                f"model {key!r}: built for {grid[0] * patch}-px input, but its input frame is "
                f"{geometry.size} px, and a module from a factory cannot be rebuilt here: build "
                f"it for {geometry.size} px (timm: img_size={geometry.size}) or set input.size: "
                f"{grid[0] * patch}")
        readout = "cls" if getattr(module, "cls_token", None) is not None else "tokens"
        return Layout(readout, layers, heads, int(module.num_prefix_tokens), grid,
                      applicable_methods(readout, self.classifier))

    def attentions(self, module: nn.Module, pixel_values: torch.Tensor,
                   grid: tuple[int, int]) -> tuple[Any, Sequence[torch.Tensor]]:
        """One forward pass; each block's softmax weights ``(B, heads, T, T)`` as its
        ``attn_drop`` sees them (identity in eval mode)."""
        captured: list[torch.Tensor] = []
        handles = [block.attn.attn_drop.register_forward_hook(lambda _m, _i, output: captured.append(output))
                   for block in module.blocks]
        try:
            output = module(pixel_values)
        finally:
            for handle in handles:
                handle.remove()
        return output, captured

    def blocks(self, module: nn.Module, num_layers: int) -> list[nn.Module]:
        """The transformer blocks in forward order."""
        return list(module.blocks)

    def gradcam_layers(self, module: nn.Module, num_layers: int) -> list[tuple[int, nn.Module]]:
        return [(num_layers - 1, module.blocks[-1].norm1)]


def is_timm_vit(module: nn.Module) -> bool:
    """A timm-style ViT: ``blocks`` with ``attn.num_heads``, ``patch_embed.grid_size``,
    ``num_prefix_tokens``."""
    blocks = getattr(module, "blocks", None)
    return (isinstance(blocks, nn.Sequential | nn.ModuleList) and len(blocks) > 0
            and hasattr(getattr(blocks[0], "attn", None), "num_heads")
            and hasattr(getattr(module, "patch_embed", None), "grid_size")
            and hasattr(module, "num_prefix_tokens"))


def attention_capturable(module: nn.Module) -> bool:
    """Every block's attention has a ``fused_attn`` switch and an ``attn_drop`` to hook."""
    return all(hasattr(b.attn, "fused_attn") and isinstance(getattr(b.attn, "attn_drop", None),
                                                            nn.Module) for b in module.blocks)


@dataclass(frozen=True, eq=False)  # identity-hashed, so a ModelSpec hashes
class TimmCNN(_TensorModel):
    """A timm CNN classifier; ``stages`` are its stage attributes (Grad-CAM at each last block)."""

    tiny: Mapping[str, Any]
    stages: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
    stride: int = 32
    lora: LoraDefaults | None = None  # Q2 fine-tunes CNNs by linear probe or in full
    builder: Builder = field(default_factory=TimmBuilder)

    token_outputs = False
    classifier = True

    def random(self, checkpoint: str, size: Size) -> nn.Module:
        return timm.create_model(checkpoint, pretrained=False, **(self.tiny if size == "tiny" else {}))

    def layout(self, module: nn.Module, geometry: Geometry) -> tuple[int, int, tuple[int, int]]:
        side = geometry.size // self.stride
        return len(self.stages), 0, (side, side)

    def gradcam_layers(self, module: nn.Module, num_layers: int) -> list[tuple[int, nn.Module]]:
        return [(i, getattr(module, stage)[-1]) for i, stage in enumerate(self.stages)]


@dataclass(frozen=True, eq=False)  # identity-hashed, so a ModelSpec hashes
class TimmClassifier(_TensorModel):
    """A classifier explained by Grad-CAM at one layer, as the Shared Interest study did
    (timm by default; any source through ``builder``).

    ``target`` is the dotted path of the Grad-CAM layer (``-1`` indexes the last child),
    ``output`` how that layer's output is laid out: ``nchw`` (CNN feature maps), ``nhwc``
    (timm Swin blocks) or ``tokens`` (``(B, [prefix +] gh*gw, C)`` tokens, prefix tokens
    first: CaiT's self-attention blocks run before its class token is added). ``tiny``
    overrides ``create_model`` arguments; ``build_tiny`` builds the tiny variant itself
    where the model function fixes the sizes (EfficientNet's width / depth multipliers).
    """

    target: str
    output: TokenLayout
    tiny: Mapping[str, Any] = field(default_factory=dict)
    build_tiny: Callable[[str], nn.Module] | None = None
    lora: LoraDefaults | None = None  # explained as published, never fine-tuned
    builder: Builder = field(default_factory=TimmBuilder)
    classifier: bool = True

    token_outputs = False  # Grad-CAM reads the layer through `gradcam_reshape`

    def random(self, checkpoint: str, size: Size) -> nn.Module:
        if size != "tiny" or not isinstance(self.builder, TimmBuilder):
            return self.builder.random(checkpoint, size)
        name = checkpoint.split(".")[0]
        if self.build_tiny is not None:
            return self.build_tiny(name)
        return timm.create_model(name, pretrained=False, **self.tiny)

    def layout(self, module: nn.Module, geometry: Geometry) -> tuple[int, int, tuple[int, int]]:
        """One explained layer, no heads, and the target's grid from a dry forward pass."""
        layer = resolve_layer(module, self.target)
        shape = _output_shapes(module, {"target": layer}, geometry.size)["target"]
        if self.output == "tokens":
            prefix = getattr(module, "num_prefix_tokens", 0)
            for patches in (shape[1], shape[1] - prefix):
                side = math.isqrt(max(patches, 0))
                if side * side == patches:
                    return 1, 0, (side, side)
            raise ModelError(f"{self.target}: {shape[1]} tokens do not form a square grid")
        return 1, 0, (shape[1:3] if self.output == "nhwc" else shape[2:4])

    def gradcam_layers(self, module: nn.Module, num_layers: int) -> list[tuple[int, nn.Module]]:
        return [(0, resolve_layer(module, self.target))]

    def gradcam_reshape(self, grid: tuple[int, int]) -> Callable | None:
        """The target's output as ``(B, C, gh, gw)`` for pytorch-grad-cam (None: already so)."""
        if self.output == "nchw":
            return None
        if self.output == "nhwc":
            return lambda x: x.permute(0, 3, 1, 2)
        height, width = grid
        return lambda x: (x[:, x.shape[1] - height * width:]
                          .reshape(x.shape[0], height, width, x.shape[2]).permute(0, 3, 1, 2))


def resolve_layer(module: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted path (``layer4.-1``: ``-1`` indexes the last child)."""
    layer = module
    for part in path.split("."):
        layer = layer[int(part)] if part.lstrip("-").isdigit() else getattr(layer, part)
    return layer


def _output_shapes(module: nn.Module, layers: Mapping[str, nn.Module],
                  size: int) -> dict[str, tuple[int, ...]]:
    """The shapes of the tensors ``layers`` output in a dry forward pass at ``size`` px."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [layer.register_forward_hook(
        lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape))
        if isinstance(out, torch.Tensor) else None) for name, layer in layers.items()]
    try:
        with torch.inference_mode():
            module(torch.zeros(1, 3, size, size, device=next(module.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def tensor_arch(key: str, module: nn.Module, builder: Builder, choice: ModelChoice,
                 geometry: Geometry) -> TimmViT | TimmClassifier:
    """A timm-style ViT with capturable attention (no ``target_layer`` given), else a
    classifier explained by Grad-CAM at ``target_layer`` or a derived layer."""
    lora = lora_defaults(module)
    classifier = getattr(module, "num_classes", 1) != 0
    if choice.target_layer is None and is_timm_vit(module):
        if not attention_capturable(module):
            raise ModelError(f"model {key!r}: its attention ({type(module.blocks[0].attn).__name__}) has no "
                             "fused_attn switch to turn off, so attention weights cannot be captured; set "
                             "target_layer to explain it by Grad-CAM")
        return TimmViT(builder=builder, lora=lora, classifier=classifier)
    target = choice.target_layer or _default_target(key, module, geometry.size)
    try:
        layer = resolve_layer(module, target)
    except (AttributeError, IndexError, TypeError):
        names = [n for n, _ in module.named_modules() if n]
        close = difflib.get_close_matches(target, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"model {key!r}: target_layer {target!r} is not a module of "
                         f"{type(module).__name__}{hint} (its top-level modules: "
                         f"{', '.join(n for n, _ in module.named_children())})") from None
    output = choice.target_layout or _infer_layout(module, layer, geometry.size)
    return TimmClassifier(target=target, output=output, builder=builder, lora=lora,
                          classifier=classifier)


def _default_target(key: str, module: nn.Module, size: int) -> str:
    """timm's last feature stage (``feature_info``), else the last top-level module whose
    output is a spatial map ``(B, C, h, w)`` with h * w > 1."""
    info = getattr(module, "feature_info", None)
    if info:
        return info[-1]["module"]
    shapes = _output_shapes(module, dict(module.named_children()), size)
    spatial = [n for n, s in shapes.items() if len(s) == 4 and s[2] * s[3] > 1]
    if not spatial:
        raise ModelError(f"model {key!r}: no top-level module of {type(module).__name__} outputs a spatial "
                         "map (B, C, h, w) for Grad-CAM; set target_layer (a dotted module name, e.g. "
                         "'features.7')")
    return spatial[-1]


def _infer_layout(module: nn.Module, layer: nn.Module, size: int) -> TokenLayout:
    """tokens for (B, T, C); NHWC where the module says so (timm ``output_fmt``) or the
    shape does (B, h, h, C), else NCHW."""
    shape = _output_shapes(module, {"layer": layer}, size)["layer"]
    if len(shape) == 3:
        return "tokens"
    fmt = getattr(module, "output_fmt", None)
    if fmt is not None:
        return "nhwc" if str(getattr(fmt, "value", fmt)).upper() == "NHWC" else "nchw"
    return "nhwc" if shape[1] == shape[2] and shape[3] != shape[1] else "nchw"
