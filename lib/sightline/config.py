"""The params schema: one validated YAML file per study profile.

Unknown keys and bad values are errors that name the file, the key and what is allowed
(or the closest valid key), so a typo never runs a study with silent defaults.

Rules between keys, checked up front with the rest (one line naming both keys):

- ``metrics.headline_percentile`` must be one of ``metrics.percentiles``.
- a profile holds a WikiChurches study (``dataset`` with at least one of ``models``), the
  ``shared_interest`` study and / or the ``photos`` study; ``models`` without ``dataset`` is an error.
- every model of ``sanity.models`` is in ``models``, and a variant other than ``frozen``
  is one of its ``finetune.strategies``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from . import registry

BASELINE_NAMES = ("random", "centre_gaussian", "spectral_residual", "sobel")
# binarisation rules of sightline.binarize.RULES (a test keeps them in step with it)
RULES = ("percentile", "mass", "max", "otsu", "std")
SI_SUBJECTS = (
    "ant", "ball", "bird", "book", "car", "cat", "chair", "computer", "dog", "elephant",
    "flower", "house", "man", "phone", "plane", "shark", "ship", "tree", "woman", "zebra",
)  # fmt: skip


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
    image_size: tuple[Annotated[int, Field(ge=64, le=4096)],
                      Annotated[int, Field(ge=64, le=4096)]] = (320, 256)
    strict: bool = True


class WikiChurchesDataset(_Section):
    """The real dataset (Zenodo record 5166987) unpacked under ``root``."""

    kind: Literal["wikichurches"]
    root: Path
    strict: bool = True


class CocoDataset(_Section):
    """A COCO detection JSON (boxes, polygons or RLE; categories = feature types) and an
    image folder, both relative to ``root``; image labels from ``images[].label`` or
    ``labels`` (a CSV ``image,label``). See ``sightline.data.coco``."""

    kind: Literal["coco"]
    root: Path
    annotations: Path = Path("annotations.json")
    images: Path = Path("images")
    labels: Path | None = None
    strict: bool = True


class MaskBinarize(_Section):
    """How a soft (grey-level) mask becomes a region: Shared Interest's ``std`` rule (keep
    >= mean + ``num_std`` std after min-max) or ``percentile``; binary masks stay as they are."""

    rule: Literal["std", "percentile"] = "std"
    num_std: Annotated[float, Field(ge=0, le=5)] = 1.0
    percentile: Annotated[float, Field(ge=0, lt=100)] = 90


class MasksDataset(_Section):
    """``images/`` and ``masks/<image stem>.png`` (feature ``mask``) or
    ``masks/<feature>/<image stem>.png``, relative to ``root``. See ``sightline.data.masks``."""

    kind: Literal["masks"]
    root: Path
    images: Path = Path("images")
    masks: Path = Path("masks")
    labels: Path | None = None
    binarize: MaskBinarize = MaskBinarize()
    strict: bool = True


Dataset = Annotated[SyntheticDataset | WikiChurchesDataset | CocoDataset | MasksDataset,
                    Field(discriminator="kind")]


Side = Annotated[int, Field(ge=16, le=4096)]
Normalisation = Literal["imagenet", "clip", "half"] | tuple[float, float, float]
SOURCES = ("hf", "timm", "torchvision", "python")
ModelKey = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=64)]
_SPEC_FIELDS = ("name", "factory", "checkpoint", "target_layer", "target_layout", "input")


class InputSpec(_Section):
    """A spec's preprocessing, over what its checkpoint's own config says: the square
    ``size``; ``resize`` ``squash`` (whole image to size x size) or the shortest edge in
    px before a centre crop (or ``crop_pct``: shortest edge = size / crop_pct);
    ``interpolation``; ``mean`` / ``std`` as three numbers or a name."""

    size: Side | tuple[Side, Side] | None = None
    resize: Literal["squash"] | Side | None = None
    crop_pct: Annotated[float, Field(gt=0, le=1)] | None = None
    interpolation: Literal["bilinear", "bicubic"] | None = None
    mean: Normalisation | None = None
    std: Normalisation | None = None

    @field_validator("size")
    @classmethod
    def _square(cls, value: int | tuple[int, int] | None) -> int | None:
        if isinstance(value, tuple):
            if value[0] != value[1]:
                raise ValueError(f"{value[0]}x{value[1]}: sightline's input frame is square "
                                 f"(geometry.Geometry); give one side, e.g. size: {max(value)}")
            return value[0]
        return value

    @model_validator(mode="after")
    def _one_crop_rule(self) -> InputSpec:
        if self.resize is not None and self.crop_pct is not None:
            raise ValueError("give input.resize or input.crop_pct, not both")
        return self


class ModelChoice(_Section):
    """A ``models:`` entry: a preset ``key`` (``weights`` / ``size`` as ever), or a spec: a
    new ``key`` naming it, a ``source`` and what that source needs (see
    `sightline.models.SOURCES`, ``python build.py models``). Which keys are presets, and
    whether a spec names a model its source has, the build checks against the model
    registry before any work (`sightline.models.check_choices`); ``STUDY`` is the study
    whose presets the entry may name."""

    STUDY: ClassVar[str] = "wikichurches"

    source: Literal[SOURCES] | None = None  # type: ignore[valid-type]
    key: ModelKey
    name: Annotated[str, Field(min_length=1)] | None = None
    factory: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")] | None = None
    weights: str = "pretrained"
    size: Literal["base", "tiny"] = "base"
    checkpoint: Path | None = None
    target_layer: Annotated[str, Field(min_length=1)] | None = None
    target_layout: Literal["nchw", "nhwc", "tokens"] | None = None
    input: InputSpec | None = None

    @field_validator("weights")
    @classmethod
    def _known_weights(cls, value: str, info: ValidationInfo) -> str:
        """pretrained or random; a torchvision spec may name a weights enum instead."""
        if value not in ("pretrained", "random") and info.data.get("source") != "torchvision":
            raise _literal_error(("pretrained", "random"))
        return value

    @model_validator(mode="after")
    def _spec_fields(self) -> ModelChoice:
        """Each source's required fields; preset-only and spec-only fields kept apart."""
        given = [f for f in _SPEC_FIELDS if getattr(self, f) is not None]
        if self.source is None:
            if given:
                raise ValueError(f"model {self.key!r}: {', '.join(given)} describe a spec: add "
                                 f"'source' ({', '.join(SOURCES)}) and a new key")
            return self
        if self.size != "base":
            raise ValueError(f"model {self.key!r}: 'size' applies to presets (tiny random "
                             "stand-ins); drop it from the spec")
        if self.source == "python":
            if self.factory is None or self.name is not None:
                raise ValueError(f"model {self.key!r}: source python takes 'factory' "
                                 "('package.module:function'), not 'name'")
        elif self.name is None or self.factory is not None:
            raise ValueError(f"model {self.key!r}: source {self.source} needs 'name' (and takes "
                             "no 'factory')")
        if self.checkpoint is not None and self.weights == "random":
            raise ValueError(f"model {self.key!r}: 'checkpoint' gives the weights; drop "
                             "'weights: random'")
        return self


