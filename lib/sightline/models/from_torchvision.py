"""Models from torchvision: ``torchvision.models.get_model`` by builder name with a weights
enum (from the torch hub cache), preprocessing from the weights' ``transforms()``."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import get_model, get_model_weights, list_models

from ..geometry import Geometry
from .preprocessing import Preprocessing, interpolation_name
from .spec import ModelError, Size


def check_name(key: str, name: str, weights: str) -> None:
    """A torchvision builder name and one of its weights enums (or pretrained / random),
    else the close ones."""
    names = list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; close: {', '.join(close)}" if close else ""
        raise ModelError(f"model {key!r}: {name!r} is not a torchvision model{hint}")
    allowed = ("pretrained", "random", *get_model_weights(name).__members__)  # DEFAULT too
    if weights not in allowed:
        close = difflib.get_close_matches(weights, allowed, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ModelError(f"model {key!r}: weights {weights!r} are not torchvision {name}'s; "
                         f"allowed: {', '.join(allowed)}.{hint}")


@dataclass(frozen=True, eq=False)
class TorchvisionBuilder:
    """``torchvision.models.get_model`` with a weights enum name (``DEFAULT`` if None, and
    where a params entry says ``pretrained``; None: ``random``)."""

    tag: str | None = None

    def random(self, name: str, size: Size) -> nn.Module:
        return get_model(name, weights=None)

    def pretrained(self, name: str, cache_dir: Path | None) -> nn.Module:
        return get_model(name, weights=self.tag or "DEFAULT")

    def hub_id(self, name: str) -> str:
        return get_model_weights(name)[self.tag or "DEFAULT"].url

    def download_hint(self, name: str) -> str:
        url = self.hub_id(name)
        return (f"On a machine with network download {url} and copy it to "
                f"{Path(torch.hub.get_dir()) / 'checkpoints' / url.rsplit('/', 1)[-1]} "
                "(or set TORCH_HOME), or give the file as `checkpoint`.")

    def preprocessing(self, key: str, name: str) -> Preprocessing:
        """The weights' eval ``transforms()`` as a geometry (the enum ``tag``'s)."""
        transform = get_model_weights(name)[self.tag].transforms()
        geometry = Geometry(transform.crop_size[0], transform.resize_size[0],
                            interpolation_name(key, transform.interpolation.value))
        return geometry, tuple(transform.mean), tuple(transform.std)
