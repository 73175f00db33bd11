"""The ML Interpretability Benchmark (Mohseni et al.): images with human-attention masks.

Pairs each ``<subject><k>.jpg`` of the benchmark's ImageNet part with its continuous
human-attention mask (the share of annotators who marked each pixel); ``human_mask``
puts a mask into a model's input frame through the very geometry its image goes through.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from torchvision.transforms import v2 as T

from ..geometry import Geometry
from .contract import DataError, decode_upright, image_files, image_size

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
    return (f"{problem}. Get the ML Interpretability Benchmark: `git clone {BENCHMARK_REPO} "
            f"{root}` (about 2 GB), or download it as a ZIP from that page and unpack it there. "
            f"The reader expects {root}/Image/ImageNet/original_images/<subject><k>.jpg and "
            f"{root}/Image/ImageNet/human_attention_mask/<subject><k>.jpg (older commits' "
            "'original images/' and 'human attention mask/' are accepted too).")


def load_human_attention(root: str | Path, *, strict: bool = True) -> HumanAttention:
    """Pair each benchmark image with its mask. ``strict=False`` skips (and counts) images
    whose mask is missing or of another size, and files named after no known subject."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(_benchmark_hint(root, f"the dataset folder {root} does not exist"))
    folders = _benchmark_folders(root)
    if folders is None:
        raise DataError(_benchmark_hint(root, f"no original_images/ folder under {root}"))
    image_dir, mask_dir = folders
    subjects = imagenet_subjects()
    masks = {p.stem.replace(" ", "").lower(): p for p in image_files(mask_dir)}
    report: dict = {"folders": [str(image_dir), str(mask_dir)], "missing_masks": [],
                    "size_mismatches": [], "unknown_subjects": [], "unreadable": []}
    samples = []
    for path in image_files(image_dir):
        match = _BENCHMARK_NAME.match(path.name)
        subject = match.group(1).lower() if match else None
        if subject not in subjects:
            problem = (f"{path}: not named <subject><k>.jpg with a subject of {SUBJECTS_CSV} "
                       f"({', '.join(subjects)})")
            if strict:
                raise DataError(problem + "; remove the file or pass strict=False to skip it.")
            report["unknown_subjects"].append(str(path))
            continue
        image_id = f"{subject}{int(match.group(2))}"
        mask_path = masks.get(path.stem.replace(" ", "").lower())
        try:  # each step names the report list its failure is counted in
            reason = "missing_masks"
            if mask_path is None:
                raise DataError(f"{path}: no human-attention mask {mask_dir / path.name}")
            reason = "unreadable"
            size, mask_size = image_size(path), image_size(mask_path)
            if size != mask_size:
                reason = "size_mismatches"
                raise DataError(f"{mask_path}: mask is {mask_size[0]}x{mask_size[1]} but its "
                                f"image {path} is {size[0]}x{size[1]}")
        except DataError as error:
            if strict:
                raise DataError(f"{error}; fix the file from {BENCHMARK_REPO} or pass "
                                "strict=False to skip the image.") from None
            report[reason].append(image_id)
            continue
        samples.append(AttentionSample(image_id, subject, path, mask_path, *size))
    if not samples:
        raise DataError(_benchmark_hint(root, f"no image in {image_dir} has a usable mask"))
    report["counts"] = {"samples": len(samples),
                        **{k: len(v) for k, v in report.items() if k != "folders"}}
    order = sorted(samples, key=lambda s: (s.subject, int(s.image_id[len(s.subject):])))
    return HumanAttention(root, order, subjects, report)


def load_attention_mask(path: Path) -> Image.Image:
    """A human-attention mask as an upright 8-bit grayscale image (RGB masks: luminance)."""
    return decode_upright(path, f"replace it from {BENCHMARK_REPO}").convert("L")


def human_mask(sample: AttentionSample, geometry: Geometry, resolution: int) -> np.ndarray:
    """The continuous mask in the model's input frame at ``resolution``: float32 in [0, 1];
    through the very resize / crop its image goes through, then area-resized."""
    frame = geometry.transform()(load_attention_mask(sample.mask_path))  # (1, S, S) in [0, 1]
    frame = T.functional.resize(frame, [resolution, resolution], antialias=True)
    return frame[0].clamp(0, 1).numpy().astype(np.float32)


def human_attention_fingerprint(root: str | Path) -> str:
    """A cheap hash of the benchmark files the reader reads: names, sizes, mtimes."""
    root = Path(root)
    digest = hashlib.sha256(SUBJECTS_CSV.read_bytes())
    folders = _benchmark_folders(root) or ()
    for folder in folders:
        for path in image_files(folder):
            stat = path.stat()
            digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
