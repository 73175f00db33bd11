"""Score cached maps against the expert boxes: the one tidy metrics table.

Targets are built once per preprocessing geometry: for each image the union of its
boxes and each box on its own, as masks in the model's input frame at the working
resolution. Every stored (method, layer) map kind of a model is scored against all of
them in one vectorised sweep; the result is long-form, one row per
image x map x target x metric x threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from . import cache, data, metrics
from .geometry import Geometry

COLUMNS = [
    "image_id",
    "model",
    "variant",
    "method",
    "layer",
    "head",
    "target",
    "feature",
    "metric",
    "threshold",
    "value",
]
THRESHOLDED = ("iou", "iou_rel", "gtc", "sc")
# coverage is also the energy-based pointing game (mass inside / total), stored once
THRESHOLD_FREE = ("coverage", "pointing_game")
CONTINUOUS = ("mse", "kl", "emd")
UNION = "union"


@dataclass(frozen=True)
class Targets:
    """Union and single-box masks of a set of images in one geometry."""

    image_ids: list[str]
    masks: np.ndarray  # (T, R, R) bool
    image_index: np.ndarray  # (T,) int: the image each target belongs to
    target: np.ndarray  # (T,) str: "union" or "box<i>"
    feature: np.ndarray  # (T,) str: "union" or the box's feature type
    soft: np.ndarray  # (N, R, R) soft Gaussian target of each image's boxes


def build_targets(samples: Sequence[data.Sample], geometry: Geometry, resolution: int) -> Targets:
    """Masks in the model frame: each image's union first, then its boxes in order."""
    masks, index, names, features, soft = [], [], [], [], []
    for i, sample in enumerate(samples):
        boxes = data.box_masks(sample, geometry, resolution)
        masks.append(data.union_mask(boxes)[None])
        masks.append(boxes)
        index += [i] * (1 + len(boxes))
        names += [UNION] + [f"box{j}" for j in range(len(boxes))]
        features += [UNION] + [b.feature for b in sample.boxes]
        xyxy = geometry.boxes_to_frame(sample.boxes_ltwh(), sample.width, sample.height)
        visible = xyxy[(xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])] * resolution
        soft.append(metrics.soft_target(visible, resolution, resolution))
    return Targets(
        [s.image_id for s in samples],
        np.concatenate(masks),
        np.asarray(index),
        np.asarray(names),
        np.asarray(features),
        np.stack(soft),
    )


def _long(
    values: np.ndarray,
    targets: Targets,
    heads: np.ndarray,
    metric: str,
    thresholds: np.ndarray | None,
) -> pd.DataFrame:
    """(T, K[, P]) metric values -> long rows."""
    t, k = values.shape[:2]
    p = 1 if thresholds is None else len(thresholds)
    ti = np.repeat(np.arange(t), k * p)
    return pd.DataFrame(
        {
            "image_id": np.asarray(targets.image_ids)[targets.image_index][ti],
            "head": np.tile(np.repeat(heads, p), t),
            "target": targets.target[ti],
            "feature": targets.feature[ti],
            "metric": metric,
            "threshold": np.nan if thresholds is None else np.tile(thresholds, t * k),
            "value": values.reshape(-1).astype(np.float64),
        }
    )


def score_maps(
    maps: np.ndarray, targets: Targets, percentiles: Sequence[float], resolution: int
) -> pd.DataFrame:
    """All metrics of one map kind ``(N, K, h, w)`` (images in ``targets`` order).

    K > 1 means per-head maps with the head mean last (head -1 in the table).
    """
    k = maps.shape[1]
    heads = np.array([-1]) if k == 1 else np.r_[np.arange(k - 1), -1]
    swept = metrics.sweep(maps, targets.masks, targets.image_index, percentiles, resolution)
    p = np.asarray(percentiles, dtype=np.float64)
    frames = [_long(swept[m], targets, heads, m, p) for m in ("iou", "gtc", "sc")]
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = swept["iou"] / swept["max_iou"][:, None, :]
    frames.append(_long(relative, targets, heads, "iou_rel", p))
    frames += [_long(swept[m], targets, heads, m, None) for m in THRESHOLD_FREE]
    frames.append(_continuous(maps[:, -1], targets, resolution))
    return pd.concat(frames, ignore_index=True)


def _continuous(mean_maps: np.ndarray, targets: Targets, resolution: int) -> pd.DataFrame:
    """MSE / KL / EMD of the head-mean map against each image's soft box target (union only)."""
    up = metrics.upsample(mean_maps, resolution)
    union = np.flatnonzero(targets.target == UNION)
    values = {
        "mse": metrics.mse(up, targets.soft),
        "kl": metrics.kl(targets.soft, up),
        "emd": metrics.emd(up, targets.soft),
    }
    sub = Targets(
        targets.image_ids,
        targets.masks[union],
        targets.image_index[union],
        targets.target[union],
        targets.feature[union],
        targets.soft,
    )
    return pd.concat(
        [_long(v[:, None], sub, np.array([-1]), m, None) for m, v in values.items()],
        ignore_index=True,
    )


def score_store(
    store: cache.MapStore,
    targets: Targets,
    *,
    model: str,
    variant: str,
    percentiles: Sequence[float],
    resolution: int,
    methods: Sequence[str] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Score every stored map kind of one (model, variant); returns the tidy table."""
    frames = []
    keys = [key for key in store.keys() if methods is None or key[0] in methods]
    for method, layer in tqdm(keys, desc=f"scores {model}", disable=not progress, mininterval=1.0):
        _, maps = store.read(method, layer, targets.image_ids)
        frame = score_maps(maps, targets, percentiles, resolution)
        frame.insert(1, "model", model)
        frame.insert(2, "variant", variant)
        frame.insert(3, "method", method)
        frame.insert(4, "layer", layer)
        frames.append(frame)
    return tidy(pd.concat(frames, ignore_index=True))


def tidy(scores: pd.DataFrame) -> pd.DataFrame:
    """Column order and compact dtypes of the metrics table."""
    scores = scores[COLUMNS].copy()
    for column in ("image_id", "model", "variant", "method", "target", "feature", "metric"):
        scores[column] = scores[column].astype("category")
    scores["layer"] = scores["layer"].astype(np.int16)
    scores["head"] = scores["head"].astype(np.int16)
    return scores
