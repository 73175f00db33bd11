"""The real-photo study (notebook 01_photos): EfficientNet-Lite0 with its ImageNet weights on
the packaged photographs (`photo_album`): its predictions, maps of its top-1 class scored against
the predicted object beside random weights and the centre baseline, the class-discriminative
tests (`discriminative`) and the randomisation check of the real weights; tables and sentences."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from PIL import Image
from timm.data import ImageNetInfo

from .. import baselines, config, data, metrics, plots, saliency, sanity
from .. import stats as st
from ..models import LoadedModel, load_model
from . import discriminative as dt
from . import sanity as q4
from .photo_album import Photo, PhotoReport, Region, fingerprint, prepare_photos, read_photos
from .study import Study


def probabilities(model: LoadedModel, images: Sequence[Image.Image]) -> np.ndarray:
    """Softmax class probabilities ``(N, classes)`` of a classifier, one image at a time in
    one batch through the model's own preprocessing."""
    with torch.inference_mode():
        return model.score(model.preprocess(images)).softmax(dim=-1).cpu().numpy()


def in_top5(photo: Photo, category: str, probs: np.ndarray) -> bool:
    """Whether one of the category's ImageNet classes is among the five most probable of
    ``probs`` (one photo's class probabilities): the prediction is right about the box."""
    ids = next(r.imagenet for r in photo.regions if r.category == category)
    return bool(set(np.argsort(-probs)[:5].tolist()) & set(ids))


# --- the study ---------------------------------------------------------------------------
@cache
def class_name(index: int) -> str:
    """An ImageNet-1k class's first name (timm's table, offline)."""
    return ImageNetInfo().index_to_description(int(index)).split(",")[0]