def _literal_error(allowed: tuple[str, ...]) -> PydanticCustomError:
    """A literal_error as pydantic words it, so `_explain` lists the values and a close one."""
    quoted = [f"'{a}'" for a in allowed]
    expected = ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
    return PydanticCustomError("literal_error", "Input should be {expected}",
                               {"expected": expected})


class Xrai(_Section):
    """XRAI's cost: IG steps per baseline (2 baselines), inputs per batch, full / fast ranking."""

    steps: Annotated[int, Field(ge=2, le=1000)] = 100
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 20
    algorithm: Literal["full", "fast"] = "full"


class Extraction(_Section):
    """Q1's maps: images per batch, device, the cache folder, and XRAI's cost (its maps are
    stored apart per setting)."""

    batch_size: Annotated[int, Field(ge=1, le=1024)] = 16
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cache_dir: Path = Path("cache")
    xrai: Xrai = Xrai()


class Metrics(_Section):
    resolution: Annotated[int, Field(ge=16, le=1024)] = 224
    percentiles: tuple[Annotated[float, Field(ge=0, lt=100)], ...] = (50, 60, 70, 75, 80, 85,
                                                                      90, 95)
    headline_percentile: Annotated[float, Field(ge=0, lt=100)] = 90
    baselines: tuple[Literal[BASELINE_NAMES], ...] = BASELINE_NAMES  # type: ignore[valid-type]
    # frame of Q1's comparisons between models: each model's own (crop) frame, the common
    # whole-image frame (scoring.score_store_common), or both side by side
    frame: Literal["model", "common", "both"] = "both"
    # binarisation conventions scored into scores.parquet (binarize.RULES): percentile is
    # IoU@p; the others add iou_mass, iou_max, iou_otsu, iou_std rows
    rules: tuple[Literal[RULES], ...] = ("percentile",)  # type: ignore[valid-type]

    @field_validator("percentiles")
    @classmethod
    def _sorted_unique(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("give at least one percentile")
        return tuple(sorted(set(value)))

    @field_validator("rules")
    @classmethod
    def _with_percentile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "percentile" not in value:
            raise ValueError("rules must include percentile (IoU@p: the leaderboard's metric)")
        return tuple(r for r in RULES if r in value)


def _margins(value: dict[str, float]) -> dict[str, float]:
    """The registry's default margins (`registry.sesoi_defaults`) with the given ones over them."""
    defaults = registry.sesoi_defaults()
    unknown = sorted(set(value) - set(defaults))
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a metric with a margin; allowed: "
                         f"{', '.join(defaults)}")
    return defaults | value


