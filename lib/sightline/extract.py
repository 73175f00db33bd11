"""Fill the map cache: every model's maps (and the naive baselines') for every sample.

Extraction skips what the cache holds, writes batch by batch (see ``cache``), and so can
be interrupted at any point and resumed; a model is loaded only if something is missing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import baselines, cache, data, geometry, models, saliency
from .config import ModelChoice
from .geometry import Geometry

# Baselines see the whole image (squash frame) and are stored on a coarse grid, like a
# model's patch grid, then scored through the same upsampling as every model.
BASELINE_GEOMETRY = Geometry(size=224)
BASELINE_GRID = 56


def code_version() -> str:
    """Hash of the code that decides what a map is; part of every store's key."""
    sources = [Path(m.__file__).read_bytes() for m in (geometry, models, saliency, baselines)]
    return hashlib.sha256(b"".join(sources)).hexdigest()[:12]


def model_name(choice: ModelChoice) -> str:
    """How a model choice is named in the cache and in every table, e.g. ``dinov2`` or
    ``dinov2-tiny-random`` for the offline stand-ins."""
    if choice.weights == "pretrained" and choice.size == "base":
        return choice.key
    return f"{choice.key}-{choice.size}-{choice.weights}"


def store_for(
    cache_dir: str | Path, dataset_id: str, name: str, variant: str, key: str = ""
) -> cache.MapStore:
    """The store of one (dataset, model, variant) at the current code version.

    ``key`` names the weights behind a variant (a fine-tuning run's key), so new weights
    get a new store.
    """
    tag = f"{variant}-{key}" if key else variant
    return cache.MapStore(Path(cache_dir) / dataset_id[:16] / f"{name}__{tag}__{code_version()}.h5")


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise models.ModelError(
            "extraction.device is 'cuda' but torch sees no GPU; use 'auto' or 'cpu'"
        )
    return device


def _batches(items: Sequence, size: int) -> list[Sequence]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def extract_model(
    samples: Sequence[data.Sample],
    choice: ModelChoice,
    store: cache.MapStore,
    *,
    batch_size: int = 16,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
    loaded: models.LoadedModel | None = None,
    methods: Sequence[str] | None = None,
) -> int:
    """Store the maps of one model (``methods``, default: all that apply) for the samples
    not yet cached; returns how many."""
    done = store.image_ids()
    todo = [s for s in samples if s.image_id not in done]
    if not todo:
        return 0
    device = resolve_device(device)
    if loaded is None:
        loaded = models.load_model(
            choice.key, weights=choice.weights, size=choice.size, seed=seed, device=device
        )
    with store.writer() as writer:
        bar = tqdm(
            total=len(todo),
            desc=f"maps {model_name(choice)}",
            unit="img",
            disable=not progress,
            mininterval=1.0,
        )
        for batch in _batches(todo, batch_size):
            pixels = loaded.preprocess([data.load_image(s.path) for s in batch]).to(device)
            writer.put([s.image_id for s in batch], saliency.extract(loaded, pixels, methods))
            bar.update(len(batch))
        bar.close()
    return len(todo)


def extract_baselines(
    samples: Sequence[data.Sample],
    names: Sequence[str],
    store: cache.MapStore,
    *,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = True,
) -> int:
    """Store the naive baseline maps (method = baseline name, layer 0, one map per image)."""
    done = store.image_ids()
    todo = [s for s in samples if s.image_id not in done]
    if not todo or not names:
        return 0
    with store.writer() as writer:
        for batch in tqdm(_batches(todo, batch_size), desc="maps baselines", disable=not progress):
            frames = np.stack(
                [np.asarray(BASELINE_GEOMETRY.frame_image(data.load_image(s.path))) for s in batch]
            )
            ids = [s.image_id for s in batch]
            maps = {}
            for name in names:
                full = torch.from_numpy(baselines.baseline_maps(name, frames, seed, ids))
                coarse = F.adaptive_avg_pool2d(full[:, None].float(), BASELINE_GRID)
                maps[(name, 0)] = coarse.numpy().astype(np.float32)
            writer.put(ids, maps)
    return len(todo)
