"""Training images decoded once: a pool's images in a model's input frame, kept on disk.

Decoding and resizing a multi-megapixel photograph costs tens of milliseconds on one core,
more than a GPU's training step, and fine-tuning reads every image every epoch. So the frames
of one set of images at one geometry are decoded once into a ``.npy`` file that every run,
seed, epoch and worker reads through a memory map: the very pixels decoding would give
(uint8, ``round(255 · frame)``), at memory speed.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import data
from .geometry import Geometry

Item = tuple[str, str, int]  # (image_id, path, label index), as fine-tuning's splits hold them


def frames_path(folder: str | Path, paths: Sequence[str], geometry: Geometry) -> Path:
    """The file holding ``paths``' frames at ``geometry``: named by what decides its pixels
    (the image list, the geometry, the frame code and torchvision's version)."""
    key = json.dumps([sorted(set(paths)), repr(geometry), torchvision.__version__,
                      hashlib.sha256(Path(__file__).read_bytes()).hexdigest()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(folder) / f"frames-{geometry.size}-{digest}.npy"


def frame_pixels(path: str | Path, transform: Callable) -> np.ndarray:
    """One image in the frame ``transform`` makes, as uint8 ``(3, S, S)``."""
    return transform(data.load_image(Path(path))).mul(255).round().to(torch.uint8).numpy()


def _decode(item: tuple[int, str], transform: Callable) -> tuple[int, np.ndarray]:
    """A loader's item ``(row, path)`` decoded (in the loader's worker) to ``(row, pixels)``."""
    return item[0], frame_pixels(item[1], transform)


def ensure_frames(folder: str | Path, paths: Sequence[str], geometry: Geometry, *,
                  workers: int = 0, progress: bool = True) -> Path:
    """Decode ``paths`` into their frames file unless it exists; its path. Written to a
    ``.partial.npy`` renamed when complete (an interrupted decode leaves no file that looks
    finished), under a lock (runs training side by side, ``engine: processes``, decode it once)."""
    path = frames_path(folder, paths, geometry)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or its process dies
        if path.is_file():  # another process decoded it meanwhile
            return path
        order = sorted(set(paths))
        partial = path.with_suffix(".partial.npy")
        size = geometry.size
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                        shape=(len(order), 3, size, size))
        decode = DataLoader(list(enumerate(order)), batch_size=None, num_workers=workers,
                            collate_fn=functools.partial(_decode, transform=geometry.transform()))
        for index, pixels in tqdm(decode, total=len(order), unit="image", leave=False,
                                  desc=f"decoding frames ({size} px)", disable=not progress):
            out[index] = pixels
        out.flush()
        del out
        partial.rename(path)
    return path


class FrameSet(Dataset):
    """``items``' frames read from the frames file of ``paths`` (`ensure_frames`), each through
    ``transform``; yields ``(frame, label)``. Each process maps the file on first use."""

    def __init__(self, path: str | Path, paths: Sequence[str], items: Sequence[Item],
                 transform: Callable):
        self.path, self.items, self.transform = Path(path), list(items), transform
        row = {p: i for i, p in enumerate(sorted(set(paths)))}
        self.rows = [row[p] for _, p, _ in self.items]
        self._frames: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_frames": None}  # a worker maps the file itself

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self._frames is None:
            self._frames = np.load(self.path, mmap_mode="r")
        pixels = torch.from_numpy(np.array(self._frames[self.rows[index]]))
        return self.transform(pixels), self.items[index][2]
