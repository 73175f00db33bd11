"""What to train and how it is named: the runs the params ask for, each run's recipe and
content-keyed folder, and the map stores of the trained variants."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import data, extract, frames, geometry, models, registry
from ..config import STRATEGIES, Finetune, ModelChoice
from ..saliency import XraiSettings
from .checkpoints import FinetuneError
from .splits import Split

# settings that change where or how fast a run trains, not what it learns
_NOT_KEYED = ("device", "num_workers", "checkpoint_dir", "strategies", "seeds")


@dataclass(frozen=True)
class Run:
    """One planned fine-tuning run."""

    choice: ModelChoice
    strategy: str
    seed: int

    @property
    def variant(self) -> str:
        return variant_name(self.strategy, self.seed)


def variant_name(strategy: str, seed: int) -> str:
    """How a fine-tuned model is named in the ``variant`` column: ``lora.s0``, ``full.s2``."""
    return f"{strategy}.s{seed}"


def strategy_of(variant: str) -> str:
    """The strategy of a variant name (``frozen`` / ``baseline`` stay as they are)."""
    return variant.split(".s", 1)[0]


def plan(choices: Sequence[ModelChoice], finetune: Finetune, seed: int) -> list[Run]:
    """Every (model, strategy, seed) the params ask for, checked against the registry."""
    runs = []
    for choice in choices:
        for strategy in finetune.strategies.get(choice.key, ()):
            check_strategy(choice, strategy)
            runs += [Run(choice, strategy, seed + i) for i in range(finetune.seeds)]
    return runs


def check_strategy(choice: ModelChoice, strategy: str) -> None:
    """Raise, saying what to change, where ``choice`` cannot be fine-tuned by ``strategy``."""
    if strategy not in STRATEGIES:
        raise FinetuneError(f"unknown strategy {strategy!r}; strategies: {list(STRATEGIES)}")
    if strategy == "lora" and models.spec_for(choice).arch.lora is None:
        raise FinetuneError(f"model {choice.key!r} has no LoRA defaults in the registry (its family "
                            "is fine-tuned by linear probe or in full); drop 'lora' for it in "
                            "finetune.strategies")


def code_version() -> str:
    """Hash of the code that decides what a run learns (this package's every module among it);
    part of every run's key."""
    return extract.code_hash(geometry, models, data, frames, sys.modules[__package__])


def recipe(finetune: Finetune, choice: ModelChoice, strategy: str) -> dict[str, Any]:
    """The settings that determine what a run learns (LoRA defaults filled in)."""
    settings = finetune.model_dump(mode="json", exclude=set(_NOT_KEYED))
    unused = [f"backbone_lr_{other}" for other in ("full", "lora") if other != strategy]
    if strategy == "lora":
        lora = models.spec_for(choice).arch.lora
        settings["lora_targets"] = list(lora.targets)
        for name in ("rank", "alpha", "dropout"):
            if settings[f"lora_{name}"] is None:
                settings[f"lora_{name}"] = getattr(lora, name)
    else:
        unused += [k for k in settings if k.startswith("lora_")]
    if strategy == "linear_probe":  # embeddings are computed once, unaugmented
        unused += ["crop_scale", "hflip", "color_jitter"]
    return {k: v for k, v in settings.items() if k not in unused}


def run_dir(out_dir: str | Path, run: Run, split: Split, finetune: Finetune, model_seed: int) -> Path:
    """The run's content-keyed folder: dataset, model, strategy, seed, recipe, split, code."""
    settings = recipe(finetune, run.choice, run.strategy)
    payload = [run.choice.model_dump(mode="json", exclude_none=True), run.strategy, run.seed,
               model_seed, settings, split.id, code_version()]
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    name = f"{extract.model_name(run.choice)}__{run.variant}__{key}"
    return Path(out_dir) / split.dataset_id[:16] / name


def map_jobs(choices: Sequence[ModelChoice], manifests: Sequence[dict], *, cache_dir: str | Path,
             dataset_id: str, seed: int, xrai: XraiSettings | None = None
             ) -> dict[tuple[str, str], extract.MapJob]:
    """The map stores of each frozen model and its trained runs, as extraction jobs
    ``{(model name, variant): job}``. The frozen variant's class methods explain its linear
    probe (seed ``seed``; the probe's variant shares the frozen store), else a classifier's own
    class; a backbone without a probe has none (and no job if it has no other method)."""
    jobs = {}
    for choice in choices:
        name = extract.model_name(choice)
        own = [m for m in manifests if m["model"]["name"] == name]
        probe = next((m for m in own if m["strategy"] == "linear_probe" and m["seed"] == seed), None)
        for variant, manifest in [("frozen", probe), *((m["variant"], m) for m in own)]:
            if manifest is probe and variant != "frozen":  # the frozen model's very maps
                jobs[(name, variant)] = jobs[(name, "frozen")]
                continue
            methods = None
            spec = models.spec_for(choice)
            if manifest is None and not spec.arch.classifier:
                methods = tuple(m for m in spec.methods if not registry.METHODS[m].explains_class)
                if not methods:
                    continue
            reads = xrai if "xrai" in (methods or spec.methods) else None
            store = extract.store_for(cache_dir, dataset_id, name, variant,
                                      key=manifest["key"] if manifest else "", xrai=reads)
            jobs[(name, variant)] = extract.MapJob(choice, store, methods,
                                                   Path(manifest["dir"]) if manifest else None, reads)
    return jobs


def runs_table(manifests: Sequence[dict]) -> Iterator[dict]:
    """One flat row per run (for ``finetune_runs.csv``)."""
    for m in manifests:
        yield {"model": m["model"]["name"], "strategy": m["strategy"], "variant": m["variant"],
               "seed": m["seed"], "split_id": m["split"]["id"],
               **{k: m["split"][k] for k in ("n_train", "n_val")},
               **{k: m[k] for k in ("best_epoch", "epochs_run", "val_accuracy", "val_macro_f1",
                                    "chance_accuracy", "trainable_params", "total_params", "wall_time_s",
                                    "device")},
               "checkpoint_mib": round(m["checkpoint_bytes"] / 2**20, 3),
               "checkpoint_hash": m["checkpoint_hash"][:12], "key": m["key"]}
