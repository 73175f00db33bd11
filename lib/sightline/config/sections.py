"""The study's settings sections (extraction, metrics, statistics, Shared Interest,
photos, execution, fine-tuning, sanity) and `Params`, the whole profile with the rules
between its keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from sightline import registry

from .inputs import Dataset, HumanAttentionData, ModelChoice, ModelKey, SIModelChoice, _one_of, _Section

BASELINE_NAMES = ("random", "centre_gaussian", "spectral_residual", "sobel")
# binarisation rules of sightline.binarize.RULES (a test keeps them in step with it)
RULES = ("percentile", "mass", "max", "otsu", "std")


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
    percentiles: tuple[Annotated[float, Field(ge=0, lt=100)], ...] = (50, 60, 70, 75, 80, 85, 90, 95)
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


class Binarize(_Section):
    """How continuous maps become the binary sets Shared Interest scores: ``std`` (per-map
    min-max, keep >= mean + ``num_std`` std) or ``percentile`` (the top (100 - p) % pixels).
    ``sweep``: saliency thresholds in the saliency rule's unit; the human mask stays at its own.
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
        raise _one_of(allowed)
    return value


def _listed(value: tuple[str, ...], what: str) -> tuple[str, ...]:
    """A non-empty list of names, each kept once in its first place."""
    if not value:
        raise ValueError(f"list at least one {what}")
    return tuple(dict.fromkeys(value))


ClassifierMethods = Annotated[tuple[Annotated[str, AfterValidator(_classifier_method)], ...],
                              AfterValidator(lambda value: _listed(value, "method"))]


class SharedInterest(_Section):
    """The Shared Interest replication: its own dataset, models and method settings."""

    dataset: HumanAttentionData
    models: tuple[SIModelChoice, ...]
    methods: ClassifierMethods = ("gradcam", "xrai")
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


class Randomisation(_Section):
    """The settings every randomisation test shares (`sightline.sanity`).

    ``depths``: ``all`` or the 1-based steps of the cascade order (1 = the head) run in each
    mode (the whole network always runs: the flag reads it). ``max_images``: a seeded
    subsample (none: all). ``threshold``: a method whose mean Spearman after the whole
    network is re-initialised exceeds it is flagged *not model-sensitive*.
    """

    depths: Literal["all"] | tuple[Annotated[int, Field(ge=1, le=1000)], ...] = "all"
    modes: Annotated[tuple[Literal["cascade", "independent"], ...],
                     AfterValidator(lambda v: _listed(v, "mode (cascade, independent)"))
                     ] = ("cascade", "independent")
    seed: int = 0
    max_images: Annotated[int, Field(ge=2)] | None = None
    resolution: Annotated[int, Field(ge=16, le=1024)] = 64
    threshold: Annotated[float, Field(gt=-1, lt=1)] = 0.5


class PhotosSanity(Randomisation):
    """The randomisation test of the real-weight classifier on the photographs: a depth is one
    unit of `sightline.sanity`'s cascade order (the head, each CNN stage, the stem);
    ``methods`` each explain the class the original model predicts."""

    methods: ClassifierMethods = ("gradcam", "xrai")
    xrai: Xrai = Xrai(steps=16, batch_size=16, algorithm="fast")

    @field_validator("modes")
    @classmethod
    def _with_the_cascade(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "cascade" not in value:
            raise ValueError("list cascade among the modes: the verdict reads its last step")
        return value


class Photos(_Section):
    """The real-photo study (notebook 01_photos): packaged photographs, our annotations, a real
    ImageNet classifier and its random-weight twin (read with ``random_methods``).

    ``composites``: groups of n x n photos for the grid pointing game, also in their cyclic
    arrangements when ``rotate``, read with ``composite_methods`` (as are the object pairs).
    ``fetch_darknet``: try ``apt-get download darknet`` when its photos are not on the machine.
    """

    root: Path = Path("data/photos")
    model: Literal["efficientnet_lite0"] = "efficientnet_lite0"
    methods: ClassifierMethods = ("gradcam", "xrai")
    random_methods: ClassifierMethods = ("gradcam",)
    xrai: Xrai = Xrai(steps=16, batch_size=16, algorithm="fast")
    percentile: Annotated[float, Field(ge=0, lt=100)] = 90
    resolution: Annotated[int, Field(ge=16, le=1024)] = 224
    composites: tuple[tuple[str, ...], ...] = (
        ("chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg"),
        ("camera.png", "china.jpg", "grace_hopper.jpg", "coffee.png"),
    )
    composite_methods: ClassifierMethods = ("gradcam",)
    rotate: bool = True
    fetch_darknet: bool = True
    sanity: PhotosSanity | None = None

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
    """Where map extraction and fine-tuning runs run (``sightline.execution``, docs/scale-out.md):
    here, in ``workers`` local processes, or as Ray tasks (``address``: none starts a local
    runtime). ``cpus_per_task``: torch threads per task (default: the driver's), which keeps maps
    bit-identical between engines: float reductions depend on the thread count."""

    engine: Literal["local", "processes", "ray"] = "local"
    address: Annotated[str, Field(pattern=r"^(auto|(ray://)?[A-Za-z0-9._\-]+:[0-9]{1,5})$")] | None = None
    workers: Annotated[int, Field(ge=1, le=4096)] = 2
    gpus_per_task: Annotated[int, Field(ge=0, le=8)] = 0
    cpus_per_task: Annotated[int, Field(ge=1, le=256)] | None = None


Strategy = Literal["linear_probe", "lora", "full"]
STRATEGIES: tuple[str, ...] = ("linear_probe", "lora", "full")


class Finetune(_Section):
    """Q2: which models to fine-tune how, and the recipe (`sightline.finetune`). Every (model in
    ``strategies``, strategy) runs once per seed ``seed, seed + 1, ...``; LoRA rank / alpha /
    dropout left unset take the model family's defaults."""

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
    ``models``: ``all`` (every model's frozen variant) or a list; none by default."""

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

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Params:
        """The rules between keys (the package docstring lists them)."""
        keys = [(m.key, m.weights, m.size) for m in self.models]
        if len(set(keys)) != len(keys):
            raise ValueError("models: a model is listed twice with the same weights and size")
        specs = [m.key for m in self.models if m.source is not None]
        if len(set(specs)) != len(specs):
            raise ValueError("models: two specs share a key: give each its own")
        listed = {m.key for m in self.models}
        unlisted = sorted(set(self.finetune.strategies) - listed)
        if unlisted:
            raise ValueError(f"finetune.strategies names {unlisted}, not in the models list "
                             f"({sorted(listed)}); add them to models or drop them here")
        if self.dataset is None and self.shared_interest is None and self.photos is None:
            raise ValueError("give 'dataset' and 'models' (WikiChurches), 'shared_interest' "
                             "and / or 'photos'")
        if self.dataset is not None and not self.models:
            raise ValueError("'models': list at least one model")
        if self.dataset is None and self.models:
            raise ValueError("'models' is given without a WikiChurches 'dataset'")
        if self.sanity.models != "all":
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
