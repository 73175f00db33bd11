"""WikiChurches on disk -> samples with expert boxes, a style-labelled pool, and box masks.

Reads the files of Zenodo record 5166987 as released (see ``shared/reference/datasets.md``):
``building_parts.json`` (the expert boxes), optionally ``churches.json``, the 4-style
split files ``wc4_{train,val,test}.txt`` and ``images/``.

Conventions:

- **Orientation.** Images are shown upright: the EXIF orientation tag is applied
  (``ImageOps.exif_transpose``) and the relative boxes are read in that upright frame.
  The annotators drew the boxes in a web browser, and browsers display JPEGs with their
  EXIF orientation applied (the CSS default since 2020), so the displayed orientation is
  the one the boxes refer to. This is an assumption about the annotation tool, unverified.
  ``Sample.width`` / ``height`` are the upright size, read from the file header.
- **Boxes** are clamped to the image (``x0, y0, x1, y1`` clipped to ``[0, 1]``, then width
  and height recomputed); boxes with no area left are dropped with one warning.
- **Fine-tuning pool.** The annotated images are the evaluation set, so nothing of their
  churches may be trained on: every train/val image of a church that has an annotated
  image is dropped from the pool, and annotated images listed in train/val move to
  ``test`` (they stay available for style-classification accuracy, never for training).
  Without split files the pool is derived from ``churches.json``: churches with exactly one
  main style, split 80/5/15 by a hash of the church id (deterministic, church-disjoint).
- **Integer-mode images** (16-bit PNG / TIFF, PIL modes ``I`` and ``I;16*``) are assumed
  to span 16 bits and are scaled to 8 bits; other modes convert to RGB with PIL.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageFile, ImageOps
from torchvision.transforms import v2 as T

from sightline.geometry import Geometry, rasterise

MAIN_STYLES: dict[str, str] = {
    "Q46261": "Romanesque",
    "Q176483": "Gothic",
    "Q236122": "Renaissance",
    "Q840829": "Baroque",
}
SPLITS = ("train", "val", "test")
ZENODO = "https://zenodo.org/records/5166987"
# WikiChurches holds large photos; PIL's default bomb guard (~89 MP) would reject some.
MAX_IMAGE_PIXELS = 300_000_000
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_IMAGE_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees
_UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_DERIVED_SPLIT = (80, 85)  # hash bucket (of 100) below which a church is train, then val


class DataError(Exception):
    """A dataset file is missing or malformed; the message names the file and what to do."""


class DataWarning(UserWarning):
    """The reader skipped or changed part of the data (``dataset.strict: false``, bad boxes)."""


def _warn(message: str) -> None:
    """Warn once per load; inside a build's notebooks stay quiet, as the build said it already."""
    if not os.environ.get("SIGHTLINE_BUILD"):
        warnings.warn(message, DataWarning, stacklevel=3)


def load_dataset(dataset: Mapping[str, Any]) -> WikiChurches:
    """Read the dataset a params ``dataset`` section describes (as a notebook receives it).

    Generated (synthetic) data is checked against its manifest first, so a folder that is
    missing or damaged says to run the build (which makes it), never to download anything.
    """
    root = Path(dataset["root"])
    if dataset.get("kind") == "synthetic":
        from sightline import synthetic

        problem = synthetic.verify(root)
        if problem is not None:
            raise DataError(
                f"the generated data in {root} cannot be used ({problem}): run `python build.py` "
                "first (add --params for a profile other than the demo); it generates the data."
            )
    return load_wikichurches(root, strict=dataset.get("strict", True))


@dataclass(frozen=True)
class Box:
    """One expert box, relative to the upright image and clamped to ``[0, 1]``."""

    left: float
    top: float
    width: float
    height: float
    label: int
    group_label: int
    group: int
    feature: str


@dataclass(frozen=True)
class Sample:
    """One annotated image: its file, style tags, boxes and upright pixel size."""

    image_id: str
    church_id: str
    path: Path
    styles: tuple[str, ...]
    boxes: tuple[Box, ...]
    width: int
    height: int

    @property
    def style(self) -> str:
        """The first of the four main styles among the image's tags, else ``"Other"``."""
        return next((s for s in self.styles if s in MAIN_STYLES.values()), "Other")

    def boxes_ltwh(self) -> np.ndarray:
        """Boxes as an ``(n, 4)`` array of relative ``left, top, width, height``."""
        rows = [(b.left, b.top, b.width, b.height) for b in self.boxes]
        return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


@dataclass
class WikiChurches:
    """The annotated samples, the feature names, the fine-tuning pool and a load report."""

    root: Path
    samples: list[Sample]
    features: list[str]
    pool: pd.DataFrame
    report: dict = field(default_factory=dict)


