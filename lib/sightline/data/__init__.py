"""Dataset readers: one module per on-disk format, one contract (``contract.Dataset``).

``load_dataset`` reads what a params ``dataset`` section describes (``kind``: ``synthetic``,
``wikichurches``, ``coco``, ``masks``); ``dataset_fingerprint`` hashes what that reader reads.
The ML Interpretability Benchmark (the Shared Interest study) has its reader in
``human_attention``; the demo generators are apart, in `sightline.synthetic`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .coco import coco_files, load_coco
from .contract import (
    MANIFEST,
    DataError,
    Dataset,
    DataWarning,
    Region,
    Sample,
    box_masks,
    fingerprint_files,
    load_image,
    union_mask,
    verify_generated,
)
from .human_attention import (
    AttentionSample,
    HumanAttention,
    human_attention_fingerprint,
    human_mask,
    load_human_attention,
)
from .masks import load_masks, mask_files
from .wikichurches import MAIN_STYLES, church_of, load_wikichurches, wikichurches_files

__all__ = [
    "MAIN_STYLES", "MANIFEST", "AttentionSample", "DataError", "DataWarning", "Dataset",
    "HumanAttention", "Region", "Sample", "box_masks", "church_of",
    "dataset_fingerprint", "human_attention_fingerprint", "human_mask", "load_coco", "load_dataset",
    "load_human_attention", "load_image", "load_masks", "load_wikichurches", "union_mask",
    "verify_generated",
]  # fmt: skip

KINDS = ("synthetic", "wikichurches", "coco", "masks")
_FILES = {"coco": ("annotations", "images", "labels"), "masks": ("images", "masks", "labels")}


def _files(dataset: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The file options of a ``coco`` / ``masks`` section that it gives (the rest: defaults)."""
    return {k: dataset[k] for k in _FILES.get(kind, ()) if dataset.get(k) is not None}


def load_dataset(dataset: Mapping[str, Any]) -> Dataset:
    """Read the dataset a params ``dataset`` section describes (as a notebook receives it).
    Generated data is checked against its manifest first: if missing or damaged, run the build."""
    root, kind = Path(dataset["root"]), dataset.get("kind", "wikichurches")
    strict = dataset.get("strict", True)
    if kind == "coco":
        return load_coco(root, **_files(dataset, kind), strict=strict)
    if kind == "masks":
        return load_masks(root, **_files(dataset, kind), **(dataset.get("binarize") or {}),
                          strict=strict)
    if kind == "synthetic":
        problem = verify_generated(root)
        if problem is not None:
            raise DataError(
                f"the generated data in {root} cannot be used ({problem}): run `python build.py` "
                "first (add --params for a profile other than the demo); it generates the data."
            )
    elif kind != "wikichurches":
        raise DataError(f"dataset.kind {kind!r} is not a dataset of annotated images; "
                        f"use one of {', '.join(KINDS)}.")
    return load_wikichurches(root, strict=strict)


def dataset_fingerprint(dataset: Mapping[str, Any] | str | Path) -> str:
    """A cheap hash of what the reader of a ``dataset`` section reads (file bytes, image
    names / sizes / mtimes). A bare path means a WikiChurches-format folder."""
    if not isinstance(dataset, Mapping):
        dataset = {"root": dataset}
    root, kind = Path(dataset["root"]), dataset.get("kind", "wikichurches")
    reader_files = {"coco": coco_files, "masks": mask_files}.get(kind, wikichurches_files)
    return fingerprint_files(*reader_files(root, **_files(dataset, kind)))
