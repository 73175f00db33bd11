"""WikiChurches on disk -> samples with expert boxes, a style-labelled pool, and box masks.

Reads the files of Zenodo record 5166987 as released (see ``shared/reference/datasets.md``):
``building_parts.json`` (the expert boxes), optionally ``churches.json``, the 4-style
split files ``wc4_{train,val,test}.txt`` and ``images/``.

Conventions (besides the readers' shared ones, ``sightline.data.contract``):

- **Orientation.** The boxes refer to the upright image: the annotators drew them in a web
  browser, which applies the EXIF orientation (CSS default since 2020; an assumption).
- **Labels.** ``label``: the first main style, else ``"Other"``; ``tags``: all style names.
- **Fine-tuning pool.** The annotated images are the evaluation set, so nothing of their
  churches may be trained on: every train/val image of a church that has an annotated
  image is dropped from the pool, and annotated images listed in train/val move to
  ``test`` (they stay available for style-classification accuracy, never for training).
  Without split files the pool is derived from ``churches.json``: churches with exactly one
  main style, split 80/5/15 by a hash of the church id (deterministic, church-disjoint).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from .contract import DataError, Dataset, Region, Sample, clamp_box, image_size, remedy, warn, warn_boxes

MAIN_STYLES: dict[str, str] = {
    "Q46261": "Romanesque",
    "Q176483": "Gothic",
    "Q236122": "Renaissance",
    "Q840829": "Baroque",
}
SPLITS = ("train", "val", "test")
ZENODO = "https://zenodo.org/records/5166987"
_DERIVED_SPLIT = (80, 85)  # hash bucket (of 100) below which a church is train, then val


def main_style(styles: tuple[str, ...]) -> str:
    """The first of the four main styles among an image's style names, else ``"Other"``."""
    return next((s for s in styles if s in MAIN_STYLES.values()), "Other")


def load_wikichurches(root: str | Path, *, strict: bool = True) -> Dataset:
    """Read a WikiChurches folder. ``strict=False`` skips missing or unreadable images."""
    root = Path(root)
    parts_path = root / "building_parts.json"
    if not root.is_dir():
        raise DataError(_download_hint(root, f"the dataset folder {root} does not exist"))
    if not parts_path.is_file():
        raise DataError(_download_hint(root, f"{parts_path} not found"))
    parts = _read_json(parts_path)
    features = _features(parts, parts_path)
    annotations = parts.get("annotations")
    if not isinstance(annotations, dict):
        raise DataError(f"{parts_path}: no 'annotations' object; is this WikiChurches' file?")
    churches_path = root / "churches.json"
    churches = _read_json(churches_path) if churches_path.is_file() else None
    listing = _image_listing(root)
    split_dir = _split_dir(root)
    report: dict = {"clamped_boxes": [], "zero_area_boxes": [], "images_without_boxes": [],
                    "unreadable_reasons": {}}
    if split_dir is not None:
        pool = _pool_from_split_files(root, split_dir)
        report["pool_source"] = f"split files in {split_dir}"
    else:
        pool = _pool_from_churches(root, churches, listing)
        report["pool_source"] = "derived from churches.json" if churches else "none"

    wanted = set(annotations) | set(pool["image_id"])
    missing = sorted(wanted - set(listing))
    report["missing_images"] = missing
    if missing:
        if strict:
            raise DataError(_missing_message(root, missing))
        warn(f"dataset.strict: false: {len(missing)} image files are missing from {root / 'images'} "
             f"and were skipped (e.g. {missing[0]}); "
             f"{remedy(root, f'download images.zip from {ZENODO} to get them')}.")

    samples, unreadable = [], []
    for image_id in sorted(set(annotations) - set(missing)):
        path = listing[image_id]
        try:
            width, height = image_size(path, remedy(root, f"replace the file from images.zip ({ZENODO})"))
        except DataError as error:
            if strict:
                raise
            unreadable.append(image_id)
            report["unreadable_reasons"][image_id] = str(error)
            continue
        boxes = _boxes(annotations[image_id], image_id, features, parts_path, report)
        if not boxes:
            report["images_without_boxes"].append(image_id)
            continue
        styles = _style_names(annotations[image_id], image_id, parts_path)
        samples.append(Sample(image_id=image_id, path=path, boxes=boxes, width=width,
                              height=height, label=main_style(styles), tags=styles))
    report["unreadable_images"] = unreadable
    if unreadable:
        warn(f"dataset.strict: false: {len(unreadable)} annotated images could not be read and "
             f"were skipped (e.g. {unreadable[0]}); see report['unreadable_reasons'].")
    warn_boxes(parts_path, report, [c["record"] for c in report["clamped_boxes"]],
               "have no area inside their image after clamping")
    pool = pool[~pool["image_id"].isin(missing)]
    pool = _prevent_leakage(pool, set(annotations), report)
    report["pool_splits"] = {s: int((pool["split"] == s).sum()) for s in SPLITS}
    report["counts"] = {"annotated_images": len(annotations), "samples": len(samples),
                        **{k: len(v) for k, v in report.items() if isinstance(v, list)}}
    categories = [{"id": i, **m} for i, m in enumerate(parts["meta"])]
    return Dataset(root=root, samples=samples, features=features, pool=pool, report=report,
                   kind="wikichurches", categories=categories, label_name="style")