def load_wikichurches(root: str | Path, *, strict: bool = True) -> WikiChurches:
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
    report: dict = {
        "clamped_boxes": [],
        "zero_area_boxes": [],
        "images_without_boxes": [],
        "unreadable_reasons": {},
    }

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
        _warn(
            f"dataset.strict: false: {len(missing)} image files are missing from "
            f"{root / 'images'} and were skipped (e.g. {missing[0]}); "
            f"{_remedy(root, f'download images.zip from {ZENODO} to get them')}."
        )

    samples, unreadable = [], []
    for image_id in sorted(set(annotations) - set(missing)):
        path = listing[image_id]
        try:
            width, height = image_size(path)
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
        samples.append(
            Sample(
                image_id=image_id,
                church_id=church_of(image_id),
                path=path,
                styles=_style_names(annotations[image_id], image_id, parts_path),
                boxes=boxes,
                width=width,
                height=height,
            )
        )
    report["unreadable_images"] = unreadable
    if unreadable:
        _warn(
            f"dataset.strict: false: {len(unreadable)} annotated images could not be read and "
            f"were skipped (e.g. {unreadable[0]}); see report['unreadable_reasons']."
        )
    if report["zero_area_boxes"]:
        _warn(
            f"{len(report['zero_area_boxes'])} boxes in {parts_path} have no area inside their "
            "image after clamping and were skipped; see report['zero_area_boxes']."
        )

    pool = pool[~pool["image_id"].isin(missing)]
    pool = _prevent_leakage(pool, set(annotations), report)
    report["pool_splits"] = {s: int((pool["split"] == s).sum()) for s in SPLITS}
    report["counts"] = {
        "annotated_images": len(annotations),
        "samples": len(samples),
        **{k: len(v) for k, v in report.items() if isinstance(v, list)},
    }
    return WikiChurches(root=root, samples=samples, features=features, pool=pool, report=report)


def church_of(image_id: str) -> str:
    """The church's Wikidata id: the part of the file name before the first ``_``."""
    return image_id.split("_", 1)[0]


def image_size(path: Path) -> tuple[int, int]:
    """Upright ``(width, height)`` from the file header (EXIF orientation applied)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except _UNREADABLE as error:
        raise DataError(
            f"{path}: cannot read the image header ({error}); "
            f"{_remedy(path.parent.parent, f'replace the file from images.zip ({ZENODO})')}."
        ) from error
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


@contextmanager
def _strict_decoding() -> Iterator[None]:
    """A truncated file stays an error even if another library (WeasyPrint does, on import)
    has set Pillow's process-wide LOAD_TRUNCATED_IMAGES."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def load_image(path: Path) -> Image.Image:
    """Decode an image as upright 8-bit RGB; a corrupt or truncated file is a DataError."""
    try:
        with Image.open(path) as image, _strict_decoding():
            image.load()
            upright = ImageOps.exif_transpose(image)
    except _UNREADABLE as error:
        raise DataError(
            f"{path}: cannot decode the image ({error}); the file is corrupt or truncated — "
            f"{_remedy(path.parent.parent, f'replace it from images.zip ({ZENODO})')}."
        ) from error
    if upright.mode == "I" or upright.mode.startswith("I;16"):
        scaled = np.asarray(upright, dtype=np.float64) / 257.0
        upright = Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8))
    return upright.convert("RGB")


def box_masks(sample: Sample, geometry: Geometry, resolution: int) -> np.ndarray:
    """Each box of ``sample`` as an ``(R, R)`` boolean mask in the model's input frame."""
    frame_boxes = geometry.boxes_to_frame(sample.boxes_ltwh(), sample.width, sample.height)
    return rasterise(frame_boxes, resolution)


def union_mask(masks: np.ndarray) -> np.ndarray:
    """Pixels inside any box: ``(n, R, R)`` -> ``(R, R)``."""
    return np.asarray(masks, dtype=bool).any(axis=0)


