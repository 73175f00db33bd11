"""The Shared Interest replication: Grad-CAM and XRAI against human-attention masks.

"Shared Interest...Sometimes" (Morrison, Mehra & Perer, CVPR Workshops 2023) scores the
maps of Swin-T, CaiT-S, ResNet-101 and EfficientNet-B6 on 100 images of the ML
Interpretability Benchmark with the Shared Interest metrics (Boggust et al., CHI 2022):
IoU, ground-truth coverage (GTC) and saliency coverage (SC) of binarised maps. Here: the SI
notebook's study (`Replication`), its tables, tests, sentences and figures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from .. import cache, config, data, extract, metrics, models, plots, saliency, scoring
from .. import stats as st
from ..config import SIModelChoice
from .study import Study

TARGET = "human"  # the `target` column of the score rows: the binarised human mask
# The paper's Table 1: mean IoU / SC / GTC per technique x model (100 images).
PAPER_TABLE1 = pd.DataFrame([
    ("gradcam", "swin_t", 0.264, 0.511, 0.347), ("gradcam", "cait_s", 0.101, 0.273, 0.142),
    ("gradcam", "resnet101", 0.216, 0.466, 0.287), ("gradcam", "efficientnet_b6", 0.189, 0.411, 0.264),
    ("xrai", "swin_t", 0.079, 0.255, 0.109), ("xrai", "cait_s", 0.082, 0.271, 0.103),
    ("xrai", "resnet101", 0.197, 0.435, 0.253), ("xrai", "efficientnet_b6", 0.221, 0.463, 0.284),
], columns=["method", "key", "iou", "sc", "gtc"])
# The paper's headline: mean IoU over all models, Grad-CAM vs XRAI, t-test p < 0.001.
PAPER_HEADLINE = {"gradcam": 0.192, "xrai": 0.145, "p": "< 0.001"}
CORRECT_CASES = ("human aligned", "sufficient subset", "sufficient context", "context dependent")
INCORRECT_CASES = ("confuser", "insufficient subset", "context confusion", "distractor")


def binarize(maps: np.ndarray, rule: str, threshold: float) -> np.ndarray:
    """``std`` (keep >= mean + threshold std) or ``percentile`` (keep >= the threshold-th
    percentile), both after per-map min-max, as the Shared Interest code does."""
    rules = {"std": metrics.binarize_std, "percentile": metrics.binarize_percentile}
    if rule not in rules:
        raise ValueError(f"binarisation rule must be 'std' or 'percentile', got {rule!r}")
    return rules[rule](maps, threshold)


def score(maps: np.ndarray, masks: np.ndarray, samples: Sequence[data.AttentionSample], *,
          model: str, variant: str, method: str, layer: int, rule: str, mask_rule: str,
          mask_threshold: float, thresholds: Sequence[float], resolution: int) -> pd.DataFrame:
    """Shared Interest IoU / GTC / SC of ``(N, 1, h, w)`` maps at each saliency threshold, plus
    the continuous SC (``coverage``), as tidy rows (``feature``: the image's subject), against
    the human mask binarised by ``mask_rule``; a flat map or an empty mask scores NaN."""
    up = metrics.upsample(maps[:, 0], resolution)
    truth = binarize(masks, mask_rule, mask_threshold)
    undefined = (np.ptp(up.reshape(len(up), -1), axis=1) == 0) | ~truth.any(axis=(1, 2))
    frames = [_rows(samples, name, threshold, np.where(undefined, np.nan, values))
              for threshold in thresholds
              for name, values in metrics.shared_interest_scores(binarize(up, rule, threshold),
                                                                 truth).items()]
    coverage = np.where(undefined, np.nan, metrics.coverage(up, truth))
    frames.append(_rows(samples, "coverage", np.nan, coverage))
    return scoring.tidy(pd.concat(frames, ignore_index=True).assign(
        model=model, variant=variant, method=method, layer=layer, head=-1, target=TARGET))


def _rows(samples, metric: str, threshold: float, values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"image_id": [s.image_id for s in samples],
                         "feature": [s.subject for s in samples], "metric": metric,
                         "threshold": threshold, "value": np.asarray(values, np.float64)})


def benchmark_classes(loaded: models.LoadedModel, subjects: Mapping[str, tuple[int, ...]]
                      ) -> Callable[[Sequence[data.AttentionSample], torch.Tensor], list[int]]:
    """Explain the benchmark's class: the subject's ImageNet class the model scores
    highest (the predicted class where the subject maps to none, e.g. ``tree``)."""

    def classes(batch: Sequence[data.AttentionSample], pixels: torch.Tensor) -> list[int]:
        with torch.inference_mode():
            logits = loaded.score(pixels)
        allowed = [list(subjects.get(sample.subject, ())) for sample in batch]
        return [ids[int(row[ids].argmax())] if ids else int(row.argmax())
                for ids, row in zip(allowed, logits, strict=True)]

    return classes


def extract_study(samples: Sequence[data.AttentionSample], choice: SIModelChoice,
                  store: cache.MapStore, subjects: Mapping[str, tuple[int, ...]], *,
                  methods: Sequence[str], target: str, xrai: saliency.XraiSettings,
                  batch_size: int, device: str, seed: int) -> pd.DataFrame:
    """Fill one model's maps into ``store`` and return its predictions per image (top-1
    ImageNet class, ``image_id`` / ``predicted``), recorded in the store by the forward pass
    of the maps (`extract.predicted_classes`), so a warm cache loads no model at all."""
    device = extract.resolve_device(device)
    if {s.image_id for s in samples} - store.image_ids():
        loaded = models.load_choice(choice, seed=seed, device=device)
        extract.extract_model(
            samples, choice, store, batch_size=batch_size, device=device, seed=seed,
            loaded=loaded, methods=methods, xrai=xrai,
            target_classes=benchmark_classes(loaded, subjects) if target == "benchmark" else None)
    predicted = extract.predicted_classes(
        store, samples, lambda: models.load_choice(choice, seed=seed, device=device),
        batch_size=batch_size)
    ids = [s.image_id for s in samples]
    return pd.DataFrame({"image_id": ids, "predicted": [predicted[i] for i in ids]})


def method_cost(choice: SIModelChoice, store: cache.MapStore, sample: data.AttentionSample,
                methods: Sequence[str], xrai: saliency.XraiSettings, *, seed: int = 0,
                device: str = "auto") -> dict[str, float]:
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


def correctness(predictions: pd.DataFrame, samples: Sequence[data.AttentionSample],
                subjects: Mapping[str, tuple[int, ...]]) -> pd.Series:
    """1.0 when the predicted class is one of the subject's ImageNet classes, 0.0 when not,
    NaN when the subject maps to none."""
    subject = {s.image_id: s.subject for s in samples}
    return pd.Series([float(p in subjects[subject[i]]) if subjects.get(subject[i]) else np.nan
                      for i, p in zip(predictions["image_id"], predictions["predicted"],
                                      strict=True)], index=predictions.index)


def cases(iou: np.ndarray, gtc: np.ndarray, sc: np.ndarray, correct: np.ndarray, *,
          iou_high: float = 0.5, coverage_high: float = 0.5) -> np.ndarray:
    """Shared Interest's case for each (image, map): by IoU, then the SC / GTC quadrant, named for
    correct (or unknown) and incorrect predictions. Human aligned / confuser: IoU >= ``iou_high``
    or both coverages high. Sufficient / insufficient subset: SC high, GTC low (the saliency lies
    inside the human region but covers only part of it). Sufficient context / context confusion:
    GTC high, SC low (the human region and more). Context dependent / distractor: both low (mostly
    elsewhere). NaN scores give no case (None)."""
    iou, gtc, sc, correct = (np.asarray(a, np.float64) for a in (iou, gtc, sc, correct))
    high_sc, high_gtc = sc >= coverage_high, gtc >= coverage_high
    quadrant = np.select([(iou >= iou_high) | (high_sc & high_gtc), high_sc, high_gtc],
                         [0, 1, 2], default=3)
    names = np.where(correct == 0, np.array(INCORRECT_CASES, object)[quadrant],
                     np.array(CORRECT_CASES, object)[quadrant])
    return np.where(np.isnan(iou) | np.isnan(gtc) | np.isnan(sc), None, names)


# --- the SI report: a profile's replication, its tables, tests, sentences and figures ---------
@dataclass
class Replication:
    """One profile's Shared Interest study: benchmark, models, stores, masks the analyses read."""

    section: config.SharedInterest
    extraction: config.Extraction
    seed: int = 0

    @classmethod
    def of(cls, study: Study) -> Replication:
        return cls(study.params.shared_interest, study.params.extraction, study.params.seed)

    @cached_property
    def bench(self) -> data.HumanAttention:
        return data.load_human_attention(self.section.dataset.root,
                                         strict=self.section.dataset.strict)

    @property
    def samples(self) -> list[data.AttentionSample]:
        return self.bench.samples

    @cached_property
    def names(self) -> dict[str, str]:
        """Model key -> its name in every table."""
        return {c.key: extract.model_name(c) for c in self.section.models}

    @cached_property
    def geometries(self) -> dict[str, object]:
        """Model key -> its input geometry."""
        return {c.key: models.spec_for(c).geometry for c in self.section.models}

    def _rule(self, name: str) -> tuple[str, float]:
        rules = self.section.binarize
        return name, {"std": rules.num_std, "percentile": rules.percentile}[name]

    @property
    def rule(self) -> tuple[str, float]:
        """The saliency's binarisation rule and its headline threshold."""
        return self._rule(self.section.binarize.saliency)

    @property
    def mask_rule(self) -> tuple[str, float]:
        """The human mask's binarisation rule and threshold."""
        return self._rule(self.section.binarize.mask)

    @property
    def thresholds(self) -> list[float]:
        """The saliency thresholds scored: the sweep and the headline."""
        return sorted({*self.section.binarize.sweep, self.rule[1]})

    @property
    def xrai(self) -> saliency.XraiSettings:
        return saliency.XraiSettings(**self.section.xrai.model_dump())

    def description(self) -> str:
        """Images, subjects, what the reader skipped, the models and the binarisation."""
        subjects = sorted({s.subject for s in self.samples})
        skipped = {k: v for k, v in self.bench.report["counts"].items() if k != "samples" and v}
        (rule, headline), (mask_rule, mask_threshold) = self.rule, self.mask_rule
        return (f"{len(self.samples)} images of {len(subjects)} subjects ({', '.join(subjects)});"
                f" skipped: {skipped or 'none'}. Models: {', '.join(self.names.values())}. "
                f"Saliency binarised by `{rule}` at {headline} (sweep {self.thresholds}), human "
                f"mask by `{mask_rule}` at {mask_threshold}.")

    @cached_property
    def stores(self) -> dict[str, cache.MapStore]:
        """Model key -> its map store (one per model and XRAI setting)."""
        dataset_id = data.human_attention_fingerprint(self.section.dataset.root)
        variant = f"si-{self.section.target}-xrai{self.xrai.steps}-{self.xrai.algorithm}"
        return {key: extract.store_for(self.extraction.cache_dir, dataset_id, name, variant)
                for key, name in self.names.items()}

    def predictions(self) -> pd.DataFrame:
        """Fill every model's maps; its predictions per image (``si_predictions.csv``), whether
        ``correct`` (one of the subject's classes) and whether ``all_agree`` (every model's)."""
        found = pd.concat([extract_study(
            self.samples, choice, self.stores[choice.key], self.bench.subjects,
            methods=self.section.methods, target=self.section.target, xrai=self.xrai,
            batch_size=self.extraction.batch_size, device=self.extraction.device, seed=self.seed,
        ).assign(model=self.names[choice.key], key=choice.key) for choice in self.section.models],
            ignore_index=True)
        found["correct"] = correctness(found, self.samples, self.bench.subjects)
        per_image = found.pivot(index="image_id", columns="key", values="predicted")
        return found.assign(all_agree=found["image_id"].isin(
            per_image.index[per_image.nunique(axis=1) == 1]))

    def timing(self) -> pd.DataFrame:
        """Seconds per image of each method and model (`method_cost`, on the first image)."""
        seconds = {self.names[c.key]: method_cost(c, self.stores[c.key], self.samples[0],
                                                  self.section.methods, self.xrai, seed=self.seed,
                                                  device=self.extraction.device)
                   for c in self.section.models}
        return (pd.DataFrame.from_dict(seconds, orient="index").add_suffix(" s/image")
                .rename_axis("model"))

    @cached_property
    def masks(self) -> dict[str, np.ndarray]:
        """Model key -> the continuous human masks in [0, 1] in its input frame, ``(N, R, R)``."""
        by_geometry = {g: np.stack([data.human_mask(s, g, self.section.resolution)
                                    for s in self.samples])
                       for g in dict.fromkeys(self.geometries.values())}
        return {key: by_geometry[geometry] for key, geometry in self.geometries.items()}

    def scores(self, predictions: pd.DataFrame) -> pd.DataFrame:
        """Every map scored (`score`, ``si_scores.parquet``), with ``correct`` marked."""
        (rule, _), (mask_rule, mask_threshold) = self.rule, self.mask_rule
        correct_of = {k: rows.set_index("image_id")["correct"]
                      for k, rows in predictions.groupby("key")}
        ids = [s.image_id for s in self.samples]
        return pd.concat([scoring.mark_correct(score(
            self.stores[key].read(method, 0, ids)[1], self.masks[key], self.samples, model=name,
            variant="frozen", method=method, layer=0, rule=rule, mask_rule=mask_rule,
            mask_threshold=mask_threshold, thresholds=self.thresholds,
            resolution=self.section.resolution), correct_of[key])
            for key, name in self.names.items() for method in self.section.methods],
            ignore_index=True)

    def headline(self, scores: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
        """Per (image, model, method) its scores at the headline threshold, key and prediction."""
        wide = (scores[np.isclose(scores["threshold"], self.rule[1])]
                .pivot_table(index=["image_id", "model", "method"], columns="metric",
                             values="value", observed=True).reset_index()
                .astype({"model": str, "method": str}))
        wide["key"] = wide["model"].map({name: key for key, name in self.names.items()})
        return wide.merge(predictions[["image_id", "key", "correct", "all_agree"]],
                          on=["image_id", "key"])

    def with_cases(self, wide: pd.DataFrame) -> pd.DataFrame:
        """The headline rows with their Shared Interest ``case``."""
        return wide.assign(case=cases(wide["iou"], wide["gtc"], wide["sc"], wide["correct"],
                                      iou_high=self.section.cases.iou_high,
                                      coverage_high=self.section.cases.coverage_high))

    def show(self, ax: plt.Axes, key: str, image_id: str, method: str, title: str) -> None:
        """One map over its image in the model's frame, the binarised human mask outlined."""
        index = [s.image_id for s in self.samples].index(image_id)
        frame = self.geometries[key].frame_image(data.load_image(self.samples[index].path))
        truth = binarize(self.masks[key][index][None], *self.mask_rule)[0]
        maps = self.stores[key].read(method, 0, [image_id])[1]
        plots.overlay(ax, frame, maps[0, 0], np.zeros((0, 4)), title)
        r = self.section.resolution
        ax.contour(np.linspace(0, frame.size[0], r), np.linspace(0, frame.size[1], r), truth,
                   levels=[0.5], colors="white", linewidths=1)


def accuracy(predictions: pd.DataFrame, images: int) -> pd.DataFrame:
    """Share of correct predictions per model."""
    return (predictions.groupby("model")[["correct"]].mean()
            .rename(columns={"correct": "accuracy"}).assign(images=images))


def agreement_note(predictions: pd.DataFrame) -> str:
    """On how many images all models predict the same class (the agreement subset)."""
    agree = predictions.loc[predictions["all_agree"], "image_id"].nunique()
    images = predictions["image_id"].nunique()
    return (f"All {predictions['key'].nunique()} models predict the same class on **{agree}** of "
            f"{images} images (the agreement subset below"
            f"{'' if agree else ': empty here, so not tested'}).")


def missing_note(scores: pd.DataFrame, wide: pd.DataFrame) -> str:
    """How many maps lack a score at the headline threshold, per metric."""
    lacking = {m: int(wide[m].isna().sum()) for m in ("iou", "sc", "gtc") if m in wide}
    return (f"{len(scores):,} score rows; {int(wide[list(lacking)].isna().any(axis=1).sum())} of "
            f"{len(wide)} maps lack a score at the headline threshold ("
            + ", ".join(f"{m}: {n}" for m, n in lacking.items())
            + "; a flat map, an empty mask, or SC of a map with no salient pixels). Table 1's "
            "means are over the maps that have the score.")


def table1(wide: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """Mean IoU / SC / GTC per method and model beside the paper's Table 1, and differences."""
    ours = (wide.groupby(["method", "key"])[["iou", "sc", "gtc"]].mean().reset_index()
            .merge(PAPER_TABLE1, on=["method", "key"], suffixes=("", "_paper"), how="left"))
    for metric in ("iou", "sc", "gtc"):
        ours[f"{metric}_diff"] = ours[metric] - ours[f"{metric}_paper"]
    ours.insert(2, "model", ours["key"].map(names))
    ours.insert(3, "images", wide.groupby(["method", "key"])["iou"].count().values)
    return ours


def table1_by_correct(wide: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """Table 1's means on each model's right and wrong images; Mann-Whitney U of their IoU."""
    rows = []
    for (method, key), own in wide.groupby(["method", "key"]):
        right, wrong = own[own["correct"] == 1], own[own["correct"] == 0]
        test = st.split_comparison(right["iou"], wrong["iou"])
        rows.append({"method": method, "model": names[key], "n_right": test["n_right"],
                     "n_wrong": test["n_wrong"], "iou_right": test["mean_right"],
                     "iou_wrong": test["mean_wrong"],
                     **{f"{m}_{side}": part[m].mean() for m in ("sc", "gtc")
                        for side, part in (("right", right), ("wrong", wrong))},
                     "p_mwu": test["p_mwu"], "note": test["note"]})
    return pd.DataFrame(rows)


def _tests_on(frame: pd.DataFrame, subset: str) -> list[dict]:
    """IoU tests of technique (t), model per technique (ANOVA, Tukey) and both (two-way)."""
    rows = []
    pairs = frame.pivot_table(index=["image_id", "model"], columns="method", values="iou",
                              observed=True)
    if {"gradcam", "xrai"} <= set(pairs.columns):
        pairs = pairs[["gradcam", "xrai"]].dropna()
        if len(pairs) >= 3:
            t = st.paired_comparison(pairs["gradcam"], pairs["xrai"])
            rows.append({"test": "paired t", "term": "gradcam - xrai", "statistic": t["t"],
                         "dof": f"{t['n'] - 1:d}", "p": t["p_t"], "effect": "cohen d_z",
                         "effect_size": t["d_z"], "n": t["n"], "mean_a": t["mean_a"],
                         "mean_b": t["mean_b"]})
            w = st.ttest_ind(frame.loc[frame["method"] == "gradcam", "iou"],
                             frame.loc[frame["method"] == "xrai", "iou"])
            rows.append({"test": "Welch t", "term": "gradcam - xrai", "statistic": w["t"],
                         "dof": f"{w['dof']:.1f}", "p": w["p"], "effect": "cohen d (pooled sd)",
                         "effect_size": w["cohen_d"], "n": w["n"], "mean_a": w["mean_a"],
                         "mean_b": w["mean_b"]})
    for method, group in frame.groupby("method"):
        if group["model"].nunique() < 2 or group.groupby("model")["iou"].count().min() < 2:
            continue
        anova, tukey = st.anova_tukey(group, "iou", "model")
        a = anova.iloc[0]
        rows.append({"test": "one-way ANOVA", "term": f"model | {method}", "statistic": a["F"],
                     "dof": f"{a['ddof1']:g}, {a['ddof2']:g}", "p": a["p_unc"],
                     "effect": "partial eta2", "effect_size": a["np2"], "n": a["n"]})
        rows += [{"test": "Tukey HSD", "term": f"{t.A} - {t.B} | {method}",
                  "statistic": t.T, "p": t.p_tukey, "effect": "hedges g", "effect_size": t.hedges,
                  "n": t.n, "mean_a": t.mean_A, "mean_b": t.mean_B}  # n: the two models' maps
                 for t in tukey.itertuples()]
    if frame["method"].nunique() == 2 and frame["model"].nunique() >= 2 and len(frame) > 8:
        two_way = st.anova_two_way(frame, "iou", ["method", "model"])
        rows += [{"test": "two-way ANOVA", "term": r.Source, "statistic": r.F, "dof": f"{r.DF:g}",
                  "p": r.p_unc, "effect": "partial eta2", "effect_size": r.np2, "n": r.n}
                 for r in two_way[two_way["Source"] != "Residual"].itertuples()]
    return [{"subset": subset, **row} for row in rows]


def tests(wide: pd.DataFrame) -> pd.DataFrame:
    """``si_tests.csv``: `_tests_on` all images, then the images where all models agree."""
    return pd.DataFrame([*_tests_on(wide, "all images"),
                         *_tests_on(wide[wide["all_agree"]], "all models agree")])


def case_table(wide: pd.DataFrame) -> pd.DataFrame:
    """``si_cases.csv``: maps per method, model and case (of `Replication.with_cases`)."""
    seen = set(wide["case"].dropna())
    return (wide.groupby(["method", "model", "case"]).size().unstack("case", fill_value=0)
            .reindex(columns=[c for c in (*CORRECT_CASES, *INCORRECT_CASES) if c in seen],
                     fill_value=0))


def paper_summary(ours: pd.DataFrame, wide: pd.DataFrame, tested: pd.DataFrame,
                  replication: Replication) -> str:
    """The Markdown list that sets ours beside the paper's headline, Table 1 and rule."""
    means = wide.groupby("method")["iou"].mean()
    first = tested[tested["subset"] == "all images"]
    paired, welch = first[first["test"] == "paired t"], first[first["test"] == "Welch t"]
    lines = []
    if {"gradcam", "xrai"} <= set(means.index):
        lines.append(f"- Mean IoU: Grad-CAM **{means['gradcam']:.3f}** (paper "
                     f"{PAPER_HEADLINE['gradcam']}), XRAI **{means['xrai']:.3f}** (paper "
                     f"{PAPER_HEADLINE['xrai']}); paper: Grad-CAM higher, p "
                     f"{PAPER_HEADLINE['p']}.")
        if len(paired):
            p_row, w_row = paired.iloc[0], welch.iloc[0]
            direction = "higher" if means["gradcam"] > means["xrai"] else "lower"
            reading = (f"Grad-CAM's IoU is significantly {direction}" if p_row["p"] < 0.05 else
                       f"no significant difference (Grad-CAM {direction} in the mean)")
            lines.append(f"- Here {reading}: paired t = {p_row['statistic']:.2f}, "
                         f"p = {p_row['p']:.3g}, Cohen's d_z = {p_row['effect_size']:+.2f} "
                         f"(Grad-CAM − XRAI, n = {p_row['n']} pairs); Welch t = "
                         f"{w_row['statistic']:.2f}, p = {w_row['p']:.3g}, Cohen's d (pooled "
                         f"sd) = {w_row['effect_size']:+.2f}.")
    compared = ours.dropna(subset=["iou_paper"])
    if len(compared):
        worst = compared.loc[compared["iou_diff"].abs().idxmax()]
        lines.append(f"- Largest IoU difference from Table 1: {worst['method']} {worst['model']} "
                     f"({worst['iou']:.3f} vs {worst['iou_paper']:.3f}); mean absolute "
                     f"difference {compared['iou_diff'].abs().mean():.3f}.")
    if random := [c.key for c in replication.section.models if c.weights == "random"]:
        lines.append(f"- **Random weights** ({', '.join(random)}): their numbers show the "
                     "pipeline, not the science; differences from the paper are expected.")
    (rule, headline), (mask_rule, mask_threshold) = replication.rule, replication.mask_rule
    lines.append(f"- Binarisation: ours (`{rule}` at {headline} for the saliency, `{mask_rule}` "
                 f"at {mask_threshold} for the human mask), not the paper's unpublished rule; "
                 "the sweep above shows how the comparison moves with it.")
    return "\n".join(lines)


def distributions(wide: pd.DataFrame) -> sns.FacetGrid:
    """IoU, GTC and SC per image as box plots, by model and technique."""
    long = wide.melt(id_vars=["image_id", "model", "method"], value_vars=["iou", "gtc", "sc"],
                     var_name="metric", value_name="score")
    grid = sns.catplot(data=long, x="model", y="score", hue="method", col="metric", kind="box",
                       palette=plots.palette(long["method"]), height=2.6, aspect=0.95,
                       sharey=True)
    grid.set_xticklabels(rotation=30, ha="right")
    return grid


def threshold_sweep(scores: pd.DataFrame, rule: str) -> sns.FacetGrid:
    """Mean IoU per model and technique as the saliency threshold moves."""
    sweep = (scores[scores["metric"] == "iou"].groupby(["model", "method", "threshold"],
                                                       observed=True)["value"].mean().reset_index())
    grid = sns.relplot(data=sweep, x="threshold", y="value", hue="model", style="method",
                       palette=plots.palette(sweep["model"]), kind="line", markers=True,
                       height=3.2, aspect=1.6)
    grid.set_axis_labels(f"saliency threshold ({rule})", "mean IoU")
    return grid


def best_and_worst(replication: Replication, wide: pd.DataFrame) -> plt.Figure:
    """Per model its best and worst image by mean IoU: human mask, then each technique's map."""
    mean_iou = wide.groupby(["model", "image_id"])["iou"].mean().dropna().reset_index()
    methods = replication.section.methods
    width = 1 + len(methods)
    names = list(mean_iou["model"].unique())
    fig, axes = plt.subplots(len(names), 2 * width, squeeze=False, layout="constrained",
                             figsize=(plots.PAGE_WIDTH, 1.75 * len(names) + 0.2))
    key_of = {name: key for key, name in replication.names.items()}
    index = {s.image_id: i for i, s in enumerate(replication.samples)}
    for row_axes, (model, group) in zip(axes, mean_iou.groupby("model"), strict=True):
        ordered, key = group.sort_values("iou"), key_of[model]
        for label, pick, part in (("best", ordered.iloc[-1], row_axes[:width]),
                                  ("worst", ordered.iloc[0], row_axes[width:])):
            sample = replication.samples[index[pick["image_id"]]]
            frame = replication.geometries[key].frame_image(data.load_image(sample.path))
            plots.show_image(part[0], frame, f"{label}\n{pick['image_id']}")
            part[0].imshow(replication.masks[key][index[pick["image_id"]]], cmap="gray",
                           alpha=0.6, extent=(0, frame.size[0], frame.size[1], 0))
            for ax, method in zip(part[1:], methods, strict=True):
                value = wide.loc[(wide["model"] == model) & (wide["image_id"] == pick["image_id"])
                                 & (wide["method"] == method), "iou"].iloc[0]
                replication.show(ax, key, pick["image_id"], method, f"{method}\nIoU {value:.2f}")
        row_axes[0].set_ylabel(model, fontsize=plots.TITLE_PT)
    plots.map_scale(fig, axes, label=f"{plots.MAP_SCALE};\nhuman mask: grey (white: most)")
    return fig


def case_examples(replication: Replication, wide: pd.DataFrame, most: int = 8) -> plt.Figure | None:
    """The highest-IoU map of each case (up to ``most``), the human mask outlined."""
    examples = (wide.dropna(subset=["case"]).sort_values("iou", ascending=False)
                .groupby("case").head(1).head(most))
    if examples.empty:
        return None
    cols = min(4, len(examples))
    rows = int(np.ceil(len(examples) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(plots.PAGE_WIDTH, 2.3 * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(examples):]:
        ax.axis("off")
    for ax, row in zip(axes.flat, examples.itertuples(), strict=False):
        replication.show(ax, row.key, row.image_id, row.method,
                         f"{row.case}\n{row.model} {row.method}\n{row.image_id}")
    plots.map_scale(fig, axes, label=f"{plots.MAP_SCALE};\nwhite line: binarised human mask")
    return fig
