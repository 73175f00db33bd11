"""What every dataset reader returns: annotated images with expert regions, in one shape.

A reader (one module per on-disk format) turns its files into a `Dataset`: `Sample`s, each
an upright image with its `Region`s (a box, or a mask with its bounding box) and their
feature types, an optional image-level label, and optionally a style-labelled training
pool. Everything downstream (scoring, the notebooks, the explorer) reads only this.

Conventions shared by the readers:

- **Orientation.** Images are shown upright: the EXIF orientation tag is applied
  (``ImageOps.exif_transpose``) and regions are read in that upright frame;
  ``Sample.width`` / ``height`` are the upright size, read from the file header.
- **Boxes** are relative ``left, top, width, height`` (fractions of the image), clamped
  to ``[0, 1]``; a box with no area left is dropped (the readers warn once).
- **Masks** are boolean ``(height, width)`` arrays in upright image pixels; a mask region's
  box is the mask's bounding box (what the explorer draws, and what the soft target uses).
- **Integer-mode images** (16-bit PNG / TIFF, PIL modes ``I`` and ``I;16*``) are assumed to
  span 16 bits and are scaled to 8 bits; other modes convert to RGB with PIL.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFile, ImageOps

from ..geometry import Geometry, rasterise

# Real datasets hold large photos; PIL's default bomb guard (~89 MP) would reject some.
MAX_IMAGE_PIXELS = 300_000_000
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_IMAGE_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

MANIFEST = "synthetic.json"  # written by the generators (sightline.synthetic)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
POOL_COLUMNS = ["image_id", "church_id", "path", "style", "split"]
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees
UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class DataError(Exception):
    """A dataset file is missing or malformed; the message names the file and what to do."""


class DataWarning(UserWarning):
    """The reader skipped or changed part of the data (``dataset.strict: false``, bad boxes)."""


def dataset_root(root: str | Path) -> Path:
    """``root`` as a path; a missing folder is said as such (not as a file missing in it)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"the dataset folder {root} does not exist; set dataset.root to the "
                        "folder that holds your images and annotations.")
    return root


def warn(message: str) -> None:
    """Warn once per load; inside a build's notebooks stay quiet, as the build said it already."""
    if not os.environ.get("SIGHTLINE_BUILD"):
        warnings.warn(message, DataWarning, stacklevel=3)


@dataclass(frozen=True)
class Region:
    """One expert region: its box (relative to the upright image, clamped to ``[0, 1]``) and,
    for a mask region, how to draw its mask.

    ``label`` is the feature type's index in ``Dataset.features``; ``group`` / ``group_label``
    are WikiChurches' box groups (elsewhere: the region's index and its own label);
    ``record`` names the region in its file (e.g. ``annotation 17``) for messages.
    """

    left: float
    top: float
    width: float
    height: float
    label: int
    group_label: int
    group: int
    feature: str
    record: str = field(default="", compare=False)
    mask: Callable[[], np.ndarray] | None = field(default=None, compare=False, repr=False)

    @property
    def is_mask(self) -> bool:
        return self.mask is not None



@dataclass(frozen=True)
class Sample:
    """One annotated image: its file, regions, upright pixel size and image-level label.

    ``label`` is the image's class (WikiChurches: its first main style, else ``"Other"``),
    None where the dataset has no labels; ``tags`` are all its tags (WikiChurches: styles).
    """

    image_id: str
    path: Path
    boxes: tuple[Region, ...]
    width: int
    height: int
    label: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def regions(self) -> tuple[Region, ...]:
        return self.boxes

    def boxes_ltwh(self) -> np.ndarray:
        """Region boxes as an ``(n, 4)`` array of relative ``left, top, width, height``."""
        rows = [(b.left, b.top, b.width, b.height) for b in self.boxes]
        return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


