"""What a study reads: data sets (one section per on-disk format) and models (a preset key
or a spec), with the base every section of the schema shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

SI_SUBJECTS = (
    "ant", "ball", "bird", "book", "car", "cat", "chair", "computer", "dog", "elephant",
    "flower", "house", "man", "phone", "plane", "shark", "ship", "tree", "woman", "zebra",
)  # fmt: skip


ImageSize = tuple[Annotated[int, Field(ge=64, le=4096)], Annotated[int, Field(ge=64, le=4096)]]


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
    image_size: ImageSize = (320, 256)
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
    image_size: ImageSize = (320, 256)
    strict: bool = True


HumanAttentionData = Annotated[HumanAttentionDataset | SyntheticHumanAttentionDataset,
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
    """A ``models:`` entry: a preset ``key``, or a spec: a new ``key``, a ``source`` and what
    that source needs (`sightline.models.SOURCES`). The build checks the keys and specs
    against the model registry before any work (`sightline.models.check_choices`);
    ``STUDY`` is the study whose presets the entry may name."""

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
            raise _one_of(("pretrained", "random"))
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


class SIModelChoice(ModelChoice):
    """A Shared Interest model: one of the study's presets, or a spec of an ImageNet classifier."""

    STUDY: ClassVar[str] = "shared_interest"


def _one_of(allowed: tuple[str, ...]) -> PydanticCustomError:
    """A literal_error as pydantic words it, so `_explain` lists the values and a close one."""
    quoted = [f"'{a}'" for a in allowed]
    expected = ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
    return PydanticCustomError("literal_error", "Input should be {expected}",
                               {"expected": expected})

