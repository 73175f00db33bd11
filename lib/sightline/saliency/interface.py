"""`extract(model, pixel_values, methods)`: every registered method behind one call,
dispatched on its registry entry's ``runs``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from sightline import registry
from sightline.models import LoadedModel

from .attention import _attention_maps
from .common import MapKey, _require_classifier
from .xrai import XraiSettings


def extract(model: LoadedModel, pixel_values: torch.Tensor, methods: Sequence[str] | None = None,
            **options: Any) -> dict[MapKey, np.ndarray]:
    """Maps ``(method, layer) -> (B, K, gh, gw)`` for ``methods`` (default: all that apply);
    ``options`` as `extract_with_logits` takes them."""
    return extract_with_logits(model, pixel_values, methods, **options)[0]


def extract_with_logits(model: LoadedModel, pixel_values: torch.Tensor, methods: Sequence[str] | None = None,
                        *, classes: Sequence[int] | None = None, xrai: XraiSettings | None = None,
                        segments: Sequence[list[np.ndarray]] | None = None,
                        on_image: Callable[[], None] | None = None
                        ) -> tuple[dict[MapKey, np.ndarray], torch.Tensor | None]:
    """`extract`'s maps and a classifier's class logits ``(B, C)`` from the first forward pass a
    method ran (None: no classifier). ``classes``: one target class per image (default: the
    predicted one); ``xrai``: XRAI's cost; ``segments``: each image's `xrai_segments`, to skip
    recomputing them; ``on_image``: called as XRAI finishes each image."""
    methods = _check_methods(model, methods)
    pixel_values = _check_input(model, pixel_values)
    class_methods = registry.METHODS.names(explains_class=True)
    if classes is not None and not set(class_methods) & set(methods):
        raise ValueError(f"`classes` sets the target class of {list(class_methods)}: pass it "
                         "only with one of them in methods")
    maps: dict[MapKey, np.ndarray] = {}
    passes: list[torch.Tensor | None] = []  # each forward pass's class logits
    attention_methods = [m for m in methods if registry.METHODS[m].runs != "own"]
    if attention_methods:
        found, logits = _attention_maps(model, pixel_values, attention_methods, classes)
        maps, passes = maps | found, [*passes, logits]
    for method in registry.METHODS:
        if method.name in methods and method.runs == "own":
            if method.explains_class:
                _require_classifier(model, method.label)
            found, logits = method(model, pixel_values, classes, xrai=xrai or XraiSettings(),
                                   segments=segments, on_image=on_image)
            maps, passes = maps | found, [*passes, logits]
    if not model.is_classifier:
        return maps, None
    passes = [p for p in passes if p is not None]
    if not passes:  # XRAI alone
        with torch.inference_mode():
            passes = [model.score(pixel_values)]
    return maps, passes[0].detach()


def _check_methods(model: LoadedModel, methods: Sequence[str] | None) -> list[str]:
    allowed = model.methods
    if methods is None:
        return [m for m in allowed if not registry.METHODS[m].explains_class or model.is_classifier]
    wrong = [m for m in methods if m not in allowed]
    if wrong:
        raise ValueError(f"method(s) {wrong} do not apply to model {model.spec.key!r}; "
                         f"its methods are {list(allowed)} (all methods: {list(registry.METHODS.names())})")
    return list(dict.fromkeys(methods))


def _check_input(model: LoadedModel, pixel_values: torch.Tensor) -> torch.Tensor:
    if model.module.training:
        raise ValueError(f"model {model.spec.key!r} is in training mode (dropout; DINOv3 jitters its RoPE "
                         "positions): call model.module.eval() before extracting maps")
    size = model.spec.geometry.size
    if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (3, size, size):
        raise ValueError(f"model {model.spec.key!r} takes pixel_values of shape (B, 3, {size}, {size}) "
                         f"(use model.preprocess), got {tuple(pixel_values.shape)}")
    return pixel_values.to(model.device, torch.float32)
