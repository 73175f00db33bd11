"""A folder of images and a folder of masks -> samples with one mask region per feature.

``images/<name>`` with ``masks/<stem>.png`` (one region per image, feature ``mask``) or
``masks/<feature>/<stem>.png`` (one region per feature folder that holds a mask of the
image). A mask is read as grey levels (upright, RGB as luminance). A binary mask (at most
two grey levels) is the set of its non-zero pixels; a soft mask (more levels) is binarised
by the Shared Interest rules (``metrics.binarize_std`` / ``binarize_percentile``: per-mask
min-max, then keep values >= mean + ``num_std`` std, or >= the ``percentile``-th
percentile). Image-level labels come from an optional CSV ``image,label``.

A mask of another size than its image or naming no image, or an unreadable file, is a
DataError naming it (``strict=False``: a counted skip); an empty mask is dropped, warned.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .. import metrics
from .contract import (
    DataError,
    Dataset,
    Region,
    Sample,
    bounding_box,
    close_report,
    dataset_root,
    decode_upright,
    image_files,
    image_size,
    read_labels,
    skipper,
    warn,
)

SINGLE_FEATURE = "mask"


def load_masks(root: str | Path, *, images: str | Path = "images", masks: str | Path = "masks",
               labels: str | Path | None = None, rule: Literal["std", "percentile"] = "std",
               num_std: float = 1.0, percentile: float = 90.0, strict: bool = True) -> Dataset:
    """Read an image folder and its mask folder (relative to ``root`` or absolute); soft masks
    are binarised by ``rule`` at ``num_std`` / ``percentile``."""
    root = dataset_root(root)
    image_dir, mask_dir = root / images, root / masks
    for folder, key in ((image_dir, "images"), (mask_dir, "masks")):
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder; set dataset.{key} (relative to "
                            f"dataset.root {root}).")
    by_stem = {p.stem: p for p in image_files(image_dir)}
    layout = _layout(mask_dir)
    features = sorted(layout)
    report: dict[str, Any] = {"empty_masks": [], "images_without_masks": []}
    problem = skipper(report, strict)
    for files in layout.values():
        for stem in sorted(set(files) - set(by_stem)):
            problem("masks_without_image", f"{files[stem]}: no image {stem}.* in {image_dir}")
    csv_labels = read_labels(root / labels if labels else None, f"an image file name in {image_dir}",
                             [p.name for p in by_stem.values()], image_dir)
    binarise = functools.partial(read_mask, rule=rule, num_std=num_std, percentile=percentile)
    samples = []
    for stem, path in sorted(by_stem.items()):
        try:
            width, height = image_size(path, "replace the file")
        except DataError as error:
            problem("unreadable_images", str(error).rstrip("."))
            continue
        regions = []
        for label, feature in enumerate(features):
            mask_path = layout[feature].get(stem)
            if mask_path is None:
                continue
            try:
                mask = binarise(mask_path, size=(width, height), image=path)
            except DataError as error:
                problem("bad_masks", str(error).rstrip("."))
                continue
            box = bounding_box(mask)
            if box is None:
                report["empty_masks"].append(str(mask_path))
                continue
            regions.append(Region(*box, label=label, group_label=label, group=len(regions),
                                  feature=feature, record=f"mask {mask_path.name}",
                                  mask=functools.partial(binarise, mask_path, size=(width, height),
                                                         image=path)))
        if not regions:
            report["images_without_masks"].append(path.name)
            continue
        samples.append(Sample(image_id=path.name, path=path, boxes=tuple(regions), width=width,
                              height=height, label=csv_labels.get(path.name)))
    if not samples:
        raise DataError(f"{mask_dir}: no image of {image_dir} has a usable mask; the dataset is "
                        "empty (masks/<image stem>.png or masks/<feature>/<image stem>.png).")
    close_report(report, f"files under {root}", {
        "images": len(by_stem), "samples": len(samples), "regions": sum(len(s.boxes) for s in samples)})
    if report["empty_masks"]:
        warn(f"{len(report['empty_masks'])} masks under {mask_dir} keep no pixel after "
             "binarisation and were skipped; see report['empty_masks'].")
    categories = [{"id": i, "name": f} for i, f in enumerate(features)]
    return Dataset(root=root, samples=samples, features=features, report=report, kind="masks",
                   categories=categories)


def read_mask(path: Path, *, size: tuple[int, int], image: Path, rule: str = "std",
              num_std: float = 1.0, percentile: float = 90.0) -> np.ndarray:
    """One mask file as a boolean ``(height, width)`` array, binarised as the module says;
    its upright size must be ``size`` (its image's)."""
    grey = np.asarray(decode_upright(path, "replace the mask file").convert("L"))
    if grey.shape != (size[1], size[0]):
        raise DataError(f"{path}: mask is {grey.shape[1]}x{grey.shape[0]} but its image {image} "
                        f"is {size[0]}x{size[1]}")
    if len(np.unique(grey)) <= 2:
        return grey > 0
    if rule == "std":
        return metrics.binarize_std(grey[None], num_std)[0]
    return metrics.binarize_percentile(grey[None], percentile)[0]


def mask_files(root: Path, images: str | Path = "images", masks: str | Path = "masks",
               labels: str | Path | None = None) -> tuple[list[Path], list[Path]]:
    """What ``load_masks`` reads: the files read whole, and the folders."""
    return ([root / labels] if labels is not None else []), [root / images, root / masks]


def _layout(mask_dir: Path) -> dict[str, dict[str, Path]]:
    """Feature -> image stem -> mask file: the top-level files (feature ``mask``) or one
    sub-folder per feature, not both."""
    folders = sorted(p for p in mask_dir.iterdir() if p.is_dir())
    top = image_files(mask_dir)
    if folders and top:
        raise DataError(f"{mask_dir}: holds both mask files ({top[0].name}, ...) and feature "
                        f"folders ({folders[0].name}/, ...); use masks/<stem>.png for one "
                        "region per image or masks/<feature>/<stem>.png, not both.")
    if not folders:
        return {SINGLE_FEATURE: {p.stem: p for p in top}}
    return {folder.name: {p.stem: p for p in image_files(folder)} for folder in folders}
