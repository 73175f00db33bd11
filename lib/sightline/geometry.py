"""Preprocessing geometry: how an image lands in a model's input frame, and boxes with it.

One `Geometry` drives both the pixels a model sees and the masks its maps are scored
against, so the two can never disagree. Two modes, matching the models' processors:

- squash: resize the whole image to ``size x size`` (aspect ratio not kept);
- crop: resize the shortest edge to ``resize`` then centre-crop ``size x size``
  (torchvision's rounding, so the frame matches ``T.Resize`` + ``T.CenterCrop``).

Box coordinates are relative (fractions of the image width / height), as in
WikiChurches' ``building_parts.json``; frame coordinates are relative to the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

Interpolation = Literal["bilinear", "bicubic"]


@dataclass(frozen=True)
class Geometry:
    """A square model input frame of side ``size``; ``resize`` set means resize-then-centre-crop."""

    size: int = 224
    resize: int | None = None
    interpolation: Interpolation = "bicubic"

    @property
    def mode(self) -> Literal["squash", "crop"]:
        return "squash" if self.resize is None else "crop"

    def frame_in_image(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The image region the frame shows, as relative ``(x0, y0, x1, y1)``."""
        if self.resize is None:
            return (0.0, 0.0, 1.0, 1.0)
        new_w, new_h = _resized_size(width, height, self.resize)
        left = int(round((new_w - self.size) / 2.0))
        top = int(round((new_h - self.size) / 2.0))
        return left / new_w, top / new_h, (left + self.size) / new_w, (top + self.size) / new_h

    def boxes_to_frame(self, boxes_ltwh: np.ndarray, width: int, height: int) -> np.ndarray:
        """Relative ``(left, top, width, height)`` image boxes -> ``(x0, y0, x1, y1)`` in the frame,
        clipped to ``[0, 1]``: a centre crop drops box parts outside it (a box wholly outside: zero area)."""
        boxes = np.asarray(boxes_ltwh, dtype=np.float64).reshape(-1, 4)
        fx0, fy0, fx1, fy1 = self.frame_in_image(width, height)
        corners = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
        origin, extent = np.tile([fx0, fy0], 2), np.tile([fx1 - fx0, fy1 - fy0], 2)
        return np.clip((corners - origin) / extent, 0.0, 1.0)

    def mask_to_frame(self, mask: np.ndarray, resolution: int) -> np.ndarray:
        """A boolean ``(H, W)`` image mask -> ``(R, R)`` boolean mask in the frame, by the box rule
        of ``rasterise``: a frame pixel is in when the image pixel holding its centre is (nearest
        sampling, no blur); a visible mask too thin to hold a centre still gets the frame pixel
        holding its middle pixel (row-major order); one cropped away entirely comes back empty."""
        mask = np.asarray(mask, dtype=bool)
        height, width = mask.shape
        fx0, fy0, fx1, fy1 = self.frame_in_image(width, height)
        centres = (np.arange(resolution) + 0.5) / resolution
        cols = np.minimum(((fx0 + centres * (fx1 - fx0)) * width).astype(np.int64), width - 1)
        rows = np.minimum(((fy0 + centres * (fy1 - fy0)) * height).astype(np.int64), height - 1)
        out = mask[rows[:, None], cols[None, :]]
        if not out.any():
            y, x = np.nonzero(mask)
            u = ((x + 0.5) / width - fx0) / (fx1 - fx0)
            v = ((y + 0.5) / height - fy0) / (fy1 - fy0)
            seen = np.flatnonzero((u >= 0) & (u < 1) & (v >= 0) & (v < 1))
            if len(seen):
                middle = seen[len(seen) // 2]
                out[int(v[middle] * resolution), int(u[middle] * resolution)] = True
        return out

    def to_image(self, maps: np.ndarray, width: int, height: int, resolution: int) -> np.ndarray:
        """``(..., h, w)`` maps over this frame -> ``(..., R, R)`` float32 over the whole image
        squashed to ``R x R`` (the common frame, in which uncropped boxes are scored). Inside the
        part the frame shows, sampled bilinearly as ``metrics.upsample`` does (``align_corners=False``,
        edges clamped); outside it 0: the model never saw those pixels (a cropped-away box part is missed)."""
        grid = np.asarray(maps, dtype=np.float32)
        *lead, h, w = grid.shape
        fx0, fy0, fx1, fy1 = self.frame_in_image(width, height)
        centres = (np.arange(resolution) + 0.5) / resolution
        u = (centres - fx0) / (fx1 - fx0)  # frame-relative positions of the pixel centres
        v = (centres - fy0) / (fy1 - fy0)
        sample_at = np.stack(np.meshgrid(2 * u - 1, 2 * v - 1, indexing="xy"), axis=-1)
        batch = torch.from_numpy(np.ascontiguousarray(grid.reshape(1, -1, h, w)))
        image = F.grid_sample(batch, torch.from_numpy(sample_at[None].astype(np.float32)),
                              mode="bilinear", padding_mode="border", align_corners=False)
        seen = ((v >= 0) & (v < 1))[:, None] & ((u >= 0) & (u < 1))[None, :]
        out = np.where(seen, image[0].numpy(), np.float32(0))
        return out.reshape(*lead, resolution, resolution)

    def transform(self) -> T.Compose:
        """PIL RGB image -> float tensor ``(3, size, size)`` in ``[0, 1]`` (normalise separately)."""
        mode = InterpolationMode(self.interpolation)
        if self.resize is None:
            spatial = [T.Resize((self.size, self.size), interpolation=mode, antialias=True)]
        else:
            spatial = [T.Resize(self.resize, interpolation=mode, antialias=True), T.CenterCrop(self.size)]
        return T.Compose([T.ToImage(), *spatial, T.ToDtype(torch.float32, scale=True)])

    def frame_image(self, image: Image.Image) -> Image.Image:
        """The image as the model sees it (before normalisation), for overlays."""
        return Image.fromarray(self.transform()(image).permute(1, 2, 0).clamp(0, 1).mul(255).byte().numpy())


def _resized_size(width: int, height: int, shortest: int) -> tuple[int, int]:
    """Output size of torchvision's ``Resize(shortest)`` (short side = shortest, long side floored)."""
    if width <= height:
        return shortest, int(shortest * height / width)
    return int(shortest * width / height), shortest


def rasterise(boxes_xyxy: np.ndarray, resolution: int) -> np.ndarray:
    """Frame-relative boxes -> boolean masks ``(n, R, R)``: a pixel belongs to a box when its
    centre lies inside ``[x0, x1) x [y0, y1)``; a box of positive area too thin to contain a centre
    still gets the pixel holding its centre (no visible box scores as empty); zero-area: empty."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    centres = (np.arange(resolution) + 0.5) / resolution
    inside_x = (centres[None, :] >= boxes[:, 0:1]) & (centres[None, :] < boxes[:, 2:3])
    inside_y = (centres[None, :] >= boxes[:, 1:2]) & (centres[None, :] < boxes[:, 3:4])
    masks = inside_y[:, :, None] & inside_x[:, None, :]
    visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    for i in np.flatnonzero(visible & ~masks.any(axis=(1, 2))):
        cx = min(int((boxes[i, 0] + boxes[i, 2]) / 2 * resolution), resolution - 1)
        cy = min(int((boxes[i, 1] + boxes[i, 3]) / 2 * resolution), resolution - 1)
        masks[i, cy, cx] = True
    return masks