def church_of(image_id: str) -> str:
    """The church's Wikidata id: the part of the file name before the first ``_``."""
    return image_id.split("_", 1)[0]


def wikichurches_files(root: Path) -> tuple[list[Path], list[Path]]:
    """What ``load_wikichurches`` reads: the JSON and split files read whole, and the images."""
    split_dir = _split_dir(root)
    split_files = [split_dir / f"wc4_{s}.txt" for s in SPLITS] if split_dir else []
    return [root / "building_parts.json", root / "churches.json", *split_files], [root / "images"]


def _download_hint(root: Path, problem: str) -> str:
    return (f"{problem}. Download building_parts.json, churches.json, images.zip and labels.zip "
            f"from {ZENODO}, put the two JSON files in {root}/, unzip images.zip into "
            f"{root}/images/ and labels.zip into {root}/labels/.")


def _missing_message(root: Path, missing: list[str]) -> str:
    shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
    fix = remedy(root, f"download images.zip from {ZENODO} and unzip it into {root / 'images'}/")
    return (f"{len(missing)} image files are missing from {root / 'images'}: {shown}. "
            f"{fix[0].upper()}{fix[1:]} (or set dataset.strict: false in the params file to skip them).")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not readable JSON ({error}); "
                        f"{remedy(path.parent, f'download it again from {ZENODO}')}.") from error


def _features(parts: dict, path: Path) -> list[str]:
    meta = parts.get("meta")
    if not isinstance(meta, list) or not all(isinstance(m, dict) and "name" in m for m in meta):
        raise DataError(f"{path}: 'meta' must be a list of {{'name': ...}} feature types.")
    return [m["name"] for m in meta]


def _style_names(annotation: dict, image_id: str, path: Path) -> tuple[str, ...]:
    styles = annotation.get("styles")
    if not isinstance(styles, list):
        raise DataError(f"{path}: image {image_id} has no 'styles' list.")
    return tuple(MAIN_STYLES.get(qid, qid) for qid in styles)


def _boxes(annotation: dict, image_id: str, features: list[str], path: Path, report: dict
           ) -> tuple[Region, ...]:
    """Parse, validate and clamp one image's ``bbox_groups``."""
    groups = annotation.get("bbox_groups")
    if not isinstance(groups, list):
        raise DataError(f"{path}: image {image_id} has no 'bbox_groups' list.")
    boxes = []
    for g, group in enumerate(groups):
        elements = group.get("elements") if isinstance(group, dict) else None
        if not isinstance(elements, list):
            raise DataError(f"{path}: image {image_id}, group {g} has no 'elements' list.")
        for element in elements:
            try:
                label = int(element["label"])
                group_label = int(group.get("group_label", label))
                left, top = float(element["left"]), float(element["top"])
                x1, y1 = left + float(element["width"]), top + float(element["height"])
            except (KeyError, TypeError, ValueError) as error:
                raise DataError(f"{path}: image {image_id}, group {g}: malformed box {element} "
                                f"({error}).") from error
            for name, value in (("label", label), ("group_label", group_label)):
                if not 0 <= value < len(features):
                    raise DataError(f"{path}: image {image_id}, group {g}: unknown {name} {value} "
                                    f"('meta' has {len(features)} feature types).")
            where = {"image_id": image_id, "group": g, "label": label}
            box, clamped = clamp_box(left, top, x1 - left, y1 - top)
            if box is None:
                report["zero_area_boxes"].append(where)
                continue
            if clamped:
                report["clamped_boxes"].append(where | {
                    "record": f"image {image_id}, group {g}",
                    "given": [left, top, x1 - left, y1 - top], "clamped": list(box)})
            boxes.append(Region(*box, label=label, group_label=group_label, group=g,
                                feature=features[label], record=f"image {image_id}, group {g}"))
    return tuple(boxes)