class Stats(_Section):
    """``sesoi``: the smallest effect size of interest per metric, in the metric's own unit
    (each metric's default is its registry entry's): a change smaller than this is no change
    worth reporting (Q2's verdicts, the positive control). IoU and coverage are fractions: 0.01
    is one point; MSE is between [0, 1]-scaled maps and targets; KL is in nats; EMD in image
    sides."""

    n_boot: Annotated[int, Field(ge=100, le=100_000)] = 2000
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    sesoi: Annotated[dict[str, Annotated[float, Field(gt=0)]], AfterValidator(_margins)] = Field(
        default_factory=registry.sesoi_defaults)


class Heads(_Section):
    min_boxes: Annotated[int, Field(ge=1)] = 3
    n_permutations: Annotated[int, Field(ge=10, le=100_000)] = 1000


class Report(_Section):
    """``split_by_correct``: add a right / wrong split of the Q1 leaderboard, the Shared
    Interest Table 1 and the Q2 shift table, by whether the classifier behind each map
    predicted the image's class (the scores' ``correct`` column)."""

    gallery_size: Annotated[int, Field(ge=1, le=20)] = 3
    examples: Annotated[int, Field(ge=1, le=64)] = 8
    split_by_correct: bool = False


class HumanAttentionDataset(_Section):
    """The ML Interpretability Benchmark (Mohseni et al.) cloned or unpacked under ``root``."""

    kind: Literal["human_attention"]
    root: Path
    strict: bool = True


class SyntheticHumanAttentionDataset(_Section):
    """Demo stand-in the project generates in the benchmark's on-disk layout."""

    kind: Literal["synthetic_human_attention"]
    root: Path = Path("data/synthetic-human-attention")
    subjects: tuple[Literal[SI_SUBJECTS], ...] = ("dog", "car")  # type: ignore[valid-type]
    per_subject: Annotated[int, Field(ge=1, le=5)] = 5
    image_size: tuple[Annotated[int, Field(ge=64, le=4096)],
                      Annotated[int, Field(ge=64, le=4096)]] = (320, 256)
    strict: bool = True


