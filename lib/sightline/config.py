"""The params schema: one validated YAML file per study profile.

Unknown keys and bad values are errors that name the file, the key and what is allowed
(or the closest valid key), so a typo never runs a study with silent defaults.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

MODEL_KEYS = ("dinov2", "dinov3", "mae", "clip", "siglip", "siglip2", "resnet50")
BASELINE_NAMES = ("random", "centre_gaussian", "spectral_residual", "sobel")


class ParamsError(Exception):
    """A params file that cannot be used; the message says which file, which key, what to do."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticDataset(_Section):
    """Demo data the project generates in the WikiChurches on-disk format."""

    kind: Literal["synthetic"]
    root: Path = Path("data/synthetic")
    n_annotated: Annotated[int, Field(ge=4, le=2000)] = 24
    n_pool: Annotated[int, Field(ge=0, le=20000)] = 96
    image_size: tuple[
        Annotated[int, Field(ge=64, le=4096)], Annotated[int, Field(ge=64, le=4096)]
    ] = (
        320,
        256,
    )
    strict: bool = True


class WikiChurchesDataset(_Section):
    """The real dataset (Zenodo record 5166987) unpacked under ``root``."""

    kind: Literal["wikichurches"]
    root: Path
    strict: bool = True


Dataset = Annotated[SyntheticDataset | WikiChurchesDataset, Field(discriminator="kind")]


class ModelChoice(_Section):
    key: Literal[MODEL_KEYS]  # type: ignore[valid-type]
    weights: Literal["pretrained", "random"] = "pretrained"
    size: Literal["base", "tiny"] = "base"


class Extraction(_Section):
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 16
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cache_dir: Path = Path("cache")


class Metrics(_Section):
    resolution: Annotated[int, Field(ge=16, le=1024)] = 224
    percentiles: tuple[Annotated[float, Field(ge=0, lt=100)], ...] = (
        50,
        60,
        70,
        75,
        80,
        85,
        90,
        95,
    )
    headline_percentile: Annotated[float, Field(ge=0, lt=100)] = 90
    baselines: tuple[Literal[BASELINE_NAMES], ...] = BASELINE_NAMES  # type: ignore[valid-type]

    @field_validator("percentiles")
    @classmethod
    def _sorted_unique(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("give at least one percentile")
        return tuple(sorted(set(value)))


class Stats(_Section):
    n_boot: Annotated[int, Field(ge=100, le=100_000)] = 2000
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05


class Heads(_Section):
    min_boxes: Annotated[int, Field(ge=1)] = 3
    n_permutations: Annotated[int, Field(ge=10, le=100_000)] = 1000


class Report(_Section):
    gallery_size: Annotated[int, Field(ge=1, le=20)] = 3
    examples: Annotated[int, Field(ge=1, le=64)] = 8


Strategy = Literal["linear_probe", "lora", "full"]
STRATEGIES: tuple[str, ...] = ("linear_probe", "lora", "full")


class Finetune(_Section):
    """Q2: which models to fine-tune how, and the training recipe (see `sightline.finetune`).

    ``strategies`` maps a model key (of the ``models`` list) to its strategies; every
    (model, strategy) runs once per seed ``seed, seed + 1, ...``. LoRA rank / alpha /
    dropout left unset take the registry's defaults for the model family.
    """

    strategies: dict[Literal[MODEL_KEYS], tuple[Strategy, ...]] = {}  # type: ignore[valid-type]
    seeds: Annotated[int, Field(ge=1, le=20)] = 1
    epochs: Annotated[int, Field(ge=1, le=1000)] = 3
    patience: Annotated[int, Field(ge=0)] = 0  # epochs without a better val accuracy; 0: off
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 16
    accumulation: Annotated[int, Field(ge=1, le=64)] = 1  # gradient accumulation (GPU only)
    head_lr: Annotated[float, Field(gt=0)] = 1e-3
    backbone_lr_full: Annotated[float, Field(gt=0)] = 1e-5
    backbone_lr_lora: Annotated[float, Field(gt=0)] = 1e-4
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    warmup: Annotated[float, Field(ge=0, lt=1)] = 0.1
    clip_norm: Annotated[float, Field(gt=0)] = 1.0
    crop_scale: tuple[Annotated[float, Field(gt=0, le=1)], Annotated[float, Field(gt=0, le=1)]] = (
        0.8,
        1.0,
    )
    hflip: bool = True
    color_jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    lora_rank: Annotated[int, Field(ge=1)] | None = None
    lora_alpha: Annotated[float, Field(gt=0)] | None = None
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: Annotated[int, Field(ge=0, le=64)] = 0
    checkpoint_dir: Path = Path("checkpoints")

    @field_validator("strategies")
    @classmethod
    def _unique_strategies(cls, value: dict) -> dict:
        for key, strategies in value.items():
            if len(set(strategies)) != len(strategies):
                raise ValueError(f"model {key!r} lists a strategy twice: {list(strategies)}")
        return value


class Params(_Section):
    """A whole study profile."""

    profile: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]
    seed: int = 0
    dataset: Dataset
    models: tuple[ModelChoice, ...]
    extraction: Extraction = Extraction()
    metrics: Metrics = Metrics()
    stats: Stats = Stats()
    heads: Heads = Heads()
    report: Report = Report()
    finetune: Finetune = Finetune()

    @field_validator("models")
    @classmethod
    def _unique_models(cls, value: tuple[ModelChoice, ...]) -> tuple[ModelChoice, ...]:
        keys = [(m.key, m.weights, m.size) for m in value]
        if len(set(keys)) != len(keys):
            raise ValueError("a model is listed twice with the same weights and size")
        if not value:
            raise ValueError("list at least one model")
        return value

    @field_validator("finetune")
    @classmethod
    def _finetuned_models_listed(cls, value: Finetune, info: ValidationInfo) -> Finetune:
        listed = {m.key for m in info.data.get("models", ())}
        unlisted = sorted(set(value.strategies) - listed)
        if unlisted:
            raise ValueError(
                f"finetune.strategies names {unlisted}, not in the models list "
                f"({sorted(listed)}); add them to models or drop them here"
            )
        return value

    def resolve_paths(self, base: Path) -> Params:
        """Relative paths in the file are relative to the project root ``base``."""
        dataset = self.dataset.model_copy(update={"root": _resolve(self.dataset.root, base)})
        extraction = self.extraction.model_copy(
            update={"cache_dir": _resolve(self.extraction.cache_dir, base)}
        )
        finetune = self.finetune.model_copy(
            update={"checkpoint_dir": _resolve(self.finetune.checkpoint_dir, base)}
        )
        return self.model_copy(
            update={"dataset": dataset, "extraction": extraction, "finetune": finetune}
        )