def _image_listing(root: Path) -> dict[str, Path]:
    images = root / "images"
    if not images.is_dir():
        return {}
    return {e.name: Path(e.path) for e in os.scandir(images) if e.is_file()}


def _split_dir(root: Path) -> Path | None:
    """Where the three split files are (``root`` or ``root/labels``), or None if nowhere."""
    for folder in (root, root / "labels"):
        present = [(folder / f"wc4_{s}.txt").is_file() for s in SPLITS]
        if all(present):
            return folder
        if any(present):
            absent = [f"wc4_{s}.txt" for s, p in zip(SPLITS, present, strict=True) if not p]
            raise DataError(f"{folder} holds only some split files ({', '.join(absent)} missing); "
                            f"unzip labels.zip from {ZENODO} into {root / 'labels'}/ again.")
    return None


def _pool_frame(rows: list[tuple[str, str, str]], root: Path) -> pd.DataFrame:
    """``(image_id, style name, split)`` rows -> the pool table, sorted by image_id."""
    frame = pd.DataFrame(rows, columns=["image_id", "style", "split"])
    frame.insert(1, "church_id", frame["image_id"].map(church_of))
    frame.insert(2, "path", [root / "images" / name for name in frame["image_id"]])
    return frame.sort_values("image_id", ignore_index=True)


def _pool_from_split_files(root: Path, folder: Path) -> pd.DataFrame:
    """``<image file> <style QID>`` per line. The format is not documented officially, so
    every line is checked and a malformed one is an error naming the file and line."""
    rows, seen = [], {}
    for split in SPLITS:
        path = folder / f"wc4_{split}.txt"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2 or fields[1] not in MAIN_STYLES:
                raise DataError(f"{path}, line {number}: expected '<image file> <main style QID>' "
                                f"with a QID among {sorted(MAIN_STYLES)}, got {line!r}.")
            if fields[0] in seen:
                raise DataError(f"{path}, line {number}: {fields[0]} is also in {seen[fields[0]]}.")
            seen[fields[0]] = path.name
            rows.append((fields[0], MAIN_STYLES[fields[1]], split))
    return _pool_frame(rows, root)


def _pool_from_churches(root: Path, churches: dict | None, listing: dict) -> pd.DataFrame:
    """No split files: churches with exactly one main style, split by a hash of the church."""
    by_church: dict[str, list[str]] = {}
    for name in listing:
        by_church.setdefault(church_of(name), []).append(name)
    rows = []
    for qid, church in (churches or {}).items():
        main = [s for s in church.get("styles") or [] if s in MAIN_STYLES]
        if len(main) != 1:
            continue
        bucket = int(hashlib.sha256(qid.encode()).hexdigest(), 16) % 100
        split = SPLITS[sum(bucket >= edge for edge in _DERIVED_SPLIT)]
        rows += [(name, MAIN_STYLES[main[0]], split) for name in by_church.get(qid, [])]
    return _pool_frame(rows, root)


def _prevent_leakage(pool: pd.DataFrame, annotated: set[str], report: dict) -> pd.DataFrame:
    """Drop train/val images of annotated churches; annotated images themselves go to test."""
    is_annotated = pool["image_id"].isin(annotated)
    churches = {church_of(name) for name in annotated}
    in_training = pool["split"].isin(["train", "val"])
    moved = is_annotated & in_training
    dropped = pool["church_id"].isin(churches) & in_training & ~is_annotated
    report["annotated_moved_to_test"] = sorted(pool.loc[moved, "image_id"])
    report["dropped_for_leakage"] = sorted(pool.loc[dropped, "image_id"])
    pool = pool.loc[~dropped].copy()
    pool.loc[pool["image_id"].isin(annotated), "split"] = "test"
    return pool.reset_index(drop=True)
