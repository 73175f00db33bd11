"""What a model is: its spec (source, name, arch, input frame) and the layout read off a
built module (readout, layers, heads, prefix tokens, patch grid, saliency methods)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import torch
from torch import nn

from ..geometry import Geometry
from ..registry import Readout

Weights = Literal["pretrained", "random"]
Size = Literal["base", "tiny"]
Source = Literal["hf", "timm", "torchvision", "python"]
TokenLayout = Literal["nchw", "nhwc", "tokens"]
Triple = tuple[float, float, float]
Study = Literal["wikichurches", "shared_interest", "photos"]


class ModelError(Exception):
    """A model cannot be built or loaded; the message says which and what to do."""


@dataclass(frozen=True)
class LoraDefaults:
    """LoRA defaults of a model family (peft): the modules adapted and the adapter's shape
    (the seed study's: rank 8, alpha 32, dropout 0.1 on the query and value projections)."""

    targets: tuple[str, ...]
    rank: int = 8
    alpha: float = 32.0
    dropout: float = 0.1


# transformers >= 5.18 names the attention projections q_proj / k_proj / v_proj in every
# vision family used here (tests/test_finetune.py checks they exist); timm fuses them.
QV_PROJECTIONS = LoraDefaults(targets=("q_proj", "v_proj"))
TIMM_QKV = LoraDefaults(targets=("qkv",))


def lora_defaults(module: nn.Module) -> LoraDefaults | None:
    """LoRA targets by the module's own projection names: q_proj / v_proj (transformers),
    a fused qkv (timm); None for modules without attention projections (CNNs)."""
    names = {name.rsplit(".", 1)[-1] for name, _ in module.named_modules()}
    if {"q_proj", "v_proj"} <= names:
        return QV_PROJECTIONS
    if "qkv" in names:
        return TIMM_QKV
    return None


@dataclass(frozen=True)
class Layout:
    """What a built model's maps are read from: readout, token layout, grid, and the
    methods that apply (`sightline.registry.applicable_methods` of the readout)."""

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


class Arch(Builder, Protocol):
    """How maps are read off a built module of one kind (`from_hf.HFVision`, the
    `tensor_archs`): its layout, forward pass, attention capture and Grad-CAM layers."""

    lora: LoraDefaults | None
    classifier: bool
    token_outputs: ClassVar[bool]

    def prepare(self, module: nn.Module) -> None: ...
    def for_training(self, module: nn.Module) -> None: ...
    def describe(self, module: nn.Module, geometry: Geometry, key: str) -> Layout: ...
    def forward(self, module: nn.Module, pixel_values: torch.Tensor, grid: tuple[int, int],
                **kwargs: Any) -> Any: ...
    def attentions(self, module: nn.Module, pixel_values: torch.Tensor,
                   grid: tuple[int, int]) -> tuple[Any, Sequence[torch.Tensor]]: ...
    def features(self, output: Any) -> torch.Tensor: ...
    def gradcam_layers(self, module: nn.Module, num_layers: int) -> list[tuple[int, nn.Module]]: ...


@dataclass(frozen=True)
class ModelSpec:
    """A model: its source and name, how it is built, and its input frame. ``checkpoint``: the
    source's name for it (hub id or local directory, timm / torchvision name, factory path);
    ``weights_file``: a local checkpoint loaded instead of the source's pretrained weights;
    ``only_methods`` / ``study`` (presets): a subset of the derived methods / the study whose
    profiles may list it."""

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
    study: Study | None = None
    notes: str = ""

    def describe(self, module: nn.Module) -> Layout:
        """The layout and methods of a built module of this spec."""
        layout = self.arch.describe(module, self.geometry, self.key)
        if self.only_methods is None:
            return layout
        return replace(layout, methods=tuple(m for m in layout.methods if m in self.only_methods))

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


@functools.cache
def _reference_layout(spec: ModelSpec) -> Layout:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = spec.arch.random(spec.checkpoint, "tiny")
    spec.arch.prepare(module)
    return spec.describe(module.eval())
