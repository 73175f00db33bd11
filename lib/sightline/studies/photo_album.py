"""The photographs shipped inside packages (scikit-image, scikit-learn, matplotlib, Debian's
``darknet``) and the project's COCO annotations of them: `prepare_photos`, `read_photos`."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import data

ANNOTATIONS = Path(__file__).parents[1] / "photos_annotations.json"
DARKNET_DATA = Path("usr/share/darknet/data")  # where the .deb puts the photographs


def _package_dir(module: str, *parts: str) -> Path | None:
    """The folder ``parts`` inside an installed Python package, or None."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def fetch_darknet(root: Path, timeout: float = 120) -> str | None:
    """``apt-get download darknet`` and ``dpkg -x`` it into ``<root>/darknet``; None when it
    worked, else the reason (no apt-get / dpkg, a failure, or the timeout)."""
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        return "apt-get / dpkg not found"
    target = root / "darknet"
    with tempfile.TemporaryDirectory() as scratch:
        try:
            subprocess.run(["apt-get", "download", "darknet"], cwd=scratch, check=True,
                           capture_output=True, timeout=timeout)
            (deb,) = Path(scratch).glob("darknet_*.deb")
            subprocess.run(["dpkg", "-x", str(deb), str(target)], check=True,
                           capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"apt-get download darknet did not finish in {timeout:.0f} s"
        except (subprocess.CalledProcessError, ValueError) as error:
            detail = getattr(error, "stderr", b"") or b""
            return f"apt-get download darknet failed: {detail.decode(errors='replace').strip()}"
    return None


@dataclass(frozen=True)
class PhotoSource:
    """Photographs one package ships: where they are installed and their sha256 hashes."""

    package: str
    install: str  # the command that provides them
    files: dict[str, str]  # file name -> sha256
    folders: Callable[[Path], list[Path]]  # candidate folders, given the photos root
    fetch: Callable[[Path, float], str | None] | None = None  # gets them; None or why not


SOURCES = (
    PhotoSource("scikit-image", "pip install scikit-image==0.26.0", {
        "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        "camera.png": "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
        "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
        "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
        "motorcycle_left.png": "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
        "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c"},
        lambda root: [p for p in [_package_dir("skimage", "data")] if p]),
    PhotoSource("scikit-learn", "pip install scikit-learn", {
        "china.jpg": "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29",
        "flower.jpg": "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638"},
        lambda root: [p for p in [_package_dir("sklearn", "datasets", "images")] if p]),
    PhotoSource("matplotlib", "pip install matplotlib", {
        "grace_hopper.jpg": "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130"},
        lambda root: [p for p in [_package_dir("matplotlib", "mpl-data", "sample_data")] if p]),
    PhotoSource("darknet (Debian)", "apt-get download darknet && dpkg -x darknet_*.deb data/photos/darknet", {
        "dog.jpg": "5a9522051c3cec2bbd2f6323fccba32e8fbf3ddcc2b3e2fd46b04c720bc6f866",
        "eagle.jpg": "f95f57297fd51a6c5ddceb5ed6916fa759d1d65f402fee34c05b31a9608755c0",
        "giraffe.jpg": "00dc48a9b2af8a1fe4c4b79319726591f1033c7e1150f21e7577a79f3b6659f1",
        "horses.jpg": "c8f0a677a1356569e2ce71d2fa88c1030c0ae57ecf5e14170e02d9a86a20dcb4",
        "person.jpg": "cdcbab947e46110fc2b77784ac54ddbbab2640f1e44cb5e91fc8984a9793a7d1"},
        lambda root: [Path("/") / DARKNET_DATA, root / "darknet" / DARKNET_DATA], fetch_darknet),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class PhotoReport:
    """What `prepare_photos` found: photo files in place, and one line per missing source."""

    present: list[str]
    missing: list[str]


def prepare_photos(root: Path, *, fetch: bool = True, timeout: float = 120) -> PhotoReport:
    """Copy the packaged photographs into ``<root>/images`` (hash-checked) and write
    ``<root>/annotations.json`` for those present (a missing source: one line with its install
    command). ``fetch``: a source that can be (`fetch_darknet`) and is nowhere here is fetched."""
    root = Path(root)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    present, missing = [], []
    for source in SOURCES:
        folder, problem = _source_folder(source, root), None
        if folder is None and fetch and source.fetch is not None:
            problem = source.fetch(root, timeout)
            folder = _source_folder(source, root)
        if folder is None:
            tried = f"; fetching them failed: {problem}" if problem else ""
            missing.append(f"{', '.join(source.files)}: not found; they come with "
                           f"{source.package} (`{source.install}`){tried}")
            continue
        for name, digest in source.files.items():
            copy = images / name
            if copy.is_file() and sha256(copy) == digest:
                present.append(name)
                continue
            original = folder / name
            found = sha256(original) if original.is_file() else None
            if found != digest:
                missing.append(f"{original}: " + (f"sha256 {found[:12]}… is not the annotated "
                               f"file's {digest[:12]}… (another {source.package} version?)"
                               if found else "missing") + "; skipped")
                continue
            shutil.copyfile(original, copy)
            present.append(name)
    coco = json.loads(ANNOTATIONS.read_text())
    kept = [image for image in coco["images"] if image["file_name"] in present]
    ids = {image["id"] for image in kept}
    coco |= {"images": kept, "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}
    text = json.dumps(coco, indent=1)
    target = root / "annotations.json"
    if not target.is_file() or target.read_text() != text:
        target.write_text(text)
    return PhotoReport(sorted(present), missing)


def _source_folder(source: PhotoSource, root: Path) -> Path | None:
    """The first candidate folder holding one of the source's files."""
    for folder in source.folders(root):
        if any((folder / name).is_file() for name in source.files):
            return folder
    return None


def fingerprint(root: Path) -> str:
    """Hash of the annotations and image files under ``root``, for the build's stamps."""
    h = hashlib.sha256((Path(root) / "annotations.json").read_bytes())
    for path in sorted((Path(root) / "images").iterdir()):
        h.update(path.name.encode() + sha256(path).encode())
    return h.hexdigest()


# --- annotations -------------------------------------------------------------------------
@dataclass(frozen=True)
class Region:
    """One annotation: its category, the ImageNet classes the category stands for, the
    pixel box ``(x, y, w, h)`` and the mask pycocotools draws (box or polygon) at ``(H, W)``."""

    category: str
    imagenet: tuple[int, ...]
    bbox: tuple[float, float, float, float]
    mask: np.ndarray


@dataclass(frozen=True)
class Photo:
    file: str
    path: Path
    width: int
    height: int
    regions: tuple[Region, ...]

    def image(self) -> Image.Image:
        return Image.open(self.path).convert("RGB")

    def objects(self) -> dict[str, tuple[int, ...]]:
        """Annotated categories with ImageNet classes, in annotation order: name -> class ids."""
        return {r.category: r.imagenet for r in self.regions if r.imagenet}

    def union(self, category: str, resolution: int) -> np.ndarray:
        """The union of a category's masks in the squash frame, ``(R, R)`` bool."""
        masks = [r.mask for r in self.regions if r.category == category]
        if not masks:
            raise KeyError(f"{self.file}: no annotation of category {category!r}")
        return frame_mask(np.logical_or.reduce(masks), resolution)

    def category_of(self, imagenet_class: int) -> str | None:
        """The annotated category whose ImageNet ids contain the class, or None."""
        return next((name for name, ids in self.objects().items() if imagenet_class in ids), None)


def read_photos(root: Path) -> list[Photo]:
    """The photos of ``<root>/annotations.json`` with their regions, read by the COCO reader
    (`sightline.data`: its checks and messages), each category with its ImageNet classes."""
    dataset = data.load_dataset({"kind": "coco", "root": Path(root)})
    category = {c["name"]: c for c in dataset.categories}
    return [Photo(sample.image_id, sample.path, sample.width, sample.height,
                  tuple(_region(r, category[r.feature], sample.width, sample.height)
                        for r in sample.regions))
            for sample in dataset.samples]


def _region(region: data.Region, category: dict, width: int, height: int) -> Region:
    """A reader's region as this study uses it: its category's ImageNet ids, its pixel box
    and its mask at image size (a box: the pixels whose centres it covers)."""
    bbox = (region.left * width, region.top * height, region.width * width,
            region.height * height)
    if region.is_mask:
        mask = region.mask()
    else:
        x0, y0, w, h = bbox
        cols, rows = np.arange(width) + 0.5, np.arange(height) + 0.5
        mask = (((rows >= y0) & (rows < y0 + h))[:, None] & ((cols >= x0) & (cols < x0 + w))[None])
    return Region(region.feature, tuple(category.get("imagenet", ())), bbox, mask)


def frame_mask(mask: np.ndarray, resolution: int) -> np.ndarray:
    """An image-pixel mask in the squash frame at ``R x R``: nearest sampling at pixel centres."""
    height, width = mask.shape
    rows = ((np.arange(resolution) + 0.5) * height / resolution).astype(int)
    cols = ((np.arange(resolution) + 0.5) * width / resolution).astype(int)
    return mask[np.ix_(rows, cols)]

