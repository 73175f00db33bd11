"""What a build checks before any notebook runs: the pretrained checkpoints it loads
(`PreflightError` names each missing one and its download), and each notebook's
``sightline: requires`` (`REQUIREMENTS`: an unmet one skips the notebook with one line why)."""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import huggingface_hub
import timm
import torch

from . import config, data, models, registry

HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
              "pytorch_model.bin.index.json")
TIMM_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


class PreflightError(Exception):
    """A profile that cannot run here; one line per problem, each naming the key and the remedy."""


@dataclass(frozen=True)
class Offer:
    """What a profile's data and models offer the notebooks: image labels, a training pool,
    the boxes of each feature type, and the models with per-head attention maps."""

    has_labels: bool = False
    has_pool: bool = False
    feature_boxes: Counter = field(default_factory=Counter)
    head_models: tuple[str, ...] = ()


def offer(params: config.Params, dataset: data.Dataset) -> Offer:
    """What ``dataset`` and the profile's models offer (models read off their specs)."""
    heads = tuple(m.key for m in params.models
                  if set(registry.METHODS.names(readout_heads=True))
                  & set(models.spec_for(m).methods))
    return Offer(dataset.has_labels, dataset.has_pool,
                 Counter(r.feature for s in dataset.samples for r in s.boxes), heads)


def _training_pool(params: config.Params, offer: Offer) -> str | None:
    if not offer.has_labels:
        return "the dataset has no image labels (nothing to fine-tune on or to be right about)"
    return None if offer.has_pool else "the dataset has no labelled training pool (nothing to fine-tune on)"


def _attention_heads(params: config.Params, offer: Offer) -> str | None:
    if not offer.head_models:
        return "no model has per-head attention maps (CLS or pooling-probe attention)"
    need = params.heads.min_boxes
    feature, most = (offer.feature_boxes.most_common(1) or [("", 0)])[0]
    if most < need:
        return (f"no feature type has heads.min_boxes: {need} boxes to rank heads on (most: "
                f"{most}, '{feature}'); set heads.min_boxes: {most} to rank them on fewer")
    return None


def _randomisation(params: config.Params, offer: Offer) -> str | None:
    return None if params.sanity.models else "`sanity.models` lists no model to randomise"


# what a notebook may require of the profile (``sightline: requires`` in its header): each
# check returns the line a build prints when the profile lacks it, or None
REQUIREMENTS: dict[str, Callable[[config.Params, Offer], str | None]] = {
    "training_pool": _training_pool,
    "attention_heads": _attention_heads,
    "randomisation": _randomisation,
}


def unmet(requirements: list[str], params: config.Params, offer: Offer) -> list[str]:
    """The lines of the ``requirements`` the profile does not meet (empty: all met)."""
    return [line for name in requirements if (line := REQUIREMENTS[name](params, offer))]


def class_target_notes(params: config.Params, offer: Offer) -> list[str]:
    """One line per model whose class-target methods (Grad-CAM, Chefer, XRAI) have no class
    to explain: not a classifier, and no linear probe to lend it one (`finetune.map_jobs`)."""
    notes = []
    for index, choice in enumerate(params.models):
        spec = models.spec_for(choice)
        probed = offer.has_pool and "linear_probe" in params.finetune.strategies.get(choice.key, ())
        dropped = [m for m in spec.methods if m in registry.METHODS.names(explains_class=True)]
        if spec.arch.classifier or probed or not dropped:
            continue
        kept = [m for m in spec.methods if m not in dropped]
        notes.append(
            f"models[{index}] (key {choice.key}) is no classifier and has no linear probe (set "
            f"finetune.strategies.{choice.key}: [linear_probe], on a dataset with a labelled "
            f"training pool): {', '.join(dropped)} do not run for it; "
            + (f"it keeps {', '.join(kept)}" if kept else "it gets no map at all"))
    return notes


