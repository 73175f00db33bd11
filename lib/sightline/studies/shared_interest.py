"""The Shared Interest replication: Grad-CAM and XRAI against human-attention masks.

"Shared Interest...Sometimes" (Morrison, Mehra & Perer, CVPR Workshops 2023) scores the
maps of Swin-T, CaiT-S, ResNet-101 and EfficientNet-B6 on 100 images of the ML
Interpretability Benchmark with the Shared Interest metrics (Boggust et al., CHI 2022):
IoU, ground-truth coverage (GTC) and saliency coverage (SC) of binarised maps. This
module holds the study's glue over the shared pieces (registry, `saliency.extract`, the
map cache, `metrics`): binarisation rules, the tidy score rows, predictions, the case
taxonomy and the paper's numbers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from . import cache, data, extract, metrics, models, saliency, scoring
from .config import SIModelChoice

TARGET = "human"  # the `target` column of the score rows: the binarised human mask
# The paper's Table 1: mean IoU / SC / GTC per technique x model (100 images).
PAPER_TABLE1 = pd.DataFrame(
    [
        ("gradcam", "swin_t", 0.264, 0.511, 0.347),
        ("gradcam", "cait_s", 0.101, 0.273, 0.142),
        ("gradcam", "resnet101", 0.216, 0.466, 0.287),
        ("gradcam", "efficientnet_b6", 0.189, 0.411, 0.264),
        ("xrai", "swin_t", 0.079, 0.255, 0.109),
        ("xrai", "cait_s", 0.082, 0.271, 0.103),
        ("xrai", "resnet101", 0.197, 0.435, 0.253),
        ("xrai", "efficientnet_b6", 0.221, 0.463, 0.284),
    ],
    columns=["method", "key", "iou", "sc", "gtc"],
)
# The paper's headline: mean IoU over all models, Grad-CAM vs XRAI, t-test p < 0.001.
PAPER_HEADLINE = {"gradcam": 0.192, "xrai": 0.145, "p": "< 0.001"}
CORRECT_CASES = ("human aligned", "sufficient subset", "sufficient context", "context dependent")
INCORRECT_CASES = ("confuser", "insufficient subset", "context confusion", "distractor")


def binarize(maps: np.ndarray, rule: str, threshold: float) -> np.ndarray:
    """``std`` (keep >= mean + threshold std) or ``percentile`` (keep >= the threshold-th
    percentile), both after per-map min-max, as the Shared Interest code does."""
    if rule == "std":
        return metrics.binarize_std(maps, threshold)
    if rule == "percentile":
        return metrics.binarize_percentile(maps, threshold)
    raise ValueError(f"binarisation rule must be 'std' or 'percentile', got {rule!r}")


def human_masks(
    samples: Sequence[data.AttentionSample], geometry, resolution: int
) -> np.ndarray:
    """Continuous masks ``(N, R, R)`` in [0, 1], each in the model's input frame."""
    return np.stack([data.human_mask(s, geometry, resolution) for s in samples])


def score(
    maps: np.ndarray,
    masks: np.ndarray,
    samples: Sequence[data.AttentionSample],
    *,
    model: str,
    variant: str,
    method: str,
    layer: int,
    rule: str,
    mask_rule: str,
    mask_threshold: float,
    thresholds: Sequence[float],
    resolution: int,
) -> pd.DataFrame:
    """Shared Interest IoU / GTC / SC of ``(N, 1, h, w)`` maps at each saliency threshold,
    plus the continuous SC (``coverage``: saliency mass inside the mask), as tidy rows.

    The human mask is binarised once (``mask_rule`` at ``mask_threshold``); a map with no
    variation (nothing attended) or an empty binarised mask (nothing to find) scores NaN.
    ``feature`` holds the image's subject.
    """
    up = metrics.upsample(maps[:, 0], resolution)
    truth = binarize(masks, mask_rule, mask_threshold)
    undefined = (np.ptp(up.reshape(len(up), -1), axis=1) == 0) | ~truth.any(axis=(1, 2))
    frames = []
    for threshold in thresholds:
        scores = metrics.shared_interest_scores(binarize(up, rule, threshold), truth)
        for name, values in scores.items():
            frames.append(_rows(samples, name, threshold, np.where(undefined, np.nan, values)))
    coverage = np.where(undefined, np.nan, metrics.coverage(up, truth))
    frames.append(_rows(samples, "coverage", np.nan, coverage))
    table = pd.concat(frames, ignore_index=True)
    table = table.assign(model=model, variant=variant, method=method, layer=layer, head=-1,
                         target=TARGET)
    return scoring.tidy(table)