HumanAttentionData = Annotated[HumanAttentionDataset | SyntheticHumanAttentionDataset,
                               Field(discriminator="kind")]


class SIModelChoice(ModelChoice):
    """A Shared Interest model: one of the study's presets, or a spec of an ImageNet classifier."""

    STUDY: ClassVar[str] = "shared_interest"


class Binarize(_Section):
    """How continuous maps become the binary sets Shared Interest scores.

    ``std`` (the Shared Interest code's ``binarize_std``): per-map min-max, keep values
    >= mean + ``num_std`` std; ``percentile``: keep the top (100 - ``percentile``)% pixels.
    ``sweep`` lists saliency thresholds in the saliency rule's unit (num_std or percentile);
    the human mask stays at its rule's threshold.
    """

    saliency: Literal["std", "percentile"] = "std"
    mask: Literal["std", "percentile"] = "std"
    num_std: Annotated[float, Field(ge=0, le=5)] = 1.0
    percentile: Annotated[float, Field(ge=0, lt=100)] = 90
    sweep: tuple[Annotated[float, Field(ge=0, lt=100)], ...] = (0.0, 0.5, 1.0, 1.5, 2.0)


class Cases(_Section):
    """Shared Interest's case taxonomy thresholds: a score >= ``high`` counts as high."""

    iou_high: Annotated[float, Field(gt=0, le=1)] = 0.5
    coverage_high: Annotated[float, Field(gt=0, le=1)] = 0.5


def _classifier_method(value: str) -> str:
    """A saliency method of a classifier explained at a layer (`registry.applicable_methods`)."""
    allowed = registry.applicable_methods("cnn", classifier=True)
    if value not in allowed:
        raise _literal_error(allowed)
    return value


ClassifierMethod = Annotated[str, AfterValidator(_classifier_method)]


def _listed(value: tuple[str, ...], what: str) -> tuple[str, ...]:
    """A non-empty list of names, each kept once in its first place."""
    if not value:
        raise ValueError(f"list at least one {what}")
    return tuple(dict.fromkeys(value))


class SharedInterest(_Section):
    """The Shared Interest replication: its own dataset, models and method settings."""

    dataset: HumanAttentionData
    models: tuple[SIModelChoice, ...]
    methods: tuple[ClassifierMethod, ...] = ("gradcam", "xrai")
    target: Literal["predicted", "benchmark"] = "predicted"
    xrai: Xrai = Xrai()
    binarize: Binarize = Binarize()
    cases: Cases = Cases()
    resolution: Annotated[int, Field(ge=16, le=1024)] = 224
    gallery_size: Annotated[int, Field(ge=1, le=20)] = 3

    @field_validator("models")
    @classmethod
    def _some_models(cls, value: tuple[SIModelChoice, ...]) -> tuple[SIModelChoice, ...]:
        if not value:
            raise ValueError("list at least one model")
        if len({m.key for m in value}) != len(value):
            raise ValueError("a model is listed twice")
        return value

    @field_validator("methods")
    @classmethod
    def _some_methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _listed(value, "method")


class Randomisation(_Section):
    """The settings every randomisation test shares (`sightline.sanity`).

    ``depths``: ``all`` or the 1-based steps of the cascade order (1 = the head) to run in
    each mode (the whole network is always run: the flag reads it). ``max_images``: a seeded
    subsample of the images (none: all). ``resolution``: the side at which maps are
    compared. ``threshold``: a method whose mean Spearman after the whole network is
    re-initialised exceeds it is flagged *not model-sensitive*.
    """

    depths: Literal["all"] | tuple[Annotated[int, Field(ge=1, le=1000)], ...] = "all"
    modes: tuple[Literal["cascade", "independent"], ...] = ("cascade", "independent")
    seed: int = 0
    max_images: Annotated[int, Field(ge=2)] | None = None
    resolution: Annotated[int, Field(ge=16, le=1024)] = 64
    threshold: Annotated[float, Field(gt=-1, lt=1)] = 0.5

    @field_validator("modes")
    @classmethod
    def _some_modes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _listed(value, "mode (cascade, independent)")


