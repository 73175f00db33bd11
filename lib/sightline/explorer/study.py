"""One built profile, read-only: its samples, its union scores table and its map cache.

Per-box metrics are computed on the fly from the cached map through the scoring step's
geometry, upsampling and top-k rule, so they equal the rows of ``tables/scores.parquet``."""

from __future__ import annotations

import functools
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import config, data, extract, metrics, registry
from .. import models as presets
from ..cache import MapStore
from ..geometry import Geometry
from ..studies import alignment

CORRECT = ("all", "right", "wrong")  # the prediction filter: every image, or one side
BASELINE = "baseline"
LEADERBOARD_VARIANT = alignment.VARIANT  # the variant Q1's leaderboard reads
# The variant column of the table -> the variant part of the store's file name.
_STORE_VARIANT = {BASELINE: "none"}


class NotBuilt(Exception):
    """The profile has no report tables yet; the message names the build command."""


class NotFound(LookupError):
    """An image, box, model, variant, method, layer, head, table or percentile that is not there."""


@dataclass(frozen=True)
class Selection:
    """One map: (model, variant, method, layer, head) as in the scores table, and a percentile."""

    model: str
    variant: str
    method: str
    layer: int
    head: int
    percentile: float


class Study:
    """A built profile opened for reading: samples, union scores, map stores."""

    def __init__(self, params_path: str | Path, *, root: Path, report_root: Path | None = None):
        self.params = config.load_params(params_path, base=root)
        self.profile_dir = (report_root or root / "report") / self.params.profile
        self.tables_dir = self.profile_dir / "tables"
        scores_path = self.tables_dir / "scores.parquet"
        if not scores_path.is_file():
            raise NotBuilt(f"profile '{self.params.profile}' has not been built: {scores_path} is "
                           f"missing. Build it first: python build.py --params {params_path}")
        section = self.params.dataset.model_dump(mode="json")
        self.samples = {s.image_id: s for s in data.load_dataset(section).samples}
        self.image_ids = sorted(self.samples)
        self.resolution = self.params.metrics.resolution
        self.headline = float(self.params.metrics.headline_percentile)
        self.cache_dir = self.params.extraction.cache_dir / data.dataset_fingerprint(section)[:16]
        self.code_version = extract.code_version()
        # Q1 records which store holds each (model, variant): fine-tuned and probed variants'
        # stores are keyed by their run, so their names cannot be guessed
        listing = self.tables_dir / "stores.csv"
        self._stores = {} if not listing.is_file() else {
            (r.model, r.variant): self.cache_dir / Path(r.store).name
            for r in pd.read_csv(listing).itertuples(index=False)}
        self.union = pd.read_parquet(
            scores_path, columns=["image_id", "model", "variant", "method", "layer", "head",
                                  "metric", "threshold", "value", "correct"],
            filters=[("target", "==", "union"),
                     ("metric", "in", list(registry.METRICS.names(target="mask")))],
        ).astype({c: str for c in ("image_id", "model", "variant", "method", "metric")})
        self.kinds = (self.union[["model", "variant", "method", "layer", "head"]]
                      .drop_duplicates().sort_values(["model", "variant", "method", "layer", "head"]))
        self.thresholds = sorted(float(t) for t in self.union["threshold"].dropna().unique())
        # (model, variant, method) -> {layer: heads}: what a request may select, looked up fast
        self._heads: dict[tuple[str, str, str], dict[int, list[int]]] = {}
        for row in self.kinds.itertuples(index=False):
            (self._heads.setdefault((row.model, row.variant, row.method), {})
             .setdefault(int(row.layer), []).append(int(row.head)))
        self.models = self._model_order()
        present = set(self.union["metric"])  # the mask metrics of the table, registry order
        self.metrics = [m for m in registry.METRICS.names(target="mask") if m in present]
        iou = self.union[(self.union["metric"] == "iou") & (self.union["head"] == -1)
                         & np.isclose(self.union["threshold"], self.headline)]
        means = (iou.groupby(["model", "variant", "method", "layer"])["value"].mean()
                 .dropna().reset_index())
        best = means.loc[means.groupby(["model", "variant", "method"])["value"].idxmax()]
        self._best_layers = {(r.model, r.variant, r.method): int(r.layer)
                             for r in best.itertuples()}
        self.headlines = self._headlines()
        self._correct: dict[tuple[str, str], dict[str, bool | None]] = {}

    # -- what there is ------------------------------------------------------------------

    def _model_order(self) -> list[str]:
        """The profile's models in params order, then anything else in the table (baselines)."""
        ordered = [extract.model_name(c) for c in self.params.models]
        present = set(self.kinds["model"])
        return [m for m in ordered if m in present] + sorted(present - set(ordered))

    def _headlines(self) -> dict[str, tuple[str, int]]:
        """Per model, the leaderboard's headline map (``alignment.headline_maps`` of the
        ``leaderboard.csv`` it wrote), of the frozen variant. Empty if it is not built."""
        path = self.tables_dir / "leaderboard.csv"
        if not path.is_file():
            return {}
        return {model: (method, layer) for model, (method, layer)
                in alignment.headline_maps(pd.read_csv(path), self.headline).items()
                if (model, LEADERBOARD_VARIANT if model != BASELINE else BASELINE,
                    method) in self._heads}

    def has_heads(self, model: str, variant: str, method: str) -> bool:
        """Whether the method's maps of (model, variant) come per head (not only a mean)."""
        return any(h >= 0 for heads in self._heads[(model, variant, method)].values()
                   for h in heads)

    def methods(self, model: str, variant: str) -> list[str]:
        """Methods of one (model, variant), in the registry's order where it knows the model."""
        present = {me for (mo, v, me) in self._heads if (mo, v) == (model, variant)}
        spec = self._spec(model)
        known = [m for m in spec.methods if m in present] if spec else []
        return known + sorted(present - set(known))

    def metric_catalogue(self) -> list[dict]:
        """The table's mask metrics as the registry describes them (the page's lists and labels)."""
        return [{"name": m.name, "label": m.label, "thresholded": m.thresholded,
                 "higher_is_better": m.higher_is_better, "help": m.help}
                for m in map(registry.METRICS.__getitem__, self.metrics)]

    def catalogue(self) -> list[dict]:
        """Per model: variants, their methods, each method's layers, best layer and heads."""
        out = []
        for model in self.models:
            variants = sorted({v for (m, v, _) in self._heads if m == model},
                              key=lambda v: (v != "frozen", v))
            out.append({"model": model,
                        "variants": [{"variant": v, "methods": [self._method_entry(model, v, method)
                                                                for method in self.methods(model, v)]}
                                     for v in variants],
                        "default": asdict(self.default(model)), "headline": model in self.headlines})
        return out

    def _method_entry(self, model: str, variant: str, method: str) -> dict:
        kind = self._heads[(model, variant, method)]  # layer -> heads (-1: the mean)
        return {"method": method,
                "label": registry.METHODS[method].label if method in registry.METHODS else method,
                "layers": sorted(kind), "best_layer": self.best_layer(model, variant, method),
                "heads": {layer: max(heads) + 1 for layer, heads in kind.items() if max(heads) >= 0}}

    def default(self, model: str | None = None, variant: str | None = None,
                method: str | None = None) -> Selection:
        """The first model, ``frozen``; its headline method (the leaderboard's, ``_headlines``),
        else its first; that method's best layer (the headline's); head mean; headline p."""
        model = model or self.models[0]
        if model not in self.models:
            raise NotFound(f"model '{model}' not found; have {self.models}")
        variants = {v for (m, v, _) in self._heads if m == model}
        variant = variant or ("frozen" if "frozen" in variants else sorted(variants)[0])
        if variant not in variants:
            raise NotFound(f"variant '{variant}' of model '{model}' not found; have {sorted(variants)}")
        methods = self.methods(model, variant)
        on_board = variant == (BASELINE if model == BASELINE else LEADERBOARD_VARIANT)
        headline = self.headlines.get(model) if on_board else None  # (method, layer)
        method = method or (headline[0] if headline else methods[0])
        if method not in methods:
            raise NotFound(f"method '{method}' of {model} ({variant}) not found; have {methods}")
        layer = headline[1] if headline and headline[0] == method else self.best_layer(model, variant, method)
        return Selection(model, variant, method, layer, -1, self.headline)

    def best_layer(self, model: str, variant: str, method: str) -> int:
        """The layer with the highest mean IoU at the headline percentile (union, head mean),
        the leaderboard's in-sample rule; the last layer if the headline percentile was not scored."""
        key = (model, variant, method)
        return self._best_layers[key] if key in self._best_layers else max(self._heads[key])

    def resolve(self, *, model: str | None = None, variant: str | None = None,
                method: str | None = None, layer: int | None = None, head: int | None = None,
                percentile: float | None = None) -> Selection:
        """Fill the defaults of a partial selection; NotFound names any value not in the table."""
        base = self.default(model, variant, method)
        layer = base.layer if layer is None else layer
        head = -1 if head is None else head
        kind = self._heads[(base.model, base.variant, base.method)]
        if layer not in kind:
            raise NotFound(f"layer {layer} of {base.model} {base.method} not found; "
                           f"have {sorted(kind)}")
        heads = sorted(kind[layer])
        if head not in heads:
            raise NotFound(f"head {head} of {base.model} {base.method} layer {layer} not found; "
                           f"have {heads} (-1 = head mean)")
        return Selection(base.model, base.variant, base.method, layer, head,
                         self.headline if percentile is None else float(percentile))

    def sample(self, image_id: str) -> data.Sample:
        if image_id not in self.samples:
            raise NotFound(f"image '{image_id}' not found")
        return self.samples[image_id]

    def boxes(self, image_id: str) -> list[dict]:
        """The expert regions of an image: index, label, feature, relative ltwh and area (a mask
        region's bounding box, ``mask: true``: the page draws boxes, scores use the mask)."""
        sample = self.sample(image_id)
        return [{"bbox_index": i, "label": b.label, "feature": b.feature, "left": b.left,
                 "top": b.top, "width": b.width, "height": b.height, "area": b.width * b.height,
                 "mask": b.is_mask}
                for i, b in enumerate(sample.boxes)]

    def images(self, correct: str = "all", model: str | None = None,
               variant: str | None = None) -> list[dict]:
        """Every annotated image with its label, tags, regions, each model's headline union IoU
        (its default map) and whether its classifier got the image's class (None: none);
        ``correct`` right / wrong keeps the images ``model`` (default: the first) gets so."""
        headline, marks = {}, {}
        for name in self.models:
            sel = self.default(name)
            rows = self._rows("iou", self.headline, **{k: v for k, v in asdict(sel).items()
                                                       if k != "percentile"})
            headline[name] = rows.set_index("image_id")["value"]
            marks[name] = self.correct(sel.model, sel.variant)
        keep = self.image_ids
        if correct != "all":
            base = self.default(model, variant)
            sides = self.correct(base.model, base.variant)
            if not any(v is not None for v in sides.values()):
                raise NotFound(f"{base.model} ({base.variant}) has no prediction to be right or "
                               "wrong about (no classifier: a baseline, or a model without a "
                               "linear probe); filter on another model or use correct=all")
            keep = [i for i in keep if sides.get(i) is (correct == "right")]
        return [{"image_id": i, "label": self.samples[i].label,
                 "tags": list(self.samples[i].tags), "boxes": self.boxes(i),
                 "scores": {m: _number(s.get(i)) for m, s in headline.items()},
                 "correct": {m: c.get(i) for m, c in marks.items()}}
                for i in keep]

    def correct(self, model: str, variant: str) -> dict[str, bool | None]:
        """Per image, whether the classifier behind (model, variant)'s maps was right."""
        if (model, variant) not in self._correct:
            rows = self.union[(self.union["model"] == model) & (self.union["variant"] == variant)]
            first = rows.drop_duplicates("image_id").set_index("image_id")["correct"]
            self._correct[(model, variant)] = {i: None if pd.isna(v) else bool(v)
                                               for i, v in first.items()}
        return self._correct[(model, variant)]

    # -- maps and metrics ---------------------------------------------------------------

    def geometry(self, model: str) -> Geometry:
        """The preprocessing frame the model's maps (and so its masks) live in."""
        if model == BASELINE:
            return extract.BASELINE_GEOMETRY
        return self._spec(model).geometry

    def _spec(self, model: str) -> presets.ModelSpec | None:
        """The spec of a model named as in the tables (``extract.model_name``), if listed."""
        choice = next((c for c in self.params.models if extract.model_name(c) == model), None)
        if choice is not None:
            return presets.spec_for(choice)
        return presets.REGISTRY.get(model.split("-", 1)[0])  # dinov2-tiny-random: its preset

    def store(self, model: str, variant: str) -> MapStore:
        """The cache file of (model, variant): the one the build recorded in ``stores.csv``,
        else (the baselines) this code version's, else the newest there is."""
        name = f"{model}__{_STORE_VARIANT.get(variant, variant)}__"
        for path in (self._stores.get((model, variant)),
                     self.cache_dir / f"{name}{self.code_version}.h5"):
            if path is not None and (path.exists() or path.with_suffix(".shards").is_dir()):
                return MapStore(path)
        found = sorted(self.cache_dir.glob(f"{name}*.h5"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise NotFound(f"no cached maps of {model} ({variant}) in {self.cache_dir}")
        return MapStore(found[-1])

    def grid(self, sel: Selection, image_id: str) -> np.ndarray:
        """The selected map of an image on its grid, ``(h, w)`` float32."""
        self.sample(image_id)
        store = self.store(sel.model, sel.variant)
        try:
            maps = _read_image(store.path, sel.method, sel.layer, image_id)
        except KeyError:
            raise NotFound(f"no cached map {sel.method}/{sel.layer} of image '{image_id}' in "
                           f"{store.path.name}") from None
        return maps[-1 if sel.head == -1 else sel.head]

    def frame(self, model: str, image_id: str) -> tuple[float, float, float, float]:
        """The image region (relative x0, y0, x1, y1) the model's input frame shows."""
        sample = self.sample(image_id)
        return self.geometry(model).frame_in_image(sample.width, sample.height)

    def target_masks(self, model: str, image_id: str) -> np.ndarray:
        """Each box of the image as a mask in the model's frame, ``(n, R, R)``."""
        return _box_masks(self.sample(image_id), self.geometry(model), self.resolution)

    def scores(self, sel: Selection, image_id: str, bbox_index: int | None = None) -> dict:
        """All metrics of one map against one box (or the union when ``bbox_index`` is None)."""
        sample = self.sample(image_id)
        if bbox_index is not None and not 0 <= bbox_index < len(sample.boxes):
            raise NotFound(f"box {bbox_index} of image '{image_id}' not found; it has "
                           f"{len(sample.boxes)} boxes (0..{len(sample.boxes) - 1})")
        masks = self.target_masks(sel.model, image_id)
        mask = data.union_mask(masks) if bbox_index is None else masks[bbox_index]
        up = metrics.upsample(self.grid(sel, image_id)[None], self.resolution)
        box = None if bbox_index is None else sample.boxes[bbox_index]
        values = {m.name: m(up, mask[None], [sel.percentile])[0, 0] if m.thresholded
                  else m(up, mask[None])[0] for m in map(registry.METRICS.__getitem__, self.metrics)}
        return {
            "image_id": image_id,
            "bbox_index": bbox_index,
            "label": None if box is None else box.label,
            "feature": "union" if box is None else box.feature,
            **asdict(sel),
            **{name: _number(value) for name, value in values.items()},
            "mask_pixels": int(mask.sum()),
        }

    # -- the table ----------------------------------------------------------------------

    def _rows(self, metric: str, threshold: float | None, **where) -> pd.DataFrame:
        """Union rows of one metric (at one threshold for thresholded metrics)."""
        if where.get("image_id") is not None:
            self.sample(where["image_id"])
        rows = self.union[self.union["metric"] == metric]
        if registry.METRICS[metric].thresholded:
            if not any(math.isclose(threshold, t) for t in self.thresholds):
                raise NotFound(f"percentile {threshold:g} is not in the scores table; "
                               f"have {[f'{t:g}' for t in self.thresholds]}")
            rows = rows[np.isclose(rows["threshold"], threshold)]
        for column, value in where.items():
            if value is not None:
                rows = rows[rows[column] == value]
        return rows

    def layer_curves(self, metric: str, percentile: float | None, variant: str,
                     image_id: str | None = None, correct: str = "all") -> list[dict]:
        """Mean head-mean union score per (model, method, layer): the Q1 layer curves;
        ``correct`` ``right`` / ``wrong``: over the images each model's classifier gets right
        / wrong (a model with no classifier drops out)."""
        rows = self._rows(metric, percentile, variant=variant, head=-1, image_id=image_id)
        if correct != "all":
            rows = rows[rows["correct"].eq(correct == "right").fillna(False)]
        means = rows.groupby(["model", "method", "layer"])["value"].mean().reset_index()
        return [{"model": r.model, "method": r.method, "layer": int(r.layer),
                 "value": _number(r.value)} for r in means.itertuples()]

    def head_grid(self, sel: Selection, metric: str, image_id: str | None = None) -> dict:
        """Mean union score per layer x head of one (model, variant, method): the Q3 heatmap."""
        rows = self._rows(metric, sel.percentile, model=sel.model, variant=sel.variant,
                          method=sel.method, image_id=image_id)
        rows = rows[rows["head"] >= 0]
        if rows.empty:
            raise NotFound(f"{sel.model} {sel.method} has no per-head maps")
        grid = rows.pivot_table(index="layer", columns="head", values="value", aggfunc="mean")
        return {"layers": [int(x) for x in grid.index], "heads": [int(x) for x in grid.columns],
                "values": [[_number(v) for v in row] for row in grid.to_numpy()]}

    def table_names(self) -> list[str]:
        """The CSV tables of the report, by stem."""
        return sorted(p.stem for p in self.tables_dir.glob("*.csv"))

    def table(self, name: str) -> dict:
        """One CSV table of the report as columns and rows (NaN -> null)."""
        if name not in self.table_names():
            raise NotFound(f"table '{name}' not found; have {self.table_names()}")
        frame = pd.read_csv(self.tables_dir / f"{name}.csv")
        split = json.loads(frame.to_json(orient="split", index=False))  # NaN -> null
        return {"name": name, "columns": [str(c) for c in split["columns"]], "rows": split["data"]}

    def image_jpeg(self, image_id: str, max_side: int) -> bytes:
        """The upright image (EXIF orientation applied, as the boxes are) as JPEG bytes."""
        return _jpeg(self.sample(image_id).path, max_side)


def _number(value) -> float | None:
    """A JSON-safe float: NaN / None / missing -> None."""
    return None if value is None or math.isnan(float(value)) else float(value)


@functools.lru_cache(maxsize=512)
def _read_image(path: Path, method: str, layer: int, image_id: str) -> np.ndarray:
    """One image's maps; cached, as a stored map never changes (a build only adds images)."""
    store = MapStore(path)
    try:
        return store.read_image(method, layer, image_id)
    except FileNotFoundError:  # a build compacted the shards away between listing and reading
        return store.read_image(method, layer, image_id)


@functools.lru_cache(maxsize=1024)
def _box_masks(sample: data.Sample, geometry: Geometry, resolution: int) -> np.ndarray:
    masks = data.box_masks(sample, geometry, resolution)
    masks.flags.writeable = False
    return masks


@functools.lru_cache(maxsize=256)
def _jpeg(path: Path, max_side: int) -> bytes:
    image = data.load_image(path)
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()