def _resolve(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def load_params(path: str | Path, base: str | Path | None = None) -> Params:
    """Read and validate a params file; relative paths resolve against ``base`` (default: cwd)."""
    path = Path(path)
    if not path.is_file():
        available = (
            sorted(p.name for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        )
        hint = f" Profiles in {path.parent}/: {', '.join(available)}." if available else ""
        raise ParamsError(f"{path}: no such params file.{hint}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ParamsError(
            f"{path}: expected a mapping of keys at the top level, got {type(raw).__name__}"
        )
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        problems = "\n".join(f"  - {_explain(e, raw)}" for e in error.errors())
        raise ParamsError(f"{path}: invalid params:\n{problems}") from None
    return params.resolve_paths(Path(base) if base is not None else Path.cwd())


_DATASET_KINDS = ("synthetic", "wikichurches")


def _explain(error: dict[str, Any], raw: dict[str, Any]) -> str:
    """One readable line per pydantic error: dotted key, problem, allowed values or a close key."""
    loc = [str(part) for part in error["loc"]]
    key = ".".join(p for p in loc if p not in _DATASET_KINDS) or "(top level)"
    if error["type"] == "extra_forbidden":
        parent_model = _model_at(loc[:-1], raw)
        allowed = sorted(parent_model.model_fields) if parent_model else []
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        suggestion = f" Did you mean '{close[0]}'?" if close else ""
        return f"unknown key '{key}'.{suggestion} Allowed here: {', '.join(allowed)}"
    if error["type"] == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        given = error.get("input")
        allowed = [a.strip().strip("'") for a in expected.replace(" or ", ", ").split(",")]
        close = difflib.get_close_matches(str(given), allowed, n=1)
        suggestion = f" Did you mean '{close[0]}'?" if close else ""
        return f"'{key}' is {given!r}; allowed: {expected}.{suggestion}"
    if error["type"] == "missing":
        return f"missing key '{key}'"
    return f"'{key}': {error['msg']} (got {error.get('input')!r})"


def _model_at(loc: list[str], raw: dict[str, Any]) -> type[BaseModel] | None:
    """The schema class at a dotted location, following the raw data through unions."""
    model: Any = Params
    node: Any = raw
    for part in loc:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit():
            node = node[int(part)]
        if part.isdigit():
            continue
        if part in _DATASET_KINDS:
            model = SyntheticDataset if part == "synthetic" else WikiChurchesDataset
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        model = _inner_model(field.annotation, node)
    return model


def _inner_model(annotation: Any, node: Any) -> type[BaseModel] | None:
    """Unwrap tuple[...] / unions / Annotated to the BaseModel that validates ``node``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or getattr(annotation, "__metadata__", ()):
        inner = _inner_model(arg, node)
        if inner is not None:
            if inner in (SyntheticDataset, WikiChurchesDataset) and isinstance(node, dict):
                return SyntheticDataset if node.get("kind") == "synthetic" else WikiChurchesDataset
            return inner
    origin = getattr(annotation, "__origin__", None)
    if origin is not None:
        return _inner_model(origin, node)
    return None