class PhotosSanity(Randomisation):
    """The randomisation test of the real-weight classifier on the photographs (notebook
    01_photos): one depth is one unit of `sightline.sanity`'s cascade order (the head, each
    of the CNN's stages, the stem). ``methods`` are read on every step, each explaining the
    class the original model predicts; ``xrai`` is XRAI's cost here. The other keys:
    `Randomisation`.
    """

    methods: tuple[ClassifierMethod, ...] = ("gradcam", "xrai")
    xrai: Xrai = Xrai(steps=16, batch_size=16, algorithm="fast")

    @field_validator("methods")
    @classmethod
    def _some_methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _listed(value, "method")

    @field_validator("modes")
    @classmethod
    def _with_the_cascade(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "cascade" not in value:
            raise ValueError("list cascade among the modes: the verdict reads its last step")
        return value


class Photos(_Section):
    """The real-photo study (notebook 01_photos): packaged photographs, our annotations, a
    real ImageNet classifier and the same architecture with random weights.

    ``random_methods``: the methods read on the random-weight twin. ``composites``: groups
    of n x n photos (4 = 2 x 2) for the grid pointing game, each also in its cyclic
    arrangements when ``rotate`` (every photo once in every cell); ``composite_methods``
    are the methods read on them and on the photos' object pairs (the random twin: Grad-CAM).
    ``fetch_darknet``: try ``apt-get download darknet`` when its photos are not on the
    machine. ``sanity``: the randomisation test of the real weights (`PhotosSanity`; none:
    not run).
    """

    root: Path = Path("data/photos")
    model: Literal["efficientnet_lite0"] = "efficientnet_lite0"
    methods: tuple[ClassifierMethod, ...] = ("gradcam", "xrai")
    random_methods: tuple[ClassifierMethod, ...] = ("gradcam",)
    xrai: Xrai = Xrai(steps=16, batch_size=16, algorithm="fast")
    percentile: Annotated[float, Field(ge=0, lt=100)] = 90
    resolution: Annotated[int, Field(ge=16, le=1024)] = 224
    composites: tuple[tuple[str, ...], ...] = (
        ("chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg"),
        ("camera.png", "china.jpg", "grace_hopper.jpg", "coffee.png"),
    )
    composite_methods: tuple[ClassifierMethod, ...] = ("gradcam",)
    rotate: bool = True
    fetch_darknet: bool = True
    sanity: PhotosSanity | None = None

    @field_validator("methods", "random_methods", "composite_methods")
    @classmethod
    def _some_methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _listed(value, "method")

    @field_validator("composites")
    @classmethod
    def _square_groups(cls, value: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
        for group in value:
            side = round(len(group) ** 0.5)
            if side < 2 or side * side != len(group) or len(set(group)) != len(group):
                raise ValueError(f"a composite lists a square number (>= 4) of distinct photos, "
                                 f"got {list(group)}")
        return value


class Execution(_Section):
    """Where the heavy steps (map extraction, fine-tuning runs) run: see ``sightline.execution``.

    ``engine: ray`` with no ``address`` starts a local Ray runtime running ``workers``
    tasks at once; ``auto`` joins the cluster started on this node with ``ray start``;
    ``ray://HOST:PORT`` (Ray Client) or ``HOST:PORT`` (the head's GCS) joins a remote one.
    ``cpus_per_task`` is the torch threads of one task (default: the driver's), which keeps
    maps bit-identical between engines: float reductions depend on the thread count.
    """

    engine: Literal["local", "ray"] = "local"
    address: Annotated[str, Field(pattern=r"^(auto|(ray://)?[A-Za-z0-9._\-]+:[0-9]{1,5})$")] | None = None
    workers: Annotated[int, Field(ge=1, le=4096)] = 2
    gpus_per_task: Annotated[int, Field(ge=0, le=8)] = 0
    cpus_per_task: Annotated[int, Field(ge=1, le=256)] | None = None


Strategy = Literal["linear_probe", "lora", "full"]
STRATEGIES: tuple[str, ...] = ("linear_probe", "lora", "full")


class Finetune(_Section):
    """Q2: which models to fine-tune how, and the training recipe (see `sightline.finetune`).

    ``strategies`` maps a model key (a preset or a spec of the ``models`` list) to its
    strategies; every
    (model, strategy) runs once per seed ``seed, seed + 1, ...``. LoRA rank / alpha /
    dropout left unset take the registry's defaults for the model family.
    """

    strategies: dict[str, tuple[Strategy, ...]] = {}
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
    crop_scale: tuple[Annotated[float, Field(gt=0, le=1)],
                      Annotated[float, Field(gt=0, le=1)]] = (0.8, 1.0)
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


class SanityModel(_Section):
    """One model of the randomisation test: its key in ``models`` (a preset or a spec) and
    which weights (``frozen``: the model as loaded, with its linear probe as the head; a
    strategy: that run, seed ``seed``)."""

    key: ModelKey
    variant: Literal["frozen", "linear_probe", "lora", "full"] = "frozen"


class Sanity(Randomisation):
    """The model-parameter randomisation test of the study's models (notebook Q4).

    ``models``: ``all`` (every model's frozen variant) or a list; none by default. The
    other keys: `Randomisation`.
    """

    models: Literal["all"] | tuple[SanityModel, ...] = ()


class Params(_Section):
    """A whole study profile."""

    profile: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]
    seed: int = 0
    dataset: Dataset | None = None
    models: tuple[ModelChoice, ...] = ()
    extraction: Extraction = Extraction()
    metrics: Metrics = Metrics()
    stats: Stats = Field(default_factory=Stats)
    heads: Heads = Heads()
    report: Report = Report()
    shared_interest: SharedInterest | None = None
    photos: Photos | None = None
    execution: Execution = Execution()
    finetune: Finetune = Finetune()
    sanity: Sanity = Sanity()

    @field_validator("models")
    @classmethod
    def _unique_models(cls, value: tuple[ModelChoice, ...]) -> tuple[ModelChoice, ...]:
        keys = [(m.key, m.weights, m.size) for m in value]
        if len(set(keys)) != len(keys):
            raise ValueError("a model is listed twice with the same weights and size")
        specs = [m.key for m in value if m.source is not None]
        if len(set(specs)) != len(specs):
            raise ValueError("two specs share a key: give each its own")
        return value

    @field_validator("finetune")
    @classmethod
    def _finetuned_models_listed(cls, value: Finetune, info: ValidationInfo) -> Finetune:
        listed = {m.key for m in info.data.get("models", ())}
        unlisted = sorted(set(value.strategies) - listed)
        if unlisted:
            raise ValueError(f"finetune.strategies names {unlisted}, not in the models list "
                             f"({sorted(listed)}); add them to models or drop them here")
        return value

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Params:
        """The rules between keys listed in the module docstring."""
        if self.dataset is None and self.shared_interest is None and self.photos is None:
            raise ValueError("give 'dataset' and 'models' (WikiChurches), 'shared_interest' "
                             "and / or 'photos'")
        if self.dataset is not None and not self.models:
            raise ValueError("'models': list at least one model")
        if self.dataset is None and self.models:
            raise ValueError("'models' is given without a WikiChurches 'dataset'")
        if self.sanity.models != "all":
            listed = {m.key for m in self.models}
            for m in self.sanity.models:
                if m.key not in listed:
                    raise ValueError(f"sanity.models names {m.key!r}, not in the models list "
                                     f"({sorted(listed)}); add it there or drop it here")
                strategies = self.finetune.strategies.get(m.key, ())
                if m.variant != "frozen" and m.variant not in strategies:
                    raise ValueError(
                        f"sanity.models: {m.key} variant {m.variant!r} is not trained: "
                        f"finetune.strategies.{m.key} is {list(strategies)}; add it there")
        metrics = self.metrics
        if metrics.headline_percentile not in metrics.percentiles:
            raise ValueError(f"metrics.headline_percentile ({metrics.headline_percentile:g}) must be one of "
                             f"metrics.percentiles ({', '.join(f'{p:g}' for p in metrics.percentiles)})")
        return self

    def resolve_paths(self, base: Path) -> Params:
        """Relative paths in the file are relative to the project root ``base``."""
        update: dict[str, Any] = {
            "extraction": self.extraction.model_copy(
                update={"cache_dir": _resolve(self.extraction.cache_dir, base)}),
            "models": tuple(_resolve_checkpoint(m, base) for m in self.models),
            "finetune": self.finetune.model_copy(
                update={"checkpoint_dir": _resolve(self.finetune.checkpoint_dir, base)}),
        }
        if self.dataset is not None:
            update["dataset"] = self.dataset.model_copy(
                update={"root": _resolve(self.dataset.root, base)})
        if self.shared_interest is not None:
            study = self.shared_interest
            update["shared_interest"] = study.model_copy(update={
                "dataset": study.dataset.model_copy(
                    update={"root": _resolve(study.dataset.root, base)}),
                "models": tuple(_resolve_checkpoint(m, base) for m in study.models)})
        if self.photos is not None:
            update["photos"] = self.photos.model_copy(
                update={"root": _resolve(self.photos.root, base)})
        return self.model_copy(update=update)


def _resolve_checkpoint(choice: ModelChoice, base: Path) -> ModelChoice:
    """A spec's checkpoint path resolved against ``base``; a missing one is an error here."""
    if choice.checkpoint is None:
        return choice
    path = _resolve(choice.checkpoint, base)
    if not path.exists():
        raise ParamsError(f"model {choice.key!r}: checkpoint {path} does not exist")
    return choice.model_copy(update={"checkpoint": path})


def _resolve(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def load_params(path: str | Path, base: str | Path | None = None) -> Params:
    """Read and validate a params file; relative paths resolve against ``base`` (default: cwd)."""
    path = Path(path)
    if not path.is_file():
        available = sorted(p.name for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        hint = f" Profiles in {path.parent}/: {', '.join(available)}." if available else ""
        raise ParamsError(f"{path}: no such params file.{hint}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        problems = [_explain(e, raw) for e in error.errors()]
        if len(problems) == 1:
            raise ParamsError(f"{path}: {problems[0]}") from None
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise ParamsError(f"{path}: invalid params:\n{listed}") from None
    try:
        return params.resolve_paths(Path(base) if base is not None else Path.cwd())
    except ParamsError as error:
        raise ParamsError(f"{path}: {error}") from None


_DATASET_CLASSES = {
    "synthetic": SyntheticDataset,
    "wikichurches": WikiChurchesDataset,
    "coco": CocoDataset,
    "masks": MasksDataset,
    "human_attention": HumanAttentionDataset,
    "synthetic_human_attention": SyntheticHumanAttentionDataset,
}


def _explain(error: dict[str, Any], raw: dict[str, Any]) -> str:
    """One readable line per pydantic error: dotted key, problem, allowed values or a close key."""
    loc = [str(part) for part in error["loc"]]
    key = ".".join(p for p in loc if p not in _DATASET_CLASSES) or "(top level)"
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
    if error["type"] == "value_error":  # a rule's own message names the keys
        message = str(error["ctx"]["error"])
        return f"'{key}': {message}" if loc else message
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
        if part in _DATASET_CLASSES:
            model = _DATASET_CLASSES[part]
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
            if inner in _DATASET_CLASSES.values() and isinstance(node, dict):
                return _DATASET_CLASSES.get(node.get("kind"), inner)
            return inner
    origin = getattr(annotation, "__origin__", None)
    if origin is not None:
        return _inner_model(origin, node)
    return None