def dataset_fingerprint(root: str | Path) -> str:
    """A cheap hash of what the reader reads: JSON and split bytes, image names/sizes/mtimes."""
    root = Path(root)
    digest = hashlib.sha256()
    split_dir = _split_dir(root)
    split_files = [split_dir / f"wc4_{s}.txt" for s in SPLITS] if split_dir else []
    for path in [root / "building_parts.json", root / "churches.json", *split_files]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"<absent>")
    images = root / "images"
    entries = sorted(os.scandir(images), key=lambda e: e.name) if images.is_dir() else []
    for entry in entries:
        stat = entry.stat()
        digest.update(f"{entry.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _remedy(root: Path, real: str) -> str:
    """What to do about a bad file: ``real`` for the real dataset; rebuild for generated data."""
    from sightline.synthetic import MANIFEST

    if (root / MANIFEST).is_file():
        return f"{root} was generated by sightline: run `python build.py` to make it again"
    return real


def _download_hint(root: Path, problem: str) -> str:
    return (
        f"{problem}. Download building_parts.json, churches.json, images.zip and labels.zip "
        f"from {ZENODO}, put the two JSON files in {root}/, unzip images.zip into "
        f"{root}/images/ and labels.zip into {root}/labels/."
    )


def _missing_message(root: Path, missing: list[str]) -> str:
    shown = ", ".join(missing[:10])
    if len(missing) > 10:
        shown += f" and {len(missing) - 10} more"
    fix = _remedy(root, f"download images.zip from {ZENODO} and unzip it into {root / 'images'}/")
    return (
        f"{len(missing)} image files are missing from {root / 'images'}: {shown}. "
        f"{fix[0].upper()}{fix[1:]} (or set dataset.strict: false in the params file to skip them)."
    )


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(
            f"{path}: not readable JSON ({error}); "
            f"{_remedy(path.parent, f'download it again from {ZENODO}')}."
        ) from error


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


def _boxes(
    annotation: dict, image_id: str, features: list[str], path: Path, report: dict
) -> tuple[Box, ...]:
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
                raise DataError(
                    f"{path}: image {image_id}, group {g}: malformed box {element} ({error})."
                ) from error
            for name, value in (("label", label), ("group_label", group_label)):
                if not 0 <= value < len(features):
                    raise DataError(
                        f"{path}: image {image_id}, group {g}: unknown {name} {value} "
                        f"('meta' has {len(features)} feature types)."
                    )
            where = {"image_id": image_id, "group": g, "label": label}
            c = np.clip([left, top, x1, y1], 0.0, 1.0)
            if not np.array_equal(c, [left, top, x1, y1]):
                report["clamped_boxes"].append(where)
            if c[2] <= c[0] or c[3] <= c[1]:
                report["zero_area_boxes"].append(where)
                continue
            boxes.append(
                Box(
                    left=float(c[0]),
                    top=float(c[1]),
                    width=float(c[2] - c[0]),
                    height=float(c[3] - c[1]),
                    label=label,
                    group_label=group_label,
                    group=g,
                    feature=features[label],
                )
            )
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
            raise DataError(
                f"{folder} holds only some split files ({', '.join(absent)} missing); "
                f"unzip labels.zip from {ZENODO} into {root / 'labels'}/ again."
            )
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
                raise DataError(
                    f"{path}, line {number}: expected '<image file> <main style QID>' with a "
                    f"QID among {sorted(MAIN_STYLES)}, got {line!r}."
                )
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


# --- ML Interpretability Benchmark: images with human-attention masks ---------------------

BENCHMARK_REPO = "https://github.com/SinaMohseni/ML-Interpretability-Evaluation-Benchmark"
# (image folder, mask folder) under Image/ImageNet/, current spelling first, then older commits'
HUMAN_ATTENTION_FOLDERS = (
    ("original_images", "human_attention_mask"),
    ("original images", "human attention mask"),
)
SUBJECTS_CSV = Path(__file__).with_name("imagenet_subjects.csv")
_BENCHMARK_NAME = re.compile(r"^([a-z]+?)\s*(\d+)\.(jpe?g|png)$", re.IGNORECASE)


@dataclass(frozen=True)
class AttentionSample:
    """One benchmark image (e.g. ``dog3``), its human-attention mask file and upright size."""

    image_id: str
    subject: str
    path: Path
    mask_path: Path
    width: int
    height: int


@dataclass
class HumanAttention:
    """The paired samples, the subject -> ImageNet classes mapping and a load report."""

    root: Path
    samples: list[AttentionSample]
    subjects: dict[str, tuple[int, ...]]
    report: dict = field(default_factory=dict)


def imagenet_subjects(path: str | Path = SUBJECTS_CSV) -> dict[str, tuple[int, ...]]:
    """The subject -> ImageNet-1k class indices mapping (``a-b`` is an inclusive range)."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    mapping = {}
    for row in table.itertuples():
        classes: list[int] = []
        for token in row.imagenet_classes.split():
            low, _, high = token.partition("-")
            classes += range(int(low), int(high or low) + 1)
        if any(not 0 <= c < 1000 for c in classes):
            raise DataError(f"{path}: subject {row.subject!r} has a class outside 0..999")
        mapping[row.subject] = tuple(classes)
    return mapping


def _benchmark_folders(root: Path) -> tuple[Path, Path] | None:
    """The (images, masks) folders under ``root`` (the clone, or its Image/ImageNet)."""
    for base in (root / "Image" / "ImageNet", root):
        for images, masks in HUMAN_ATTENTION_FOLDERS:
            if (base / images).is_dir():
                return base / images, base / masks
    return None


def _benchmark_hint(root: Path, problem: str) -> str:
    return (
        f"{problem}. Get the ML Interpretability Benchmark: `git clone {BENCHMARK_REPO} "
        f"{root}` (about 2 GB), or download it as a ZIP from that page and unpack it there. "
        f"The reader expects {root}/Image/ImageNet/original_images/<subject><k>.jpg and "
        f"{root}/Image/ImageNet/human_attention_mask/<subject><k>.jpg (older commits' "
        "'original images/' and 'human attention mask/' are accepted too)."
    )


def load_human_attention(
    root: str | Path, *, strict: bool = True, subjects_csv: str | Path = SUBJECTS_CSV
) -> HumanAttention:
    """Pair each benchmark image with its mask. ``strict=False`` skips (and counts) images
    whose mask is missing or of another size, and files named after no known subject."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(_benchmark_hint(root, f"the dataset folder {root} does not exist"))
    folders = _benchmark_folders(root)
    if folders is None:
        raise DataError(_benchmark_hint(root, f"no original_images/ folder under {root}"))
    image_dir, mask_dir = folders
    subjects = imagenet_subjects(subjects_csv)
    masks = {p.stem.replace(" ", "").lower(): p for p in _files(mask_dir)}
    report: dict = {"folders": [str(image_dir), str(mask_dir)], "missing_masks": [],
                    "size_mismatches": [], "unknown_subjects": [], "unreadable": []}
    samples = []
    for path in _files(image_dir):
        match = _BENCHMARK_NAME.match(path.name)
        subject = match.group(1).lower() if match else None
        if subject not in subjects:
            problem = (f"{path}: not named <subject><k>.jpg with a subject of {subjects_csv} "
                       f"({', '.join(subjects)})")
            if strict:
                raise DataError(problem + "; remove the file or pass strict=False to skip it.")
            report["unknown_subjects"].append(str(path))
            continue
        image_id = f"{subject}{int(match.group(2))}"
        mask_path = masks.get(path.stem.replace(" ", "").lower())
        try:
            if mask_path is None:
                raise DataError(f"{path}: no human-attention mask {mask_dir / path.name}")
            size, mask_size = image_size(path), image_size(mask_path)
            if size != mask_size:
                report["size_mismatches"].append(image_id)
                raise DataError(
                    f"{mask_path}: mask is {mask_size[0]}x{mask_size[1]} but its image {path} "
                    f"is {size[0]}x{size[1]}"
                )
        except DataError as error:
            if strict:
                raise DataError(f"{error}; fix the file from {BENCHMARK_REPO} or pass "
                                "strict=False to skip the image.") from None
            if mask_path is None:
                report["missing_masks"].append(image_id)
            elif image_id not in report["size_mismatches"]:
                report["unreadable"].append(image_id)
            continue
        samples.append(AttentionSample(image_id, subject, path, mask_path, *size))
    if not samples:
        raise DataError(_benchmark_hint(root, f"no image in {image_dir} has a usable mask"))
    report["counts"] = {"samples": len(samples),
                        **{k: len(v) for k, v in report.items() if k != "folders"}}
    return HumanAttention(root, sorted(samples, key=_benchmark_order), subjects, report)


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(Path(e.path) for e in os.scandir(folder) if e.is_file()
                  and e.name.lower().endswith((".jpg", ".jpeg", ".png")))


def _benchmark_order(sample: AttentionSample) -> tuple[str, int]:
    return sample.subject, int(sample.image_id[len(sample.subject):])


def load_attention_mask(path: Path) -> Image.Image:
    """A human-attention mask as an upright 8-bit grayscale image (RGB masks: luminance)."""
    try:
        with Image.open(path) as mask:
            mask.load()
            upright = ImageOps.exif_transpose(mask)
    except _UNREADABLE as error:
        raise DataError(f"{path}: cannot decode the mask ({error}); replace it from "
                        f"{BENCHMARK_REPO}.") from error
    return upright.convert("L")


def human_mask(sample: AttentionSample, geometry: Geometry, resolution: int) -> np.ndarray:
    """The continuous mask in the model's input frame at ``resolution``: float32 in [0, 1].

    The mask goes through the very resize / crop the image goes through, then is
    area-resized to the working resolution.
    """
    frame = geometry.transform()(load_attention_mask(sample.mask_path))  # (1, S, S) in [0, 1]
    frame = T.functional.resize(frame, [resolution, resolution], antialias=True)
    return frame[0].clamp(0, 1).numpy().astype(np.float32)


def human_attention_fingerprint(root: str | Path) -> str:
    """A cheap hash of the benchmark files the reader reads: names, sizes, mtimes."""
    root = Path(root)
    digest = hashlib.sha256(SUBJECTS_CSV.read_bytes())
    folders = _benchmark_folders(root) or ()
    for folder in folders:
        for path in _files(folder):
            stat = path.stat()
            digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