def _rows(samples, metric: str, threshold: float, values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({
        "image_id": [s.image_id for s in samples],
        "feature": [s.subject for s in samples],
        "metric": metric,
        "threshold": threshold,
        "value": np.asarray(values, np.float64),
    })


def benchmark_classes(
    loaded: models.LoadedModel, subjects: Mapping[str, tuple[int, ...]]
) -> Callable[[Sequence[data.AttentionSample], torch.Tensor], list[int]]:
    """Explain the benchmark's class: the subject's ImageNet class the model scores
    highest (the predicted class where the subject maps to none, e.g. ``tree``)."""

    def classes(batch: Sequence[data.AttentionSample], pixels: torch.Tensor) -> list[int]:
        with torch.inference_mode():
            logits = loaded.score(pixels)
        chosen = []
        for sample, row in zip(batch, logits, strict=True):
            allowed = list(subjects.get(sample.subject, ()))
            chosen.append(allowed[int(row[allowed].argmax())] if allowed else int(row.argmax()))
        return chosen

    return classes


def extract_study(
    samples: Sequence[data.AttentionSample],
    choice: SIModelChoice,
    store: cache.MapStore,
    subjects: Mapping[str, tuple[int, ...]],
    *,
    methods: Sequence[str],
    target: str,
    xrai: saliency.XraiSettings,
    batch_size: int,
    device: str,
    seed: int,
) -> pd.DataFrame:
    """Fill one model's maps into ``store`` and return its predictions per image (top-1
    ImageNet class, ``image_id`` / ``predicted``), recorded in the store by the forward pass
    of the maps (`extract.predicted_classes`), so a warm cache loads no model at all.
    """
    device = extract.resolve_device(device)
    if {s.image_id for s in samples} - store.image_ids():
        loaded = models.load_choice(choice, seed=seed, device=device)
        extract.extract_model(
            samples, choice, store, batch_size=batch_size, device=device, seed=seed,
            loaded=loaded, methods=methods, xrai=xrai,
            target_classes=benchmark_classes(loaded, subjects) if target == "benchmark" else None,
        )
    predicted = extract.predicted_classes(
        store, samples, lambda: models.load_choice(choice, seed=seed, device=device),
        batch_size=batch_size)
    ids = [s.image_id for s in samples]
    return pd.DataFrame({"image_id": ids, "predicted": [predicted[i] for i in ids]})


def method_cost(
    choice: SIModelChoice, store: cache.MapStore, sample: data.AttentionSample,
    methods: Sequence[str], xrai: saliency.XraiSettings, *, seed: int = 0, device: str = "auto",
) -> dict[str, float]:
    """Seconds each method takes on one image, timed once and kept beside the store, so a
    rebuild reports the same measurement (delete the ``.cost.json`` file to time again)."""
    path = store.path.with_name(store.path.stem + ".cost.json")
    cost = json.loads(path.read_text()) if path.is_file() else {}
    if not set(methods) <= set(cost):
        device = extract.resolve_device(device)
        model = models.load_choice(choice, seed=seed, device=device)
        pixels = model.preprocess([data.load_image(sample.path)]).to(device)
        for method in methods:
            started = time.perf_counter()
            saliency.extract(model, pixels, [method], xrai=xrai)
            cost[method] = round(time.perf_counter() - started, 2)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cost, indent=1))
    return {method: cost[method] for method in methods}


def correctness(
    predictions: pd.DataFrame, samples: Sequence[data.AttentionSample],
    subjects: Mapping[str, tuple[int, ...]],
) -> pd.Series:
    """1.0 when the predicted class is one of the subject's ImageNet classes, 0.0 when not,
    NaN when the subject maps to none."""
    subject = {s.image_id: s.subject for s in samples}
    return pd.Series(
        [
            float(p in subjects[subject[i]]) if subjects.get(subject[i]) else np.nan
            for i, p in zip(predictions["image_id"], predictions["predicted"], strict=True)
        ],
        index=predictions.index,
    )


def cases(
    iou: np.ndarray, gtc: np.ndarray, sc: np.ndarray, correct: np.ndarray, *,
    iou_high: float = 0.5, coverage_high: float = 0.5,
) -> np.ndarray:
    """Shared Interest's case for each (image, map): by IoU, then the SC / GTC quadrant,
    named for correct (or unknown) and incorrect predictions.

    Human aligned / confuser: IoU >= ``iou_high`` or both coverages high. Sufficient /
    insufficient subset: SC high, GTC low (the saliency lies inside the human region but
    covers only part of it). Sufficient context / context confusion: GTC high, SC low
    (the human region and more). Context dependent / distractor: both low (mostly
    elsewhere). NaN scores give no case (None).
    """
    iou, gtc, sc, correct = (np.asarray(a, np.float64) for a in (iou, gtc, sc, correct))
    high_sc, high_gtc = sc >= coverage_high, gtc >= coverage_high
    quadrant = np.select(
        [(iou >= iou_high) | (high_sc & high_gtc), high_sc, high_gtc], [0, 1, 2], default=3
    )
    names = np.where(correct == 0, np.array(INCORRECT_CASES, object)[quadrant],
                     np.array(CORRECT_CASES, object)[quadrant])
    return np.where(np.isnan(iou) | np.isnan(gtc) | np.isnan(sc), None, names)
