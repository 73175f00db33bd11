"""A model's input frame and normalisation: named normalisations, and the checkpoint's own
preprocessing with a spec's ``input`` fields over it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..geometry import Geometry
from .spec import ModelError, Triple

if TYPE_CHECKING:
    from sightline.config import InputSpec

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

Preprocessing = tuple[Geometry, Triple, Triple]


def square_side(key: str, size: Any) -> int:
    """The side of a square input size (an int or ``{height, width}``); non-square: an error."""
    if isinstance(size, int):
        return size
    height, width = size["height"], size["width"]
    if height != width:
        raise ModelError(f"model {key!r}: its input is {height}x{width}; sightline's input frame "
                         "is square (geometry.Geometry): set input.size")
    return int(height)


def interpolation_name(key: str, name: str) -> Literal["bilinear", "bicubic"]:
    """A preprocessing's interpolation, if sightline's geometry has it."""
    if name not in ("bilinear", "bicubic"):
        raise ModelError(f"model {key!r}: its preprocessing interpolates with {name!r}; set "
                         "input.interpolation (bilinear or bicubic)")
    return name  # type: ignore[return-value]


def resolve_preprocessing(key: str, derived: Preprocessing | None,
                          given: InputSpec | None) -> Preprocessing:
    """The checkpoint's own preprocessing with the spec's ``input`` fields over it."""
    if given is None:
        if derived is None:
            raise ModelError(f"model {key!r}: no preprocessing config found with the checkpoint; set "
                             "input (size, resize: squash or the shortest edge, interpolation, mean, std)")
        return derived
    base, base_mean, base_std = derived or (None, None, None)
    size = given.size if given.size is not None else (base.size if base else None)
    if size is None:
        raise ModelError(f"model {key!r}: set input.size (its checkpoint has no preprocessing "
                         "config to read it from)")
    if given.resize is not None:
        resize = None if given.resize == "squash" else int(given.resize)
    elif given.crop_pct is not None:
        resize = math.floor(size / given.crop_pct)
    else:  # the checkpoint's crop ratio kept at the given size
        resize = math.floor(size * base.resize / base.size) if base and base.resize else None
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
