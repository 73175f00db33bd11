"""Is a saliency map about the class it explains? Two class-discriminative tests for an
image classifier, on the photographs of `photo_album`:

- the grid pointing game (Böhle, Fritz & Schiele, CVPR 2021): on an n x n composite of images
  of different classes, the fraction of a class's positive attribution mass inside that
  class's cell (`grid_pointing_game`, `grid_test`);
- objects A and B in one photo: A's map must put more of its mass in A's region than B's map
  does, and B's likewise, each by at least ``TIE`` (`class_contrast`, `contrast_test`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from .. import extract, metrics, saliency
from ..models import LoadedModel
from .photo_album import Photo

TIE = 0.01  # mass shares closer than this (one point of the map's mass) are a tie, not a win


def at_input_size(model: LoadedModel, size: int) -> LoadedModel:
    """The same module read at a ``size x size`` squash input (a CNN takes any size): e.g. a
    2 x 2 composite of 224-px cells at 448; the Grad-CAM grid follows."""
    geometry = dataclasses.replace(model.spec.geometry, size=size, resize=None)
    spec = dataclasses.replace(model.spec, geometry=geometry)
    _, _, grid = spec.arch.layout(model.module, geometry)
    return dataclasses.replace(model, spec=spec, grid=grid)


def composite(images: Sequence[Image.Image], cell: int) -> Image.Image:
    """An ``n x n`` grid of the images, each squashed to ``cell x cell``, row-major."""
    n = int(round(len(images) ** 0.5))
    if n * n != len(images) or n < 2:
        raise ValueError(f"a composite needs a square number (>= 4) of images, got {len(images)}")
    canvas = Image.new("RGB", (n * cell, n * cell))
    for index, image in enumerate(images):
        tile = image.convert("RGB").resize((cell, cell), Image.Resampling.BICUBIC)
        canvas.paste(tile, ((index % n) * cell, (index // n) * cell))
    return canvas


def grid_pointing_game(maps: np.ndarray, n: int, cells: Sequence[int]) -> np.ndarray:
    """Böhle et al.'s grid pointing game: for each ``(H, W)`` map over an ``n x n`` composite,
    the fraction of its positive mass inside cell ``cells[i]`` (row-major), ``(N,)``; H and W
    must split into n equal cells; a map with no positive mass scores NaN."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3 or len(maps) != len(cells):
        raise ValueError(f"need (N, H, W) maps and one cell per map, got {maps.shape} and "
                         f"{len(cells)} cells")
    height, width = maps.shape[1:]
    if height % n or width % n:
        raise ValueError(f"a {height}x{width} map does not split into {n}x{n} equal cells")
    positive = np.clip(maps, 0, None)
    per_cell = positive.reshape(len(maps), n, height // n, n, width // n).sum(axis=(2, 4)).reshape(
        len(maps), n * n)
    total = per_cell.sum(axis=1)
    inside = per_cell[np.arange(len(maps)), np.asarray(cells, dtype=int)]
    return np.divide(inside, total, out=np.full(len(maps), np.nan), where=total > 0)


def class_contrast(map_a: np.ndarray, map_b: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray
                   ) -> dict[str, float | bool]:
    """Two classes A and B of one photo, their maps and their objects' masks (one frame):
    each map's mass in each region, and whether each region holds more of its own class's
    mass than of the other's, by at least ``TIE`` (``discriminative``: both do)."""
    maps = np.stack([map_a, map_b, map_a, map_b]).astype(np.float32)
    masks = np.stack([mask_a, mask_a, mask_b, mask_b])
    a_in_a, b_in_a, a_in_b, b_in_b = metrics.coverage(maps, masks)
    return {"a_mass_in_a": float(a_in_a), "b_mass_in_a": float(b_in_a),
            "a_mass_in_b": float(a_in_b), "b_mass_in_b": float(b_in_b),
            "discriminative": bool(a_in_a >= b_in_a + TIE and b_in_b >= a_in_b + TIE)}


def explain(model: LoadedModel, images: Sequence[Image.Image], classes: Sequence[int],
            methods: Sequence[str], xrai: saliency.XraiSettings, resolution: int, *,
            stage: str = "") -> dict[str, np.ndarray]:
    """Each method's maps of ``classes[i]`` on ``images[i]``, upsampled to ``(N, R, R)``;
    ``stage`` names a progress bar per image with the cost said from the first (none: no bar)."""
    note = (f"XRAI ({xrai.steps} steps, {xrai.algorithm}) is most of it; fewer steps lower it "
            "(photos.xrai)" if "xrai" in methods else "")
    with extract.ImageProgress(stage, len(images), device=str(model.device), note=note,
                               enabled=bool(stage)) as meter, meter.batch(len(images)) as tick:
        maps = saliency.extract(model, model.preprocess(images), list(methods),
                                classes=[int(c) for c in classes], xrai=xrai, on_image=tick)
    return {method: metrics.upsample(maps[(method, 0)][:, 0], resolution) for method in methods}


def arrangements(group: Sequence[str], rotate: bool) -> list[list[str]]:
    """The group as given, and (``rotate``) its cyclic shifts: every photo once in every cell."""
    shifts = range(len(group)) if rotate else range(1)
    return [[*group[k:], *group[:k]] for k in shifts]


def grid_test(model: LoadedModel, images: dict[str, Image.Image], classes: dict[str, int],
              group: Sequence[str], methods: Sequence[str], xrai: saliency.XraiSettings,
              rotate: bool) -> pd.DataFrame:
    """The grid pointing game on composites of ``group`` (each photo explained for its class
    ``classes[photo]``): one row per (arrangement, cell, method) with the mass in its cell."""
    n = round(len(group) ** 0.5)
    cell = model.spec.geometry.size
    wide = at_input_size(model, n * cell)
    rows = []
    for index, order in enumerate(arrangements(group, rotate)):
        picture = composite([images[name] for name in order], cell)
        maps = explain(wide, [picture] * len(order), [classes[name] for name in order], methods,
                       xrai, n * cell)
        for method, values in maps.items():
            share = grid_pointing_game(values, n, range(len(order)))
            rows += [{"arrangement": index, "cell": k, "photo": name, "class": classes[name],
                      "method": method, "mass_in_cell": float(share[k]), "chance": 1 / n**2}
                     for k, name in enumerate(order)]
    return pd.DataFrame(rows)


def contrast_test(model: LoadedModel, photo: Photo, classes: dict[str, int], methods: Sequence[str],
                  xrai: saliency.XraiSettings, resolution: int) -> pd.DataFrame:
    """Every pair (A, B) of the photo's annotated objects, each explained for its class
    ``classes[category]``: one row per (pair, method) from `class_contrast`."""
    names = list(classes)
    if len(names) < 2:
        return pd.DataFrame()
    maps = explain(model, [photo.image()] * len(names), [classes[c] for c in names], methods,
                   xrai, resolution)
    masks = {name: photo.union(name, resolution) for name in names}
    return pd.DataFrame([{"photo": photo.file, "object_a": a, "class_a": classes[a], "object_b": b,
                          "class_b": classes[b], "method": method,
                          **class_contrast(values[i], values[j], masks[a], masks[b])}
                         for (i, a), (j, b) in itertools.combinations(enumerate(names), 2)
                         for method, values in maps.items()])


def object_classes(photo: Photo, probs: np.ndarray) -> dict[str, int]:
    """Each annotated object's class: the most probable of its category's ImageNet ids."""
    return {name: int(ids[int(np.argmax(probs[list(ids)]))])
            for name, ids in photo.objects().items()}
