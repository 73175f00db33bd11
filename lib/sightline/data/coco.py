"""COCO detection JSON + an image folder -> samples with box and mask regions.

The file holds ``images`` (``id``, ``file_name``, optional ``width`` / ``height`` and
``label``), ``annotations`` (``id``, ``image_id``, ``category_id``, ``bbox`` as pixel
``[x, y, width, height]``, optional ``segmentation`` as polygons or RLE) and ``categories``
(``id``, ``name``: the feature types; any other field, e.g. ``"imagenet": [285, 281]``, is
kept in ``Dataset.categories``). Each annotation becomes one region of its image: a box,
or, with a segmentation, the mask ``pycocotools`` draws at the image's size (its region
box is the mask's bounding box). Image-level labels come from ``images[].label`` or a
``labels`` CSV (columns ``image``, the file name, and ``label``).

A bad record (an unknown image or category, a box wholly outside its image, a polygon of
under three points, an RLE or an image of another size than listed, a missing image) is a
DataError naming it, or with ``strict=False`` a counted skip; a box partly outside is
clamped, one of zero width or height dropped, each with one warning.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from .contract import (
    DataError,
    Dataset,
    Region,
    Sample,
    clamp_box,
    close_report,
    dataset_root,
    image_size,
    read_labels,
    skipper,
    warn_boxes,
)


class _Skip(Exception):
    """One record the reader drops under ``strict=False`` (its reason is the report key)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def load_coco(root: str | Path, *, annotations: str | Path = "annotations.json",
              images: str | Path = "images", labels: str | Path | None = None,
              strict: bool = True) -> Dataset:
    """Read a COCO dataset: ``annotations`` and ``images`` relative to ``root`` (or absolute),
    ``labels`` an optional CSV ``image,label``. ``strict=False`` skips and counts bad records."""
    root = dataset_root(root)
    ann_path, image_dir = root / annotations, root / images
    if not ann_path.is_file():
        raise DataError(f"{ann_path}: no COCO annotation file there; set dataset.annotations "
                        f"(relative to dataset.root {root}) to the JSON file.")
    coco = _read_json(ann_path)
    categories = _categories(coco, ann_path)
    features = [c["name"] for c in categories]
    label_of = {c["id"]: i for i, c in enumerate(categories)}
    records = _records(coco, ann_path, "images")
    report: dict[str, Any] = {"clamped_boxes": [], "zero_area_boxes": [], "images_without_boxes": []}
    problem = skipper(report, strict)
    images_by_id: dict[Any, dict] = {}
    names: dict[str, Any] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict) or "id" not in record or not isinstance(
                record.get("file_name"), str):
            raise DataError(f"{ann_path}: images[{index}] needs an 'id' and a 'file_name'.")
        if record["id"] in images_by_id:
            raise DataError(f"{ann_path}: images[{index}]: image id {record['id']} is listed twice.")
        if record["file_name"] in names:
            raise DataError(f"{ann_path}: images[{index}]: {record['file_name']} is listed twice "
                            f"(ids {names[record['file_name']]} and {record['id']}).")
        images_by_id[record["id"]] = record
        names[record["file_name"]] = record["id"]
    csv_path = root / labels if labels else None
    csv_labels = read_labels(csv_path, f"the image's file_name in {ann_path.name}", names, ann_path.name)

    sizes: dict[Any, tuple[int, int]] = {}
    for image_id, record in images_by_id.items():
        try:
            sizes[image_id] = _image_size(record, image_dir, ann_path)
        except _Skip as skip:
            problem(skip.reason, str(skip))

    regions: dict[Any, list[Region]] = {image_id: [] for image_id in sizes}
    for index, annotation in enumerate(_records(coco, ann_path, "annotations")):
        try:
            region = _region(annotation, index, images_by_id, sizes, label_of, features,
                             ann_path, report)
        except _Skip as skip:
            problem(skip.reason, str(skip))
            continue
        if region is not None:
            regions[annotation["image_id"]].append(region)

    samples = []
    for image_id, (width, height) in sizes.items():
        record = images_by_id[image_id]
        name = record["file_name"]
        found = regions[image_id]
        if not found:
            report["images_without_boxes"].append(name)
            continue
        label = _label(record, csv_labels.get(name), ann_path, csv_path)
        boxes = tuple(dataclasses.replace(r, group=g) for g, r in enumerate(found))
        samples.append(Sample(image_id=name, path=image_dir / name, boxes=boxes, width=width,
                              height=height, label=label))
    if not samples:
        raise DataError(f"{ann_path}: no image with a usable annotation "
                        f"({len(images_by_id)} images, {len(coco.get('annotations', []))} "
                        "annotations listed); the dataset is empty.")
    close_report(report, f"records of {ann_path}", {
        "images_listed": len(images_by_id), "samples": len(samples),
        "regions": sum(len(s.boxes) for s in samples),
        "mask_regions": sum(r.is_mask for s in samples for r in s.boxes)})
    warn_boxes(ann_path, report, [f"{c['record']} (image {c['image_id']})"
                                  for c in report["clamped_boxes"]], "have zero width or height")
    return Dataset(root=root, samples=sorted(samples, key=lambda s: s.image_id),
                   features=features, report=report, kind="coco", categories=categories)


