"""Dataset readers: one module per on-disk format, one contract (``contract.Dataset``).

``load_dataset(section)`` reads what a params ``dataset`` section describes (``kind``:
``synthetic``, ``wikichurches``, ``coco``, ``masks``) and returns a ``Dataset`` whose
samples, regions and labels look the same whatever the format; ``dataset_fingerprint``
hashes what that reader reads. The ML Interpretability Benchmark (human-attention masks,
the Shared Interest study) has its reader in ``human_attention``; the demo generators
(both formats) are apart, in `sightline.synthetic`; ``verify_generated`` checks their output.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sightline.data.coco import coco_files, load_coco
from sightline.data.contract import (
    MANIFEST,
    POOL_COLUMNS,
    Box,
    DataError,
    Dataset,
    DataWarning,
    Region,
    Sample,
    WikiChurches,
    bounding_box,
    box_masks,
    fingerprint_files,
    image_size,
    load_image,
    region_masks,
    union_mask,
    verify_generated,
)
from sightline.data.human_attention import (
    BENCHMARK_REPO,
    HUMAN_ATTENTION_FOLDERS,
    SUBJECTS_CSV,
    AttentionSample,
    HumanAttention,
    human_attention_fingerprint,
    human_mask,
    imagenet_subjects,
    load_attention_mask,
    load_human_attention,
)
from sightline.data.masks import load_masks, mask_files, read_mask
from sightline.data.wikichurches import (
    MAIN_STYLES,
    SPLITS,
    ZENODO,
    church_of,
    load_wikichurches,
    main_style,
)
from sightline.data.wikichurches import dataset_fingerprint as wikichurches_fingerprint

KINDS = ("synthetic", "wikichurches", "coco", "masks")

__all__ = [
    "BENCHMARK_REPO", "HUMAN_ATTENTION_FOLDERS", "KINDS", "MAIN_STYLES", "MANIFEST",
    "POOL_COLUMNS", "SPLITS", "SUBJECTS_CSV", "ZENODO", "AttentionSample", "Box", "DataError",
    "DataWarning", "Dataset", "HumanAttention", "Region", "Sample", "WikiChurches",
    "bounding_box", "box_masks", "church_of", "dataset_fingerprint", "human_attention_fingerprint",
    "human_mask", "image_size", "imagenet_subjects", "load_attention_mask", "load_coco",
    "load_dataset", "load_human_attention", "load_image", "load_masks", "load_wikichurches",
    "main_style", "read_mask", "region_masks", "union_mask", "verify_generated",
]  # fmt: skip


def load_dataset(dataset: Mapping[str, Any]) -> Dataset:
    """Read the dataset a params ``dataset`` section describes (as a notebook receives it).

    Generated (synthetic) data is checked against its manifest first, so a folder that is
    missing or damaged says to run the build (which makes it), never to download anything.
    """
    root = Path(dataset["root"])
    kind = dataset.get("kind", "wikichurches")
    strict = dataset.get("strict", True)
    if kind == "coco":
        return load_coco(root, annotations=dataset.get("annotations", "annotations.json"),
                         images=dataset.get("images", "images"), labels=dataset.get("labels"),
                         strict=strict)
    if kind == "masks":
        rule = dataset.get("binarize") or {}
        return load_masks(root, images=dataset.get("images", "images"),
                          masks=dataset.get("masks", "masks"), labels=dataset.get("labels"),
                          rule=rule.get("rule", "std"), num_std=rule.get("num_std", 1.0),
                          percentile=rule.get("percentile", 90.0), strict=strict)
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
        return wikichurches_fingerprint(dataset)
    root = Path(dataset["root"])
    kind = dataset.get("kind", "wikichurches")
    labels = dataset.get("labels")
    if kind == "coco":
        files = coco_files(root, dataset.get("annotations", "annotations.json"),
                           dataset.get("images", "images"), labels)
    elif kind == "masks":
        files = mask_files(root, dataset.get("images", "images"), dataset.get("masks", "masks"),
                           labels)
    else:
        return wikichurches_fingerprint(root)
    return fingerprint_files(*files)
