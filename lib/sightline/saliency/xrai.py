"""``xrai``: XRAI (Kapishnikov et al. 2019) from PAIR's ``saliency`` package on the model's
input frame, for classifiers, explaining the predicted (or a given) class; the region gains
min-max scaled to [0, 1]: one ``(B, 1, S, S)`` map, layer 0."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import torch
from saliency.core import XRAI, XRAIParameters
from saliency.core import xrai as pair_xrai
from saliency.core.base import INPUT_OUTPUT_GRADIENTS
from skimage.morphology import disk

from sightline.models import LoadedModel

from .common import MapKey, _checked_classes, _frozen, _require_classifier


@dataclass(frozen=True)
class XraiSettings:
    """XRAI's cost knobs: integrated-gradients steps per baseline (2 baselines: black and
    white), model inputs per batch, and the ``full`` or approximate ``fast`` region ranking."""

    steps: int = 100
    batch_size: int = 20
    algorithm: Literal["full", "fast"] = "full"


def _targets(model: LoadedModel, pixel_values: torch.Tensor, classes: Sequence[int] | None) -> list[int]:
    """The class each image is explained for: the given ones, else the predicted class."""
    _require_classifier(model, "XRAI")
    classes = _checked_classes(classes, pixel_values.shape[0])
    if classes is not None:
        return classes
    with torch.inference_mode():
        return model.score(pixel_values).argmax(dim=-1).tolist()


def xrai_call_function(model: LoadedModel, target: int) -> Callable:
    """PAIR ``saliency``'s model call: HWC batches in, d(logit of ``target``)/d(input) out."""

    def call(x_batch: np.ndarray, call_model_args: Any = None, expected_keys: Any = None) -> dict:
        x = torch.from_numpy(np.ascontiguousarray(x_batch, dtype=np.float32))
        x = x.permute(0, 3, 1, 2).to(model.device).requires_grad_(True)
        with torch.inference_mode(False), torch.enable_grad():
            logit = model.score(x)[:, target].sum()
            (grads,) = torch.autograd.grad(logit, x)
        return {INPUT_OUTPUT_GRADIENTS: grads.permute(0, 2, 3, 1).cpu().numpy()}

    return call


def xrai_maps(
    model: LoadedModel, pixel_values: torch.Tensor, classes: Sequence[int] | None = None, *,
    xrai: XraiSettings = XraiSettings(), segments: Sequence[list[np.ndarray]] | None = None,
    on_image: Callable[[], None] | None = None, **other: Any,
) -> tuple[dict[MapKey, np.ndarray], None]:
    """XRAI ``(B, 1, S, S)`` on the input frame, min-max scaled to [0, 1], one image at a time,
    and no class logits (the registered method's return); ``segments``: each image's
    `xrai_segments` (default: computed here); ``on_image`` is called after each image
    (``other``: other methods' settings, unused)."""
    if xrai.algorithm not in ("full", "fast"):
        raise ValueError(f"XRAI algorithm must be 'full' or 'fast', got {xrai.algorithm!r}")
    if xrai.steps < 2 or xrai.batch_size < 1:
        raise ValueError(f"XRAI needs steps >= 2 and batch_size >= 1, got {xrai}")
    if segments is not None and len(segments) != len(pixel_values):
        raise ValueError(f"XRAI got {len(segments)} segment lists for {len(pixel_values)} images")
    parameters = XRAIParameters(steps=xrai.steps, algorithm=xrai.algorithm)
    maps = []
    with _frozen(model.module):
        targets = _targets(model, pixel_values, classes)
        for index, (image, target) in enumerate(zip(pixel_values, targets, strict=True)):
            x = image.permute(1, 2, 0).detach().cpu().numpy()
            raw = XRAI().GetMask(x, xrai_call_function(model, target), batch_size=xrai.batch_size,
                                 segments=xrai_segments(x) if segments is None else segments[index],
                                 extra_parameters=parameters)
            maps.append(_unit_range(raw))
            if on_image is not None:
                on_image()
    return {("xrai", 0): np.stack(maps)[:, None].astype(np.float32)}, None


XRAI_DILATION = 5  # saliency 0.2.1's default dilation radius of the Felzenszwalb segments


def xrai_segments(image_hwc: np.ndarray) -> list[np.ndarray]:
    """XRAI's own segments of an image (``saliency``'s Felzenszwalb masks), dilated through
    OpenCV with scikit-image's disk footprint (identical masks, tested; the dilation was two
    thirds of the time)."""
    footprint = disk(XRAI_DILATION).astype(np.uint8)
    return [cv2.dilate(mask.astype(np.uint8), footprint, borderType=cv2.BORDER_CONSTANT).astype(bool)
            for mask in pair_xrai._get_segments_felzenszwalb(image_hwc, dilation_rad=0)]


def _unit_range(values: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] (a constant map becomes all zero)."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)