def coco_files(root: Path, annotations: str | Path = "annotations.json", images: str | Path = "images",
               labels: str | Path | None = None) -> tuple[list[Path], list[Path]]:
    """What ``load_coco`` reads: the files read whole, and the image folder."""
    contents = [root / annotations] + ([root / labels] if labels is not None else [])
    return contents, [root / images]


def _read_json(path: Path) -> dict:
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not readable JSON ({error}).") from error
    if not isinstance(coco, dict):
        raise DataError(f"{path}: expected a COCO object with 'images', 'annotations' and "
                        f"'categories', got {type(coco).__name__}.")
    return coco


def _records(coco: dict, path: Path, key: str) -> list:
    records = coco.get(key)
    if not isinstance(records, list):
        raise DataError(f"{path}: no '{key}' list; is this a COCO detection file?")
    return records


def _categories(coco: dict, path: Path) -> list[dict]:
    categories = _records(coco, path, "categories")
    ids, names = set(), set()
    for index, category in enumerate(categories):
        if not isinstance(category, dict) or "id" not in category or not isinstance(
                category.get("name"), str):
            raise DataError(f"{path}: categories[{index}] needs an 'id' and a 'name'.")
        if category["id"] in ids or category["name"] in names:
            raise DataError(f"{path}: categories[{index}] ({category['name']!r}, id "
                            f"{category['id']}) repeats an earlier category's id or name.")
        ids.add(category["id"])
        names.add(category["name"])
    if not categories:
        raise DataError(f"{path}: 'categories' is empty; list the feature types there.")
    return [dict(c) for c in categories]


def _label(record: dict, from_csv: str | None, ann_path: Path, csv_path: Path | None
           ) -> str | None:
    own = record.get("label")
    if own is not None and from_csv is not None and str(own) != from_csv:
        raise DataError(f"{record['file_name']}: label {own!r} in {ann_path} but {from_csv!r} in "
                        f"{csv_path}; keep one of them.")
    return from_csv if from_csv is not None else (None if own is None else str(own))


def _image_size(record: dict, image_dir: Path, ann_path: Path) -> tuple[int, int]:
    """The upright size of a listed image; it must exist and match the size the JSON gives."""
    name, path = record["file_name"], image_dir / record["file_name"]
    if not path.is_file():
        raise _Skip("missing_images", f"{ann_path}: image {name} (id {record['id']}) is listed "
                                      f"but {path} does not exist")
    try:
        width, height = image_size(path, f"replace the file ({ann_path} lists it)")
    except DataError as error:
        raise _Skip("unreadable_images", str(error).rstrip(".")) from None
    given = (record.get("width"), record.get("height"))
    if None not in given and tuple(given) != (width, height):
        raise _Skip("size_mismatches", f"{ann_path}: image {name} (id {record['id']}) is "
                                       f"{given[0]}x{given[1]} in the file but {path} is "
                                       f"{width}x{height} (upright)")
    return width, height