@dataclass
class Dataset:
    """The annotated samples, the feature types and a load report; optionally a training pool.

    ``categories`` holds one dict per feature type (at least ``id`` and ``name``, plus any
    extra field the dataset gives, e.g. a COCO category's ``"imagenet": [285, 281]``).
    ``pool`` lists style-labelled images for fine-tuning (columns ``POOL_COLUMNS``; empty
    where the dataset has none). ``labels`` are the image-level labels in use, sorted.
    """

    root: Path
    samples: list[Sample]
    features: list[str]
    pool: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=POOL_COLUMNS))
    report: dict = field(default_factory=dict)
    kind: str = ""
    categories: list[dict] = field(default_factory=list)
    label_name: str = "label"  # what an image label is called in tables (WikiChurches: style)

    @property
    def labels(self) -> list[str]:
        """The image-level labels the samples carry (empty when the dataset has none)."""
        return sorted({s.label for s in self.samples if s.label is not None})

    @property
    def has_labels(self) -> bool:
        return any(s.label is not None for s in self.samples)

    @property
    def has_pool(self) -> bool:
        """True when there are labelled images to fine-tune on (a train split)."""
        return bool((self.pool["split"] == "train").any())


def image_size(path: Path, remedy: str = "replace the file") -> tuple[int, int]:
    """Upright ``(width, height)`` from the file header (EXIF orientation applied)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except UNREADABLE as error:
        raise DataError(f"{path}: cannot read the image header ({error}); {remedy}.") from error
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def decode_upright(path: Path, remedy: str = "replace the file") -> Image.Image:
    """Decode any image file upright (EXIF orientation applied), in its own mode. A truncated
    file is an error even if another library (WeasyPrint, on import) has set Pillow's
    process-wide LOAD_TRUNCATED_IMAGES."""
    previous, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        with Image.open(path) as image:
            image.load()
            return ImageOps.exif_transpose(image)
    except UNREADABLE as error:
        raise DataError(f"{path}: cannot decode the image ({error}); the file is corrupt or "
                        f"truncated — {remedy}.") from error
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_generated(root: str | Path) -> str | None:
    """Why the generated folder ``root`` cannot be used as it is, or None if it is complete and
    every file it lists has the SHA-256 recorded in its manifest."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return "not generated yet"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return f"{MANIFEST} is unreadable"
    if not manifest.get("complete") or not isinstance(manifest.get("files"), dict):
        return "an earlier generation did not finish"
    for name, expected in manifest["files"].items():
        if not (path.parent / name).is_file():
            return f"{name} is missing"
        if file_sha256(path.parent / name) != expected:
            return f"{name} does not match the hash in {MANIFEST}"
    return None


def remedy(root: Path, real: str) -> str:
    """What to do about a bad file: ``real`` for a real dataset; rebuild for generated data."""
    if (root / MANIFEST).is_file():
        return f"{root} was generated by sightline: run `python build.py` to make it again"
    return real


def load_image(path: str | Path) -> Image.Image:
    """Decode an image as upright 8-bit RGB; a corrupt or truncated file is a DataError."""
    path = Path(path)
    upright = decode_upright(path, remedy(path.parent.parent, "replace it from the dataset's source"))
    if upright.mode == "I" or upright.mode.startswith("I;16"):
        scaled = np.asarray(upright, dtype=np.float64) / 257.0
        upright = Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8))
    return upright.convert("RGB")


def box_masks(sample: Sample, geometry: Geometry, resolution: int) -> np.ndarray:
    """Each region of ``sample`` as an ``(R, R)`` boolean mask in the model's input frame.

    Box regions are rasterised from their frame boxes (``geometry.rasterise``'s pixel-centre
    rule); mask regions are sampled through the same geometry (``Geometry.mask_to_frame``).
    """
    frame_boxes = geometry.boxes_to_frame(sample.boxes_ltwh(), sample.width, sample.height)
    masks = rasterise(frame_boxes, resolution)
    for i, region in enumerate(sample.boxes):
        if region.mask is not None:
            masks[i] = geometry.mask_to_frame(region.mask(), resolution)
    return masks



def union_mask(masks: np.ndarray) -> np.ndarray:
    """Pixels inside any region: ``(n, R, R)`` -> ``(R, R)``."""
    return np.asarray(masks, dtype=bool).any(axis=0)


