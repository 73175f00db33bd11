"""Score cached maps against the expert boxes: the one tidy metrics table, one row per image x
map x target x metric x threshold, in the model frame (`score_store`) or the common frame
(`score_store_common`; docs/methods.md). Targets are masks built once per geometry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from . import binarize, cache, data, metrics
from .geometry import Geometry
from .registry import METRICS

COLUMNS = ["image_id", "model", "variant", "method", "layer", "head", "target", "feature", "metric",
           "threshold", "value", "correct"]
UNION = "union"
COMMON_FRAME = Geometry()  # squash: the whole image, boxes uncropped (the baselines' frame)


@dataclass(frozen=True)
class Targets:
    """Union and single-box masks of a set of images in one geometry."""

    image_ids: list[str]
    masks: np.ndarray  # (T, R, R) bool
    image_index: np.ndarray  # (T,) int: the image each target belongs to
    target: np.ndarray  # (T,) str: "union" or "box<i>"
    feature: np.ndarray  # (T,) str: "union" or the box's feature type
    soft: np.ndarray  # (N, R, R) soft Gaussian target of each image's boxes (a mask's: its box)
    sizes: np.ndarray  # (N, 2) width, height of each image in pixels

    def subset(self, keep: np.ndarray, start: int = 0, stop: int | None = None) -> Targets:
        """The targets ``keep`` (a boolean mask over them) of images ``start:stop``, re-indexed from 0."""
        images = slice(start, stop)
        return Targets(self.image_ids[images], self.masks[keep], self.image_index[keep] - start,
                       self.target[keep], self.feature[keep], self.soft[images], self.sizes[images])


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
    return Targets([s.image_id for s in samples], np.concatenate(masks), np.asarray(index),
                   np.asarray(names), np.asarray(features), np.stack(soft),
                   np.array([(s.width, s.height) for s in samples]).reshape(-1, 2))


def _long(values: np.ndarray, targets: Targets, layer: np.ndarray, head: np.ndarray, metric: str,
          thresholds: np.ndarray | None) -> pd.DataFrame:
    """(T, C[, P]) metric values of C map columns (each a layer and head) -> long rows."""
    t, c = values.shape[:2]
    p = 1 if thresholds is None else len(thresholds)
    ti = np.repeat(np.arange(t), c * p)
    ci = np.tile(np.repeat(np.arange(c), p), t)
    return pd.DataFrame({
        "image_id": np.asarray(targets.image_ids)[targets.image_index][ti],
        "layer": layer[ci],
        "head": head[ci],
        "target": targets.target[ti],
        "feature": targets.feature[ti],
        "metric": metric,
        "threshold": np.nan if thresholds is None else np.tile(thresholds, t * c),
        "value": values.reshape(-1).astype(np.float64),
    })


def score_maps(maps_by_layer: Mapping[int, np.ndarray], targets: Targets,
               percentiles: Sequence[float], resolution: int,
               rules: Sequence[str] = ("percentile",)) -> pd.DataFrame:
    """Every registered metric of one method's maps, ``{layer: (N, K, h, w)}`` on one grid
    (K > 1: per head, the head mean last as head -1): the swept ones in one sweep, the others on
    head-mean maps; ``rules`` other than the percentile rule add the IoU of binarised maps."""
    layers = sorted(maps_by_layer)
    stacked = np.concatenate([maps_by_layer[layer] for layer in layers], axis=1)
    widths = [maps_by_layer[layer].shape[1] for layer in layers]
    layer = np.repeat(layers, widths)
    head = np.concatenate([[-1] if k == 1 else np.r_[np.arange(k - 1), -1] for k in widths])
    swept = metrics.sweep(stacked, targets.masks, targets.image_index, percentiles, resolution)
    p = np.asarray(percentiles, dtype=np.float64)
    frames = [_long(swept[m.name], targets, layer, head, m.name, p if m.thresholded else None)
              for m in METRICS if m.swept]
    means = np.cumsum(widths) - 1  # the head-mean (or only) column of each layer
    frames += _head_mean_scores(stacked[:, means], targets, np.asarray(layers), p, resolution)
    frames += [_binarised(stacked[:, means], targets, np.asarray(layers), binarize.RULES[rule],
                          resolution) for rule in rules if binarize.RULES[rule].masks]
    return pd.concat(frames, ignore_index=True)


def _binarised(mean_maps: np.ndarray, targets: Targets, layers: np.ndarray,
               rule: binarize.Rule, resolution: int) -> pd.DataFrame:
    """IoU of each layer's head-mean map ``(N, L, h, w)``, upsampled and binarised by
    ``rule``, with each target of its image; NaN for an all-zero map or an empty target."""
    n, n_layers = mean_maps.shape[:2]
    flat = targets.masks.reshape(len(targets.masks), -1)
    iou = np.empty((len(flat), n_layers))
    for image in range(n):
        up = metrics.upsample(mean_maps[image], resolution)
        kept = rule.masks(up).reshape(n_layers, -1)
        owned = np.flatnonzero(targets.image_index == image)
        inside = flat[owned].astype(np.float32) @ kept.T.astype(np.float32)
        union = flat[owned].sum(axis=1)[:, None] + kept.sum(axis=1) - inside
        empty = ~flat[owned].any(axis=1)[:, None] | (up.reshape(n_layers, -1).max(axis=1) == 0)
        iou[owned] = np.where(empty, np.nan, inside / np.maximum(union, 1))
    return _long(iou, targets, layers, np.full(n_layers, -1), rule.metric,
                 np.array([rule.threshold]))


def _head_mean_scores(mean_maps: np.ndarray, targets: Targets, layers: np.ndarray,
                      percentiles: np.ndarray, resolution: int) -> list[pd.DataFrame]:
    """The metrics the sweep does not compute, on each layer's head-mean map ``(N, L, h,
    w)``: ``mask`` metrics against every target, ``soft`` ones against each image's soft box
    target (union rows only). A few dozen full-resolution maps at a time."""
    n, n_layers = mean_maps.shape[:2]
    called = [m for m in METRICS if not m.swept]
    values: dict[str, list[np.ndarray]] = {m.name: [] for m in called}
    step = max(1, 64 // n_layers)
    for start in range(0, n, step):
        up = metrics.upsample(mean_maps[start : start + step], resolution)
        owned = np.flatnonzero((targets.image_index >= start)
                               & (targets.image_index < start + step))  # targets go by image
        pairs = {
            "soft": (up.reshape(-1, resolution, resolution),
                     np.repeat(targets.soft[start : start + step], n_layers, axis=0)),
            "mask": (up[targets.image_index[owned] - start].reshape(-1, resolution, resolution),
                     np.repeat(targets.masks[owned], n_layers, axis=0)),
        }
        for m in called:
            values[m.name].append(m(*pairs[m.target], *([percentiles] if m.thresholded else [])))
    scored = {"mask": targets, "soft": targets.subset(targets.target == UNION)}
    head = np.full(n_layers, -1)
    frames = []
    for m in called:
        found = np.concatenate(values[m.name])
        rows = scored[m.target]
        frames.append(_long(found.reshape(len(rows.target), n_layers, *found.shape[1:]), rows,
                            layers, head, m.name, percentiles if m.thresholded else None))
    return frames


def score_store(store: cache.MapStore, targets: Targets, *, model: str, variant: str,
                percentiles: Sequence[float], resolution: int,
                methods: Sequence[str] | None = None, rules: Sequence[str] = ("percentile",),
                progress: bool = True) -> pd.DataFrame:
    """Score every stored map kind of one (model, variant), a method's layers on one grid in one
    sweep; the tidy table."""
    groups: dict[tuple[str, tuple[int, int]], dict[int, np.ndarray]] = {}
    for method, layer in store.keys():
        if methods is None or method in methods:
            _, maps = store.read(method, layer, targets.image_ids)
            groups.setdefault((method, maps.shape[-2:]), {})[layer] = maps
    frames = [score_maps(maps_by_layer, targets, percentiles, resolution, rules)
              .assign(model=model, variant=variant, method=method)
              for (method, _), maps_by_layer in tqdm(groups.items(), desc=f"scores {model}",
                                                     disable=not progress, mininterval=1.0)]
    return tidy(pd.concat(frames, ignore_index=True))


def score_store_common(store: cache.MapStore, targets: Targets, geometry: Geometry, *,
                       model: str, variant: str, percentiles: Sequence[float], resolution: int,
                       methods: Sequence[str] | None = None, rules: Sequence[str] = ("percentile",),
                       images_per_chunk: int = 8, progress: bool = True) -> pd.DataFrame:
    """Score each stored kind's head-mean (or only) map in the common frame: the maps of
    ``geometry`` (the model's) placed on the whole image, against ``targets`` built with
    ``COMMON_FRAME``. Same table as ``score_store`` (head -1 rows only); a few images at a
    time, since full-resolution maps are large."""
    kinds = [(m, layer) for m, layer in store.keys() if methods is None or m in methods]
    frames = []
    for start in tqdm(range(0, len(targets.image_ids), images_per_chunk), disable=not progress,
                      desc=f"common frame {model}", mininterval=1.0):
        stop = start + images_per_chunk
        part = targets.subset((targets.image_index >= start) & (targets.image_index < stop), start, stop)
        by_method: dict[str, dict[int, np.ndarray]] = {}
        for method, layer in kinds:
            _, maps = store.read(method, layer, part.image_ids)
            placed = [geometry.to_image(maps[i, -1:], w, h, resolution)
                      for i, (w, h) in enumerate(part.sizes)]
            by_method.setdefault(method, {})[layer] = np.stack(placed)
        for method, maps_by_layer in by_method.items():
            frames.append(score_maps(maps_by_layer, part, percentiles, resolution, rules)
                          .assign(model=model, variant=variant, method=method))
    return tidy(pd.concat(frames, ignore_index=True))


def mark_correct(scores: pd.DataFrame, correct: Mapping[str, bool] | None) -> pd.DataFrame:
    """The rows with ``correct`` set from each image's entry: True when the classifier behind
    the maps predicted the image's class, NA for an image it lacks (or no ``correct`` at all:
    no classifier, or no class to be right about)."""
    values = scores["image_id"].astype(str).map(correct) if correct is not None else pd.NA
    return scores.assign(correct=pd.Series(values, index=scores.index, dtype="boolean"))


def tidy(scores: pd.DataFrame) -> pd.DataFrame:
    """Column order and compact dtypes of the metrics table (``correct``: nullable boolean,
    NA where the rows carry none)."""
    if "correct" not in scores:
        scores = scores.assign(correct=pd.NA)
    categories = ("image_id", "model", "variant", "method", "target", "feature", "metric")
    return scores[COLUMNS].astype({"correct": "boolean", "layer": np.int16, "head": np.int16,
                                   **dict.fromkeys(categories, "category")})
