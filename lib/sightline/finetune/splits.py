"""The train/val split of the style-labelled pool: stratified by style, church-disjoint, one
per dataset and seed, shared by every model and strategy; the annotated images and every
image of their churches never enter it (`check_no_leak`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import data
from ..config import Finetune
from ..frames import Item
from .checkpoints import FinetuneError, write_json

STYLES: tuple[str, ...] = tuple(data.MAIN_STYLES.values())


@dataclass(frozen=True)
class Split:
    """A stratified, church-disjoint train/val split of one dataset's pool, for one seed."""

    dataset_id: str
    seed: int
    val_fraction: float
    train: tuple[Item, ...]
    val: tuple[Item, ...]

    @property
    def id(self) -> str:
        """Hash of the dataset, seed and the exact (image, label) lists; not of the images'
        paths, so a project moved or copied elsewhere (mtimes kept) keeps its runs."""
        train, val = ([(image, label) for image, _, label in part] for part in (self.train, self.val))
        payload = [self.dataset_id, self.seed, self.val_fraction, train, val]
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:12]

    def save(self, folder: Path) -> Path:
        """Write ``split-s<seed>-<id>.json`` under ``folder`` (the record every run cites)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"split-s{self.seed}-{self.id}.json"
        if not path.exists():
            write_json(path, {"id": self.id, **dataclasses.asdict(self)})
        return path


def check_no_leak(image_ids: Sequence[str], annotated: Sequence[str]) -> None:
    """Raise if any image, or any image of a church, that is annotated is among ``image_ids``."""
    annotated_churches = {data.church_of(i) for i in annotated}
    leaks = sorted(i for i in image_ids if data.church_of(i) in annotated_churches)
    if leaks:
        raise data.DataError(f"{len(leaks)} training/validation images are annotated or share a church with "
                             f"an annotated image (e.g. {leaks[:3]}); the annotated images are the "
                             "evaluation set and must never be trained on. Fix the split files or the pool.")


def make_split(wc: data.Dataset, dataset_id: str, seed: int, val_fraction: float) -> Split:
    """Split the pool's train + val images anew: per style, its churches in a seeded order fill
    the validation set until it holds ``round(val_fraction * n_style)`` images; the rest train."""
    pool = wc.pool[wc.pool["split"].isin(["train", "val"])].sort_values("image_id")
    annotated = [s.image_id for s in wc.samples] + list(wc.report.get("annotated_moved_to_test", []))
    check_no_leak(list(pool["image_id"]), annotated)
    rng = np.random.default_rng([seed, 9])
    church_split: dict[str, str] = {}
    for style in STYLES:
        rows = pool[pool["style"] == style]
        churches = [c for c in sorted(rows["church_id"].unique()) if c not in church_split]
        per_church = rows.groupby("church_id").size()
        target, taken = round(val_fraction * len(rows)), 0
        for church in rng.permutation(np.array(churches, dtype=object)):
            church_split[church] = "val" if taken < target else "train"
            taken += int(per_church[church]) if taken < target else 0
    items = {"train": [], "val": []}
    for row in pool.itertuples():
        items[church_split[row.church_id]].append((row.image_id, str(row.path), STYLES.index(row.style)))
    for part in ("train", "val"):
        missing = sorted(set(STYLES) - {STYLES[label] for *_, label in items[part]})
        if missing:
            raise FinetuneError(f"the {part} split of {wc.root} (seed {seed}) has no image of {missing}: "
                                "the pool is too small to fine-tune on; add images or lower val_fraction")
    return Split(dataset_id, seed, val_fraction, tuple(items["train"]), tuple(items["val"]))


def test_items(wc: data.Dataset) -> tuple[Item, ...]:
    """The pool's ``test`` split as ``(image_id, path, label)``: never trained on, never
    used to pick an epoch, so accuracy on it is an honest held-out number."""
    pool = wc.pool[wc.pool["split"] == "test"].sort_values("image_id")
    return tuple((r.image_id, str(r.path), STYLES.index(r.style)) for r in pool.itertuples())


def splits_for(wc: data.Dataset, dataset_id: str, finetune: Finetune,
               seeds: Sequence[int]) -> dict[int, Split]:
    """One split per seed (each seed's runs share it)."""
    return {s: make_split(wc, dataset_id, s, finetune.val_fraction) for s in sorted(set(seeds))}

