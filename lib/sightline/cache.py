"""The HDF5 store of saliency maps: content-keyed, resumable, safe to interrupt.

Layout: ``<root>/<store>.h5`` holds, for one (dataset, model, weights/variant, code
version), the image ids and one dataset ``maps/<method>/<layer>`` of shape
``(N, K, h, w)`` float32 (K = heads + 1 with the head mean last, or 1) per map kind; for a
classifier (a style head, an ImageNet model), ``predicted`` (N,): the class its forward pass
for the maps predicted, -1 where none was recorded.

Writes never touch a file a reader may hold: each batch lands in its own shard
(``<store>.shards/NNNNNN.h5``, written under a temporary name and renamed into place,
so a killed process leaves either a whole shard or none). ``compact`` merges the main
file and the shards into a new file that replaces the old one atomically. Readers see
the main file plus any shards, so an interrupted run is readable and resumes where it
stopped; rows are ordered by image id, so the result does not depend on interruptions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

MapKey = tuple[str, int]
_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


class MapStore:
    """Maps of one (dataset, model, variant) in one HDF5 file plus pending shards."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.shard_dir = self.path.with_suffix(".shards")

    def _files(self) -> list[Path]:
        shards = sorted(self.shard_dir.glob("*.h5")) if self.shard_dir.is_dir() else []
        return ([self.path] if self.path.exists() else []) + shards

    def _opened(self) -> Iterator[tuple[h5py.File, list[str]]]:
        """Each file, main first, then the shards in the order written (a later one wins), with
        its image ids."""
        for file in self._files():
            with h5py.File(file, "r") as h5:
                yield h5, _decode(h5["image_ids"][()])

    def image_ids(self) -> set[str]:
        """Ids of the images whose maps are stored (a shard is written whole or not at all)."""
        return {image_id for _, ids in self._opened() for image_id in ids}

    def predicted(self) -> dict[str, int]:
        """The recorded predicted class of each image that has one."""
        found: dict[str, int] = {}
        for h5, ids in self._opened():
            if "predicted" in h5:
                found.update((i, c) for i, c in zip(ids, h5["predicted"][()].tolist(), strict=True)
                             if c >= 0)
        return found

    def keys(self) -> list[MapKey]:
        """The (method, layer) map kinds held, sorted."""
        return sorted({(method, int(layer)) for h5, _ in self._opened()
                       for method, layers in h5.get("maps", {}).items() for layer in layers})

    def read(self, method: str, layer: int, image_ids: Iterable[str] | None = None
             ) -> tuple[list[str], np.ndarray]:
        """Maps of one kind for the given images (default: all), ordered as asked or by id."""
        rows: dict[str, np.ndarray] = {}
        for h5, ids in self._opened():
            if f"maps/{method}/{layer}" in h5:
                rows.update(zip(ids, h5[f"maps/{method}/{layer}"][()], strict=True))
        wanted = sorted(rows) if image_ids is None else list(image_ids)
        missing = [i for i in wanted if i not in rows]
        if missing:
            raise KeyError(f"{self.path}: no maps {method}/{layer} for {len(missing)} image(s), e.g. "
                           f"{missing[:3]}; run the extraction for this model first")
        if not wanted:
            return [], np.zeros((0, 0, 0, 0), dtype=np.float32)
        return wanted, np.stack([rows[i] for i in wanted])

    def read_image(self, method: str, layer: int, image_id: str) -> np.ndarray:
        """One image's maps of one kind ``(K, h, w)``, reading only its row (interactive use)."""
        name = f"maps/{method}/{layer}"
        for file in reversed(self._files()):  # a shard written later wins, as in ``read``
            with h5py.File(file, "r") as h5:
                if name not in h5:
                    continue
                ids = _decode(h5["image_ids"][()])
                if image_id in ids:
                    return h5[name][ids.index(image_id)]
        raise KeyError(f"{self.path}: no map {method}/{layer} for image {image_id!r}")

    @contextmanager
    def writer(self) -> Iterator[ShardWriter]:
        """Append batches as shards; compacts into the main file on a clean exit."""
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        writer = ShardWriter(self.shard_dir)
        yield writer
        self.compact()

    def compact(self) -> None:
        """Merge the main file and all shards into one file, replacing it atomically."""
        files = self._files()
        shards = [f for f in files if f != self.path]
        if not shards:
            self._remove_shard_dir()
            return
        ids = sorted(self.image_ids())
        predicted = self.predicted()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with h5py.File(tmp, "w") as out:
            out.create_dataset("image_ids", data=np.array(ids, dtype=h5py.string_dtype()))
            if predicted:
                out.create_dataset("predicted", data=np.array(
                    [predicted.get(i, -1) for i in ids], dtype=np.int32))
            for method, layer in self.keys():
                _, data = self.read(method, layer, ids)
                out.create_dataset(f"maps/{method}/{layer}", data=data, chunks=(1, *data.shape[1:]),
                                   **_COMPRESSION)
        os.replace(tmp, self.path)
        for shard in shards:
            shard.unlink()
        self._remove_shard_dir()

    def _remove_shard_dir(self) -> None:
        """Drop the emptied shard folder and any half-written shard a killed run left in it."""
        if not self.shard_dir.is_dir():
            return
        for partial in self.shard_dir.glob("*.tmp"):
            partial.unlink()
        if not any(self.shard_dir.iterdir()):
            self.shard_dir.rmdir()

    def nbytes_per_image(self) -> float:
        """On-disk bytes per stored image (after compression)."""
        n = len(self.image_ids())
        size = sum(f.stat().st_size for f in self._files())
        return size / n if n else 0.0


class ShardWriter:
    """Writes one batch of maps per shard file, atomically; writers running at once (parallel
    extraction tasks) each take their own ``prefix``."""

    def __init__(self, shard_dir: Path, prefix: str = ""):
        self.shard_dir = shard_dir
        self.prefix = prefix
        numbers = (p.stem[len(prefix) :] for p in shard_dir.glob(f"{prefix}*.h5"))
        self._next = max((int(n) for n in numbers if n.isdigit()), default=-1) + 1

    def put(self, image_ids: list[str], maps: Mapping[MapKey, np.ndarray],
            predicted: Sequence[int] | None = None) -> None:
        """Store maps ``{(method, layer): (B, K, h, w)}`` for the batch ``image_ids``, and the
        class a classifier ``predicted`` for each."""
        if predicted is not None and len(predicted) != len(image_ids):
            raise ValueError(f"{len(predicted)} predicted classes for {len(image_ids)} image ids")
        for key, value in maps.items():
            if value.shape[0] != len(image_ids):
                raise ValueError(f"maps {key} hold {value.shape[0]} rows for {len(image_ids)} image ids")
        final = self.shard_dir / f"{self.prefix}{self._next:06d}.h5"
        tmp = final.with_name(final.name + ".tmp")
        with h5py.File(tmp, "w") as h5:
            h5.create_dataset("image_ids", data=np.array(image_ids, dtype=h5py.string_dtype()))
            if predicted is not None:
                h5.create_dataset("predicted", data=np.asarray(predicted, dtype=np.int32))
            for (method, layer), value in maps.items():
                h5.create_dataset(f"maps/{method}/{layer}", data=np.asarray(value, np.float32))
        os.replace(tmp, final)
        self._next += 1


def _decode(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]