def bounding_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """A boolean ``(H, W)`` mask's relative ``left, top, width, height`` (pixel edges), or None
    when the mask is empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    height, width = mask.shape
    return (cols[0] / width, rows[0] / height, (cols[-1] + 1 - cols[0]) / width,
            (rows[-1] + 1 - rows[0]) / height)


def skipper(report: dict, strict: bool) -> Callable[[str, str], None]:
    """A record's problem: a DataError (``strict``), else counted under its reason in ``report``."""
    report.update(skipped=Counter(), skipped_records=[])

    def skip(reason: str, message: str) -> None:
        if strict:
            raise DataError(f"{message} (or set dataset.strict: false to skip it).")
        report["skipped"][reason] += 1
        report["skipped_records"].append(message)

    return skip


def close_report(report: dict, skipped_what: str, counts: dict) -> None:
    """Warn once about the skipped ``skipped_what``; add ``counts`` and the tallies."""
    if report["skipped"]:
        warn(f"dataset.strict: false: skipped {sum(report['skipped'].values())} {skipped_what} "
             f"({', '.join(f'{k} {v}' for k, v in report['skipped'].items())}); "
             "see report['skipped_records'].")
    report["skipped"] = dict(report["skipped"])
    report["counts"] = {**counts, **report["skipped"], **{
        k: len(v) for k, v in report.items() if isinstance(v, list) and k != "skipped_records"}}


def warn_boxes(path: Path, report: dict, named: list[str], dropped: str) -> None:
    """One line naming the boxes (record and image) clamped to their image, one counting the
    boxes ``dropped`` says were skipped (``report['zero_area_boxes']``)."""
    if named:
        more = f" and {len(named) - 5} more" if len(named) > 5 else ""
        warn(f"{len(named)} boxes in {path} lie partly outside their image and were clamped to "
             f"it: {'; '.join(named[:5])}{more}; see report['clamped_boxes'].")
    if report["zero_area_boxes"]:
        warn(f"{len(report['zero_area_boxes'])} boxes in {path} {dropped} and were skipped; "
             "see report['zero_area_boxes'].")


def clamp_box(left: float, top: float, width: float, height: float
              ) -> tuple[tuple[float, float, float, float] | None, bool]:
    """A relative box clamped to ``[0, 1]``: ``(ltwh or None if no area is left, clamped?)``."""
    corners = [left, top, left + width, top + height]
    c = np.clip(corners, 0.0, 1.0)
    clamped = not np.array_equal(c, corners)
    if c[2] <= c[0] or c[3] <= c[1]:
        return None, clamped
    return (float(c[0]), float(c[1]), float(c[2] - c[0]), float(c[3] - c[1])), clamped


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (by suffix), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(Path(e.path) for e in os.scandir(folder)
                  if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))


def fingerprint_files(contents: Iterable[Path], folders: Iterable[Path]) -> str:
    """A cheap hash of what a reader reads: ``contents`` by their bytes (or absent), the files
    in ``folders`` (recursively) by their path in the folder, size and mtime."""
    digest = hashlib.sha256()
    for path in contents:
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"<absent>")
    for folder in folders:
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.is_file():
                stat = path.stat()
                name = path.relative_to(folder)
                digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def read_labels(path: Path | None, image_column: str, images: Iterable[str], listing: str | Path
                ) -> dict[str, str]:
    """An image-level labels CSV (none: no labels) with columns ``image`` (``image_column`` says
    what it holds) and ``label``, each of ``images`` (those ``listing`` holds): image -> label."""
    if path is None:
        return {}
    if not path.is_file():
        raise DataError(f"{path}: no labels CSV there (dataset.labels, relative to dataset.root).")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(table.columns[:2]) != ["image", "label"]:
        raise DataError(f"{path}: expected the columns 'image,label' ({image_column} and its "
                        f"label), got {list(table.columns)}.")
    repeated = table["image"][table["image"].duplicated()].tolist()
    if repeated:
        raise DataError(f"{path}: images listed twice: {', '.join(repeated[:5])}.")
    unknown = sorted(set(table["image"]) - set(images))
    if unknown:
        raise DataError(f"{path}: labels for images not in {listing}: {', '.join(unknown[:5])}; "
                        "remove those rows or fix the names.")
    return dict(zip(table["image"], table["label"], strict=True))