def check_checkpoints(params: config.Params) -> None:
    """Every pretrained checkpoint the profile loads is in the local cache, or the network
    can fetch it; otherwise a PreflightError listing each missing one with its download."""
    problems = [p for where, choice in _listed_models(params) if (p := _missing(where, choice))]
    if problems:
        raise PreflightError("\n".join(problems))


def _listed_models(params: config.Params) -> Iterator[tuple[str, config.ModelChoice]]:
    yield from ((f"models[{i}]", choice) for i, choice in enumerate(params.models))
    study = params.shared_interest.models if params.shared_interest else ()
    yield from ((f"shared_interest.models[{i}]", choice) for i, choice in enumerate(study))


def _missing(where: str, choice: config.ModelChoice) -> str | None:
    """One line naming the model and the remedy when its weights cannot be had; else None."""
    name = f"{where} (key {choice.key})"
    if choice.checkpoint is not None or choice.weights == "random" or choice.size != "base":
        return None  # a local checkpoint (config checked it exists), or no weights to load
    spec = models.spec_for(choice)
    hub_id = spec.arch.hub_id(spec.checkpoint)
    if spec.source == "hf" and not Path(spec.checkpoint).is_dir():
        repo, host = spec.checkpoint, _hub_host()
        found = _in_hub_cache(repo, ("config.json",)) and _in_hub_cache(repo, HF_WEIGHTS)
    elif spec.source == "timm" and hub_id.startswith("timm/"):  # not a packaged-weights preset
        cfg = timm.models.get_pretrained_cfg(spec.checkpoint)
        if cfg is None or not (cfg.hf_hub_id or cfg.url):
            return f"{name}: timm has no pretrained weights for {spec.checkpoint}; set weights: random"
        if cfg.hf_hub_id:
            repo, host = cfg.hf_hub_id, _hub_host()
            found = _in_hub_cache(repo, (cfg.hf_hub_filename,) if cfg.hf_hub_filename
                                  else TIMM_WEIGHTS)
        else:
            repo, host, found = cfg.url, urlparse(cfg.url).hostname, _hub_file(cfg.url).is_file()
    elif spec.source == "torchvision":
        repo, host, found = hub_id, urlparse(hub_id).hostname, _hub_file(hub_id).is_file()
    else:  # a factory or a preset that carries its own weights
        return None
    if found or _reachable(host):
        return None
    if repo.startswith("http"):
        return (f"{name}: weights {repo} are not in the torch hub cache and cannot be "
                f"downloaded here; on a machine with network download them to {_hub_file(repo)} "
                f"(or set TORCH_HOME), or set {where}.checkpoint to the file")
    gated = " (gated: accept its licence on huggingface.co, then `hf auth login`)" \
        if spec.gated else ""
    return (f"{name}: checkpoint {repo} is not in the Hugging Face cache "
            f"({huggingface_hub.constants.HF_HUB_CACHE}) and cannot be downloaded here; on a "
            f"machine with network run `hf download {repo}`{gated}, copy the cache here (or set "
            "HF_HUB_CACHE), or set weights: random")


def _in_hub_cache(repo: str, files: tuple[str, ...]) -> bool:
    """Whether one of ``files`` of the Hugging Face repo is in the local cache (no network)."""
    return any(isinstance(huggingface_hub.try_to_load_from_cache(repo, f), str) for f in files)


def _hub_file(url: str) -> Path:
    """Where torch.hub keeps the checkpoint it downloads from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _hub_host() -> str:
    return urlparse(huggingface_hub.constants.ENDPOINT).hostname or "huggingface.co"


def _reachable(host: str | None) -> bool:
    """Whether ``host`` answers on 443 (never when HF_HUB_OFFLINE is set): a quick probe, so a
    missing checkpoint fails here, not after minutes of retries inside a notebook."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    if offline or huggingface_hub.constants.HF_HUB_OFFLINE or not host:
        return False
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False