@dataclass
class PhotoStudy:
    """A profile's photos section with what every step reads: the photographs in place (hashes
    re-checked), their annotations, the real-weight classifier and its random-weight twin."""

    section: config.Photos
    seed: int
    found: PhotoReport
    album: list[Photo]
    model: LoadedModel
    random_model: LoadedModel

    @classmethod
    def open(cls, study: Study) -> PhotoStudy:
        """The photos of ``study`` (already copied by the build) and its two models."""
        section = study.params.photos
        if section is None:
            raise ValueError(f"profile {study.params.profile!r} has no 'photos' section")
        found = prepare_photos(section.root, fetch=False)
        return cls(section, study.params.seed, found, read_photos(section.root),
                   load_model(section.model, weights="pretrained", size="base"),
                   load_model(section.model, weights="random", size="base",
                              seed=study.params.seed))

    @cached_property
    def images(self) -> dict[str, Image.Image]:
        return {p.file: p.image() for p in self.album}

    @property
    def files(self) -> list[str]:
        return [p.file for p in self.album]

    @cached_property
    def xrai(self) -> saliency.XraiSettings:
        return saliency.XraiSettings(**self.section.xrai.model_dump())

    @cached_property
    def probs(self) -> np.ndarray:
        """The real model's class probabilities ``(photos, 1000)``."""
        return probabilities(self.model, list(self.images.values()))

    def sentence(self) -> str:
        """How many photographs and annotations, and which sources are missing."""
        missing = "".join(f"\n- {line}" for line in self.found.missing)
        return (f"{len(self.album)} photographs, {sum(len(p.regions) for p in self.album)} "
                f"annotations ({sum(len(p.objects()) for p in self.album)} objects of an "
                "ImageNet class). " + (f"Not used on this machine:{missing}" if missing
                                       else "Every source was found."))

    def predictions(self) -> pd.DataFrame:
        return predictions(self.album, self.probs)

    def maps(self, top: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
        """``{source: {method: (photos, R, R)}}`` of each photo's top-1 class: the real
        weights, the random twin (explaining the same class) and the centre baseline."""
        images, classes = list(self.images.values()), [int(top.loc[f, "class"]) for f in self.files]
        R = self.section.resolution
        maps = {source: dt.explain(net, images, classes, methods, self.xrai, R, stage=f"photos {source}")
                for source, net, methods in (("pretrained", self.model, self.section.methods),
                                             ("random weights", self.random_model,
                                              self.section.random_methods))}
        frames = np.stack([np.asarray(self.frame(f).resize((R, R))) for f in self.files])
        maps["centre baseline"] = {
            "-": baselines.baseline_maps("centre_gaussian", frames, self.seed, self.files)}
        return maps

    def scores(self, top: pd.DataFrame, maps: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
        """`score_table` of `maps`, each model's top 5 from its own probabilities."""
        probs = {"pretrained": self.probs, "random weights": probabilities(
            self.random_model, list(self.images.values()))}
        return score_table(self.album, top, maps, probs, self.section.percentile,
                           self.section.resolution)

    def grid(self, top: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
        """`grid_test` on each composite (real weights: `composite_methods`; random: Grad-CAM),
        and why a composite was skipped (a photo not on this machine, a shared top-1 class)."""
        rows, skipped = [], []
        for number, group in enumerate(self.section.composites):
            absent = [name for name in group if name not in self.images]
            labels = {name: int(top.loc[name, "class"]) for name in group if name in self.images}
            if absent or len(set(labels.values())) < len(group):
                skipped.append(f"composite {number} ({', '.join(group)}): "
                               + (f"{', '.join(absent)} not on this machine" if absent
                                  else "two photos share a top-1 class"))
                continue
            for source, net, methods in self._nets():
                rows.append(dt.grid_test(net, self.images, labels, group, methods, self.xrai,
                                      self.section.rotate).assign(composite=number, source=source))
        grid = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
        if len(grid):
            grid["name"] = grid["class"].map(class_name)
        return grid, skipped

    def contrast(self) -> pd.DataFrame:
        """`contrast_test` on every photo with two or more objects, both models."""
        rows = []
        for index, photo in enumerate(self.album):
            labels = dt.object_classes(photo, self.probs[index])
            for source, net, methods in self._nets():
                table = dt.contrast_test(net, photo, labels, methods, self.xrai,
                                      self.section.resolution)
                if len(table):
                    rows.append(table.assign(source=source))
        if not rows:
            return pd.DataFrame()
        contrast = pd.concat(rows, ignore_index=True)
        return contrast.assign(name_a=contrast["class_a"].map(class_name),
                               name_b=contrast["class_b"].map(class_name))

    def _nets(self) -> list[tuple[str, LoadedModel, Sequence[str]]]:
        return [("pretrained", self.model, self.section.composite_methods),
                ("random weights", self.random_model, ("gradcam",))]

    def randomisation(self, cache_dir: str | Path, n_boot: int) -> Randomisation | None:
        """The randomisation test of the real weights (`sightline.sanity`) on a seeded subsample
        of the photos, every map cached under ``cache_dir``; None without ``photos.sanity``."""
        check = self.section.sanity
        if check is None:
            return None
        chosen = sanity.subsample(data.load_dataset({"kind": "coco", "root": self.section.root})
                                  .samples, check.max_images, check.seed)
        result = sanity.randomisation_test(
            self.model, chosen, cache_dir=cache_dir, dataset_id=fingerprint(self.section.root),
            name=self.section.model, variant="pretrained", methods=check.methods,
            depths=check.depths, modes=check.modes, seed=check.seed, resolution=check.resolution,
            xrai=saliency.XraiSettings(**check.xrai.model_dump()), section="photos.sanity")
        summary = sanity.summarise(result.similarities, n_boot=n_boot, seed=self.seed)
        return Randomisation(check, [s.image_id for s in chosen], summary,
                             sanity.sensitivity_flags(summary, threshold=check.threshold),
                             result.steps, [len(b) for b in self.model.module.blocks])

    # --- figures ------------------------------------------------------------------------
    def frame(self, file: str) -> Image.Image:
        """A photo as the model sees it (the squash frame at its input size)."""
        return self.model.spec.geometry.frame_image(self.images[file])

    def maps_figures(self, top: pd.DataFrame, maps: dict[str, dict[str, np.ndarray]],
                     per_figure: int = 4) -> list[plt.Figure]:
        """Each photo with its annotations and the real weights' maps, its predicted object lit,
        ``per_figure`` photos a figure (a page)."""
        methods, figures = self.section.methods, []
        for start in range(0, len(self.album), per_figure):
            album = self.album[start:start + per_figure]
            fig, axes = plt.subplots(len(album), 1 + len(methods), squeeze=False,
                                     layout="constrained", figsize=(plots.PAGE_WIDTH,
                                                                    2.2 * len(album) + 0.3))
            for row, (index, photo) in zip(axes, enumerate(album, start=start), strict=True):
                f, frame = photo.file, self.frame(photo.file)
                boxes, box = _boxes(photo, photo.regions), top.loc[f, "box"]
                chosen = [k for k, r in enumerate(photo.regions) if r.category == box]
                unscored = "" if pd.notna(box) else " (no box: not scored)"
                plots.show_image(row[0], frame, f"{f}{unscored}\n{top.loc[f, 'name']} "
                                 f"{top.loc[f, 'probability']:.2f}")
                plots.draw_boxes(row[0], boxes, *frame.size,
                                 labels=[r.category for r in photo.regions])
                for ax, method in zip(row[1:], methods, strict=True):
                    plots.overlay(ax, frame, maps["pretrained"][method][index], boxes,
                                  title=method, highlight=chosen[0] if chosen else -1)
            plots.map_scale(fig, axes[:, 1:])
            figures.append(fig)
        return figures

    def grid_figure(self, grid: pd.DataFrame, top: pd.DataFrame) -> plt.Figure:
        """The first composite of the grid test and each cell's class's Grad-CAM over it."""
        group = self.section.composites[int(grid["composite"].iloc[0])]
        picture = dt.composite([self.images[n] for n in group], self.model.spec.geometry.size)
        labels = [int(top.loc[n, "class"]) for n in group]
        cams = dt.explain(dt.at_input_size(self.model, picture.size[0]), [picture] * len(group),
                          labels, ["gradcam"], self.xrai, picture.size[0])["gradcam"]
        cells = [[(k % 2) / 2, (k // 2) / 2, (k % 2 + 1) / 2, (k // 2 + 1) / 2]
                 for k in range(len(group))]
        fig, axes = plt.subplots(2, 1 + len(group) // 2, figsize=(plots.PAGE_WIDTH, 5.2),
                                 layout="constrained")
        plots.show_image(axes[0, 0], picture, "composite")
        axes[1, 0].set_axis_off()
        for k, ax in enumerate(np.delete(axes.ravel(), [0, axes.shape[1]])):
            share = dt.grid_pointing_game(cams[k:k + 1], 2, [k])[0]
            plots.overlay(ax, picture, cams[k], np.array(cells), highlight=k,
                          title=f"Grad-CAM: {class_name(labels[k])}\n{share:.0%} in its cell")
        plots.map_scale(fig, axes)
        return fig

    def objects_figure(self, file: str) -> plt.Figure:
        """Grad-CAM of each annotated object's class on one photo, with its mass in its box."""
        index, photo = self.files.index(file), self.album[self.files.index(file)]
        labels = dt.object_classes(photo, self.probs[index])
        names, R = list(labels), self.section.resolution
        cams = dt.explain(self.model, [self.images[file]] * len(names),
                          [labels[n] for n in names], ["gradcam"], self.xrai, R)["gradcam"]
        objects = [r for r in photo.regions if r.imagenet]
        fig, axes = plt.subplots(1, len(names), figsize=(plots.PAGE_WIDTH, 3.0), squeeze=False,
                                 layout="constrained")
        for k, name in enumerate(names):
            mass = float((cams[k] * photo.union(name, R)).sum() / cams[k].sum())
            plots.overlay(axes[0, k], self.frame(file), cams[k], _boxes(photo, objects),
                          highlight=[r.category for r in objects].index(name),
                          title=f"{class_name(labels[name])}\n{mass:.0%} in the {name} box")
        plots.map_scale(fig, axes)
        return fig

    def cascade_figure(self, result: Randomisation) -> plt.Figure:
        """One photo through the cascade: each method's map on the real model and after each
        step (read from the steps' stores)."""
        first = result.photos[0]
        return q4.cascade_figure(result.steps, [(m, m, 0) for m in result.check.methods], first,
                                 self.frame(first), f"{first}: cascade →")


def _boxes(photo: Photo, regions: Sequence[Region]) -> np.ndarray:
    """Relative (x0, y0, x1, y1) boxes of regions, for drawing."""
    return np.array([[r.bbox[0] / photo.width, r.bbox[1] / photo.height,
                      (r.bbox[0] + r.bbox[2]) / photo.width,
                      (r.bbox[1] + r.bbox[3]) / photo.height] for r in regions])


# --- predictions and scores --------------------------------------------------------------
def predictions(album: Sequence[Photo], probs: np.ndarray) -> pd.DataFrame:
    """Top-5 ImageNet classes per photo from its class probabilities; ``box``: the annotated
    object whose category holds the top-1 class (None: none of the photo's objects)."""
    top5 = np.argsort(-probs, axis=1)[:, :5]
    return pd.DataFrame([
        {"photo": p.file, "rank": r + 1, "class": int(c), "name": class_name(c),
         "probability": float(probs[i, c]), "box": p.category_of(int(c)) if r == 0 else None}
        for i, p in enumerate(album) for r, c in enumerate(top5[i])])


def top1(predictions: pd.DataFrame) -> pd.DataFrame:
    """The top-1 rows of `predictions`, indexed by photo."""
    return predictions[predictions["rank"] == 1].set_index("photo")


def predictions_view(predictions: pd.DataFrame) -> pd.DataFrame:
    """One line per photo: its top-1 class, the box it names and the next four."""
    top = top1(predictions)
    return pd.DataFrame({
        "top-1": [f"{r['name']} ({r['class']}) {r['probability']:.2f}" for _, r in top.iterrows()],
        "box": top["box"].fillna("—"),
        "top-2..5": [", ".join(f"{n} {p:.2f}" for n, p in zip(g["name"][1:], g["probability"][1:],
                                                              strict=True))
                     for _, g in predictions.groupby("photo", sort=False)],
    }, index=top.index)


def predictions_sentence(predictions: pd.DataFrame) -> str:
    """On how many photos the top-1 class names an annotated object, and which it does not."""
    top = top1(predictions)
    unmatched = top.index[top["box"].isna()].tolist()
    return (f"The top-1 class names an annotated object on **{int(top['box'].notna().sum())} of "
            f"{len(top)}** photos. No box for the top-1 class: "
            + (", ".join(f"`{f}` ({top.loc[f, 'name']})" for f in unmatched) or "none")
            + ". Those photos are left out of the scores below (there is no predicted object "
              "to find).")


def score_table(album: Sequence[Photo], top: pd.DataFrame, maps: dict[str, dict[str, np.ndarray]],
                probs: dict[str, np.ndarray], percentile: float, resolution: int) -> pd.DataFrame:
    """One row per (photo whose top-1 class has a box, source, method): IoU of the top (100 - p) %
    pixels, coverage (mass inside) and the pointing game against the union of that category's
    annotations, its area, and (a source in ``probs``) ``correct``: one of the box's ImageNet
    classes is among that source's top 5."""
    scored = [i for i, p in enumerate(album) if pd.notna(top.loc[p.file, "box"])]
    objects = [top.loc[album[i].file, "box"] for i in scored]
    masks = np.stack([album[i].union(o, resolution) for i, o in zip(scored, objects, strict=True)])
    keys = pd.DataFrame({"photo": [album[i].file for i in scored], "object": objects})
    rows = []
    for source, by_method in maps.items():
        correct = pd.array([in_top5(album[i], o, probs[source][i]) if source in probs else None
                            for i, o in zip(scored, objects, strict=True)], dtype="boolean")
        rows += [keys.assign(source=source, method=method, **{
            f"iou@{percentile:g}": metrics.iou(values[scored], masks, [percentile])[:, 0],
            "coverage": metrics.coverage(values[scored], masks),
            "pointing": metrics.pointing_game(values[scored], masks)},
            object_area=masks.mean(axis=(1, 2)), correct=correct)
            for method, values in by_method.items()]
    return pd.concat(rows, ignore_index=True)


def _iou(scores: pd.DataFrame) -> str:
    return next(c for c in scores.columns if c.startswith("iou@"))


def summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean IoU, coverage and pointing game per (source, method), rounded, with the photos."""
    return (scores.groupby(["source", "method"], sort=False)[[_iou(scores), "coverage", "pointing"]]
            .mean().round(3).assign(photos=scores["photo"].nunique()))


def scores_sentence(summary: pd.DataFrame, scores: pd.DataFrame) -> str:
    """The `summary`'s coverage and pointing game in words, beside the objects' mean area."""
    area = scores.drop_duplicates("photo")["object_area"].mean()
    coverage = summary["coverage"]

    def listed(source: str, template: str) -> str:
        return " and ".join(template.format(v=v, m=m)
                            for m, v in coverage.xs(source, level="source").items())

    return (f"Over the {scores['photo'].nunique()} photos whose top-1 class has a box (the box "
            f"covers {area:.0%} of the frame on average), the real weights put "
            + listed("pretrained", "**{v:.0%}** of {m}'s mass")
            + " inside the predicted object; with random weights "
            + listed("random weights", "{v:.0%} ({m})")
            + f"; the centre baseline {coverage.loc[('centre baseline', '-')]:.0%}. "
            + "Pointing game (maximum inside the box): "
            + ", ".join(f"{s} {m if m != '-' else ''} {v:.0%}".replace("  ", " ")
                        for (s, m), v in summary["pointing"].items()) + ".")


VERSUS = {"n": "n", "map": "mean_a", "centre baseline": "mean_b", "delta": "mean_diff",
          "ci_low": "ci_low", "ci_high": "ci_high", "p_wilcoxon": "p_wilcoxon"}


def versus_centre(scores: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Each map against the centre baseline on the same photos, per IoU and coverage:
    `stats.paired_comparison` (map − baseline, bootstrap CI over photos, Wilcoxon p)."""
    rows = []
    centre = scores[scores["source"] == "centre baseline"].set_index("photo")
    for (source, method), block in scores[scores["source"] != "centre baseline"].groupby(
            ["source", "method"], sort=False):
        block = block.set_index("photo")
        for metric in (_iou(scores), "coverage"):
            r = st.paired_comparison(block[metric], centre.loc[block.index, metric], seed=seed)
            rows.append({"source": source, "method": method, "metric": metric,
                         **{name: r[field] for name, field in VERSUS.items()}})
    return pd.DataFrame(rows)


def versus_sentence(versus: pd.DataFrame, photos: int) -> str:
    """Which maps of the real weights beat the centre baseline (Wilcoxon p < 0.05 and a 95 %
    CI above 0), with their differences, and which do not."""
    real = versus[versus["source"] == "pretrained"]
    clear = real[(real["ci_low"] > 0) & (real["p_wilcoxon"] < 0.05)]
    if not len(clear):
        return (f"On these {photos} photos, no map of the real weights beats the centre "
                "baseline (Wilcoxon p < 0.05 with a 95 % CI above 0) on IoU or coverage; no "
                "equivalence was tested, so this says only that no difference was shown.")
    rest = real.drop(clear.index)
    return (f"On these {photos} photos, the real weights beat the centre baseline (Wilcoxon "
            "p < 0.05, 95 % CI above 0) for "
            + ", ".join(f"{r.method} {r.metric} (Δ {r.delta:+.3f} [{r.ci_low:+.3f}, "
                        f"{r.ci_high:+.3f}])" for r in clear.itertuples())
            + (", not for " + ", ".join(f"{r.method} {r.metric} (Δ {r.delta:+.3f})"
                                        for r in rest.itertuples()) if len(rest) else "") + ".")


# --- class-discriminative tests: summaries and sentences ---------------------------------
DISCRIMINATIVE = ["test", "source", "method", "tests", "own_region_mass", "min_own_region_mass",
                  "other_class_mass", "passed"]


def discriminative(grid: pd.DataFrame, contrast: pd.DataFrame) -> pd.DataFrame:
    """Both tests per (source, method): ``tests`` (cells / pairs), ``own_region_mass`` (mean
    share of a class's map in its own cell / object; a pair: the mean of A's and B's), its
    minimum, ``other_class_mass`` (a cell's chance share / the other class's map in the same
    object) and ``passed`` (cells above chance / pairs discriminative both ways)."""
    parts = []
    if len(grid):
        parts.append(grid.assign(test="grid pointing game (other = chance)",
                                 own=grid["mass_in_cell"], least=grid["mass_in_cell"],
                                 other=grid["chance"],
                                 passed=grid["mass_in_cell"] > grid["chance"]))
    if len(contrast):
        parts.append(contrast.assign(
            test="objects A vs B", own=(contrast["a_mass_in_a"] + contrast["b_mass_in_b"]) / 2,
            least=contrast[["a_mass_in_a", "b_mass_in_b"]].min(axis=1),
            other=(contrast["b_mass_in_a"] + contrast["a_mass_in_b"]) / 2,
            passed=contrast["discriminative"]))
    if not parts:
        return pd.DataFrame()
    return (pd.concat(parts, ignore_index=True).groupby(["test", "source", "method"], sort=False)
            .agg(tests=("own", "size"), own_region_mass=("own", "mean"),
                 min_own_region_mass=("least", "min"), other_class_mass=("other", "mean"),
                 passed=("passed", "mean")).reset_index()[DISCRIMINATIVE])


def grid_per_photo(grid: pd.DataFrame) -> pd.DataFrame:
    """The real weights' mean and least mass in the own cell, per (method, photo)."""
    real = grid[grid["source"] == "pretrained"]
    return real.groupby(["method", "photo", "name"])["mass_in_cell"].agg(["mean", "min"])


def grid_sentence(grid: pd.DataFrame, rotate: bool) -> str:
    """The grid pointing game's range per method (real weights), the random twin's mean and
    the arrangement."""
    text = [f"{method}: {block['mass_in_cell'].min():.0%}–{block['mass_in_cell'].max():.0%} of "
            f"each class's mass in its own cell ({len(block)} cells, mean "
            f"{block['mass_in_cell'].mean():.0%})"
            for method, block in grid[grid["source"] == "pretrained"].groupby("method")]
    rand = grid[grid["source"] == "random weights"]["mass_in_cell"]
    arrangement = ("each photo once in every cell (`rotate`)" if rotate else
                   "one arrangement (`rotate` off: each photo stays in one cell, so a "
                   "position effect is not separated from the class)")
    return ("Grid pointing game, real weights — " + "; ".join(text)
            + f". Random weights (Grad-CAM): mean {rand.mean():.0%}; chance 25 %. "
            f"{grid['composite'].nunique()} composite(s), {arrangement}.")


def contrast_view(contrast: pd.DataFrame) -> pd.DataFrame:
    """The real weights' object pairs: each class's map mass in each object."""
    return contrast[contrast["source"] == "pretrained"][[
        "photo", "name_a", "name_b", "method", "a_mass_in_a", "b_mass_in_a", "b_mass_in_b",
        "a_mass_in_b", "discriminative"]]


def contrast_sentence(contrast: pd.DataFrame) -> str:
    """How many object pairs are discriminative both ways, real and random weights."""
    real = contrast[contrast["source"] == "pretrained"]
    rand = contrast[contrast["source"] == "random weights"]
    busiest = real["photo"].value_counts()
    return (f"Objects A vs B, real weights ({', '.join(sorted(set(real['method'])))}): "
            f"{int(real['discriminative'].sum())} of {len(real)} pairs (from {len(busiest)} "
            f"photos; {busiest.iloc[0]} of them from {busiest.index[0]}, so not independent) "
            "are class-discriminative both ways — each class's map holds more of its own object "
            f"than the other class's map does, by {dt.TIE:.0%} of its mass or more (closer is a "
            "tie; no test); random weights: "
            f"{int(rand['discriminative'].sum())} of {len(rand)}.")


# --- the randomisation test of the real weights ------------------------------------------
@dataclass
class Randomisation:
    """The randomisation test's tables (`sightline.sanity`) and what its sentences say: the
    photos it read and the CNN's blocks per stage."""

    check: config.PhotosSanity
    photos: list[str]
    summary: pd.DataFrame
    flags: pd.DataFrame
    steps: pd.DataFrame
    stages: list[int]

    def sentence(self) -> str:
        """Which photos, methods and steps ran, and how many map sets this run extracted."""
        order = self.steps[self.steps["mode"] == "cascade"].sort_values("depth")
        return (
            f"{len(self.photos)} photos ({', '.join(self.photos)}), methods "
            f"{', '.join(self.check.methods)}, seed {self.check.seed}; stages of "
            f"{', '.join(str(n) for n in self.stages)} blocks (`b0` ... `b{len(self.stages) - 1}`). "
            "Cascade steps, each re-initialising from the head down to the unit named (the "
            "last: the whole network): " + " → ".join(order["unit"])
            + f"; {int((self.steps['extracted'] > 0).sum())} of {len(self.steps)} map sets (the "
            "real model's and each step's) extracted in this run (the others from the cache)."
            + (f" With {len(self.photos)} photos the intervals are wide: the verdicts are "
               "indicative." if len(self.photos) < 10 else ""))

    @property
    def cascade(self) -> pd.DataFrame:
        """The cascade's Spearman and SSIM rows of the summary."""
        return self.summary[(self.summary["mode"] == "cascade")
                            & self.summary["metric"].isin(["spearman", "ssim"])]

    def verdicts(self) -> pd.DataFrame:
        """Each method's flag row with its verdict in words."""
        verdict = np.where(self.flags["not_model_sensitive"], "fails: not model-sensitive",
                           "passes: model-sensitive")
        return self.flags.assign(verdict=verdict)[
            ["model", "method", "metric", "mean", "ci_low", "ci_high", "n", "verdict"]]

    def verdict_sentence(self) -> str:
        """Each method's mean Spearman after the whole network (and the head alone) and its
        verdict against ``photos.sanity.threshold``."""
        cascade = self.cascade
        head = cascade[(cascade["depth"] == 1) & (cascade["metric"] == "spearman")].set_index(
            "method")["mean"]
        threshold = self.check.threshold
        return " ".join(
            f"**{r.method}**: mean Spearman {r.mean:.2f} (95 % CI {r.ci_low:.2f} to "
            f"{r.ci_high:.2f}, {r.n} photos) with the real model's map once the whole network "
            "is re-initialised"
            + (f", {head[r.method]:.2f} after the head alone" if r.method in head.index else "")
            + (f": it **fails** the check (above {threshold:g}: the map stays close to what the "
               "real weights give, so it is not model-sensitive)." if r.not_model_sensitive
               else f": it **passes** (at most {threshold:g}: the map changes with the weights).")
            for r in self.flags.itertuples())