def _region(annotation: Any, index: int, images: dict, sizes: dict, label_of: dict,
            features: list[str], path: Path, report: dict) -> Region | None:
    """One annotation as a region (None: a zero-area box, dropped and reported)."""
    if not isinstance(annotation, dict) or "image_id" not in annotation:
        raise DataError(f"{path}: annotations[{index}] needs an 'image_id'.")
    record = f"annotation {annotation.get('id', f'#{index}')}"
    image_id = annotation["image_id"]
    if image_id not in images:
        raise _Skip("unknown_image", f"{path}: {record} names image id {image_id!r}, which is "
                                     "not in 'images'")
    if image_id not in sizes:  # its image was skipped already
        raise _Skip("annotations_of_skipped_images", f"{path}: {record} belongs to skipped "
                                                     f"image {images[image_id]['file_name']}")
    name = images[image_id]["file_name"]
    where = f"{path}: {record} (image {name})"
    category = annotation.get("category_id")
    if category not in label_of:
        raise _Skip("unknown_category", f"{where} names category id {category!r}, which is not "
                                        "in 'categories'")
    width, height = sizes[image_id]
    label = label_of[category]
    segmentation = annotation.get("segmentation")
    if segmentation:
        rle = _rle(segmentation, width, height, where)
        if mask_utils.area(rle) == 0:
            raise _Skip("empty_masks", f"{where}: its segmentation covers no pixel of the "
                                       f"{width}x{height} image")
        x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
        return Region(x / width, y / height, w / width, h / height, label=label,
                      group_label=label, group=0, feature=features[label], record=record,
                      mask=functools.partial(_decode, rle))
    bbox = annotation.get("bbox")
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError) as error:
        raise DataError(f"{where}: 'bbox' must be [x, y, width, height] in pixels, got "
                        f"{bbox!r} ({error}).") from None
    if w <= 0 or h <= 0:
        report["zero_area_boxes"].append({"image_id": name, "record": record})
        return None
    box, clamped = clamp_box(x / width, y / height, w / width, h / height)
    if box is None:
        raise _Skip("outside_boxes", f"{where}: bbox {bbox} lies entirely outside the "
                                     f"{width}x{height} image")
    if clamped:
        report["clamped_boxes"].append({
            "image_id": name, "record": record, "given": [x, y, w, h],
            "clamped": [round(v * side, 2)
                        for v, side in zip(box, (width, height) * 2, strict=True)]})
    return Region(*box, label=label, group_label=label, group=0, feature=features[label],
                  record=record)


def _rle(segmentation: Any, width: int, height: int, where: str) -> dict:
    """A segmentation (polygons, uncompressed or compressed RLE) as one compressed RLE."""
    if isinstance(segmentation, list):
        for k, polygon in enumerate(segmentation):
            if (not isinstance(polygon, list) or len(polygon) % 2
                    or not all(isinstance(v, int | float) for v in polygon)):
                raise DataError(f"{where}: polygon {k} must be a flat list [x1, y1, x2, y2, ...] "
                                "of pixel coordinates.")
            if len(polygon) < 6:
                raise _Skip("bad_polygons", f"{where}: polygon {k} has {len(polygon) // 2} "
                                            "points; a polygon needs at least three")
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        size = list(segmentation["size"])
        if size != [height, width]:
            raise _Skip("size_mismatches", f"{where}: its RLE mask is {size[1]}x{size[0]} but "
                                           f"the image is {width}x{height}")
        if isinstance(segmentation["counts"], list):
            return mask_utils.frPyObjects(segmentation, height, width)
        counts = segmentation["counts"]
        return {"size": size, "counts": counts.encode() if isinstance(counts, str) else counts}
    raise DataError(f"{where}: 'segmentation' must be a list of polygons or an RLE "
                    f"{{'size': [h, w], 'counts': ...}}, got {type(segmentation).__name__}.")


def _decode(rle: dict) -> np.ndarray:
    """The boolean ``(height, width)`` mask of a compressed RLE."""
    with warnings.catch_warnings():  # pycocotools 2.0.11 under NumPy 2: nothing to act on
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)
