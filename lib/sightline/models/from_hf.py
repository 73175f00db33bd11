"""Models from Hugging Face transformers: a vision backbone by hub id or local directory,
built with eager attention so every layer's weights exist; config and preprocessing from the
checkpoint's own ``config.json`` and ``preprocessor_config.json``."""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import huggingface_hub
import torch
from torch import nn
from transformers import MODEL_MAPPING, AutoConfig, PretrainedConfig, PreTrainedModel

from ..geometry import Geometry
from ..registry import applicable_methods
from .preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, square_side
from .spec import QV_PROJECTIONS, Layout, LoraDefaults, ModelError, Readout, Size

_PIL_RESAMPLE = {2: "bilinear", 3: "bicubic"}


@dataclass(frozen=True, eq=False)  # identity-hashed, so a ModelSpec hashes
class HFVision:
    """A transformers vision backbone: architecture class, config, per-family quirks. ``base`` /
    ``tiny``: the config in code (presets), else the checkpoint's ``pretrained_config`` (specs);
    ``norm1``: the LayerNorm before each block's attention (Grad-CAM's target in the last block;
    None: the block's first LayerNorm); ``overrides``: config fields forced in every build;
    ``call_kwargs(pixel_values, grid)``: extra forward arguments; ``lora``: None if not offered."""

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
            checkpoint, attn_implementation="eager", cache_dir=cache_dir,
            local_files_only=huggingface_hub.constants.is_offline_mode(), **self.overrides)

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

    def check_frame(self, module: nn.Module, geometry: Geometry, key: str) -> None:
        """A frame other than the config's ``image_size`` runs (position embeddings
        interpolated) in one dry forward pass, else the error gives the library's reason."""
        built = getattr(module.config, "image_size", geometry.size)
        if built == geometry.size:
            return
        try:
            with torch.inference_mode():
                self.forward(module, torch.zeros(1, 3, geometry.size, geometry.size),
                             self.layout(module, geometry)[2])
        except Exception as error:  # the library's own reason, said with the remedy
            raise ModelError(f"model {key!r}: {type(module).__name__} is built for {built}-px "
                             f"input and cannot run at {geometry.size} px ({error}); set "
                             f"input.size: {built}") from error

    def describe(self, module: nn.Module, geometry: Geometry, key: str) -> Layout:
        """CLS from the embeddings' parameters, registers from the config, a MAP head if any."""
        layers, heads, grid = self.layout(module, geometry)
        cls = any(name.rsplit(".", 1)[-1] in ("cls_token", "class_embedding")
                  for name, _ in module.named_parameters())
        prefix = int(cls) + int(getattr(module.config, "num_register_tokens", 0) or 0)
        readout: Readout = "cls" if cls else "probe" if pooling_heads(module) else "tokens"
        return Layout(readout, layers, heads, prefix, grid, applicable_methods(readout, False))

    def forward(self, module: nn.Module, pixel_values: torch.Tensor, grid: tuple[int, int],
                **kwargs: Any) -> Any:
        extra = self.call_kwargs(pixel_values, grid) if self.call_kwargs else {}
        if getattr(module.config, "image_size", None) != pixel_values.shape[-1] and \
                "interpolate_pos_encoding" in inspect.signature(module.forward).parameters:
            extra["interpolate_pos_encoding"] = True
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
            raise ModelError(f"{type(module).__name__}: found {len(found)} blocks with {what}, expected "
                             f"{num_layers}; has the transformers layout changed?")
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
    return [m for m in module.modules()
            if isinstance(getattr(m, "attention", None), nn.MultiheadAttention)
            and isinstance(getattr(m, "probe", None), nn.Parameter)]


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


def checkpoint_arch(key: str, name: str) -> HFVision:
    """The arch of a checkpoint (a local directory or a hub id in the cache) from its own
    config: its vision tower's for a full CLIP / SigLIP checkpoint."""
    try:
        config = AutoConfig.from_pretrained(
            name, local_files_only=huggingface_hub.constants.is_offline_mode())
    except (OSError, ValueError) as error:
        raise ModelError(f"model {key!r}: no Hugging Face config for {name!r} (a local directory "
                         f"with config.json, or an id in the hub cache: `hf download {name}`). "
                         f"Cause: {error}") from error
    config = getattr(config, "vision_config", None) or config
    model_cls = MODEL_MAPPING.get(type(config), None)
    if model_cls is None:
        raise ModelError(f"model {key!r}: transformers has no base model class for "
                         f"{type(config).__name__} ({name})")
    family = HF_FAMILIES.get(config.model_type, {})
    return HFVision(model_cls, type(config), pretrained_config=config, **family)


def hf_preprocessing(key: str, name: str) -> Preprocessing | None:
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
        geometry = Geometry(square_side(key, crop), size["shortest_edge"], interpolation)
    elif "height" in size and not config.get("do_center_crop"):
        geometry = Geometry(square_side(key, size), None, interpolation)
    else:
        raise ModelError(f"model {key!r}: its processor config (size {size}, crop {crop}) is "
                         "neither squash nor shortest-edge + centre crop; set input")
    mean = tuple(config.get("image_mean", IMAGENET_MEAN))
    std = tuple(config.get("image_std", IMAGENET_STD))
    return geometry, mean, std
