"""Models from a Python factory: a user function ``package.module:function`` (called with no
arguments) that returns an ``nn.Module``; preprocessing from the module's timm
``pretrained_cfg`` if it carries one, else the spec's ``input``."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .spec import ModelError, Size


@dataclass(frozen=True, eq=False)
class FactoryBuilder:
    """A user function ``package.module:function`` that returns the module (the same call for
    random and pretrained weights: the factory decides)."""

    def random(self, name: str, size: Size) -> nn.Module:
        return self.pretrained(name, None)

    def pretrained(self, name: str, cache_dir: Path | None) -> nn.Module:
        """The module the factory returns, or a ModelError naming what is missing."""
        module_name, _, attribute = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ModelError(f"factory {name!r}: cannot import {module_name!r} ({error}); is the "
                             "package installed or on PYTHONPATH?") from error
        factory = getattr(module, attribute, None)
        if not callable(factory):
            raise ModelError(f"factory {name!r}: {module_name} has no function {attribute!r}")
        built = factory()
        if not isinstance(built, nn.Module):
            raise ModelError(f"factory {name!r} returned {type(built).__name__}, not an nn.Module")
        return built

    def hub_id(self, name: str) -> str:
        return name
