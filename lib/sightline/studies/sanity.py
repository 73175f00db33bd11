"""Q4, the randomisation sanity check: what ran, which methods pass, and the sentences the
report prints about them, read from the tables Q1's build wrote (``sanity.csv``,
``sanity_flags.csv``, ``sanity_steps.csv``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from .. import cache, data, plots
from .. import config as cfg
from .study import Study


@dataclass(frozen=True)
class SanityTables:
    """The test's three tables: similarity per step (``summary``), the flag per model and
    method (``flags``) and the steps with their stores and seeds (``steps``)."""

    summary: pd.DataFrame
    flags: pd.DataFrame
    steps: pd.DataFrame

    @classmethod
    def read(cls, study: Study) -> SanityTables:
        return cls(*(study.read_table(f"sanity{t}.csv") for t in ("", "_flags", "_steps")))


def runs(steps: pd.DataFrame) -> pd.DataFrame:
    """One row per model, variant and mode: its steps, images, seed and images extracted now."""
    return steps.groupby(["model", "variant", "mode"]).agg(
        steps=("depth", "size"), images=("images", "first"), seed=("seed", "first"),
        extracted_now=("extracted", "sum")).reset_index()


def weights_sentence(runs: pd.DataFrame, names: dict[str, str],
                     choices: Sequence[cfg.ModelChoice]) -> str:
    """Which weights each tested variant carries (``names``: key -> model name)."""
    weights_of = {names[c.key]: c.weights for c in choices}
    tested = runs[["model", "variant"]].drop_duplicates().itertuples(index=False)
    return "Weights tested: " + "; ".join(
        f"**{m}** " + (f"frozen ({weights_of.get(m, '?')} weights)" if v == "frozen" else
                       f"{v}: Q2's fine-tuning run, started from {weights_of.get(m, '?')} "
                       "weights and trained on this profile's data")
        for m, v in tested) + ". The verdicts below are about these weights."


def cascade_sentence(steps: pd.DataFrame) -> str:
    """The units each model's cascade re-initialised, in order."""
    order = steps[steps["mode"] == "cascade"].sort_values("depth")
    return "Cascade order: " + "; ".join(f"**{m}** ({v}): " + " → ".join(rows["unit"])
                                         for (m, v), rows in order.groupby(["model", "variant"]))


def absolute_gap_sentence(summary: pd.DataFrame) -> str:
    """Whether Spearman of the maps and of their absolute values differ (never, on
    non-negative maps), and by how much."""
    both = summary[summary["metric"].isin(["spearman", "spearman_abs"])].pivot_table(
        index=["model", "variant", "mode", "depth", "method", "layer"], columns="metric",
        values="mean")
    gap = (both["spearman"] - both["spearman_abs"]).abs().max()
    return "Spearman of the maps and of their absolute values " + (
        "coincide on every map (the maps are non-negative), so only the first is drawn."
        if gap == 0 or np.isnan(gap) else f"differ by up to {gap:.3g}.")


def verdicts(flags: pd.DataFrame) -> pd.DataFrame:
    """The flags with their verdict in words."""
    return flags.assign(verdict=np.where(flags["not_model_sensitive"], "not model-sensitive",
                                         "model-sensitive"))


def flagged_sentence(verdicts: pd.DataFrame, threshold: float) -> str:
    """Which methods stay similar to the original maps after full randomisation."""
    failed = verdicts[verdicts["not_model_sensitive"]]
    return f"Threshold {threshold:g}: " + (
        ", ".join(f"**{r.model} · {r.method}** (Spearman {r.mean:.2f} at layer {r.layer})"
                  for r in failed.itertuples()) + " stay similar to the original maps: "
        "they are flagged not model-sensitive." if len(failed) else
        "every method's maps change when the network is re-initialised.")


def rebounds(summary: pd.DataFrame, flags: pd.DataFrame, threshold: float) -> list[str]:
    """Cascade curves (at each flag's layer) that fall below ``threshold`` and climb back
    above it as more of the network is randomised, each in words."""
    curves = summary[(summary["mode"] == "cascade") & (summary["metric"] == "spearman")
                     & (summary["depth"] > 0)].merge(flags[["model", "variant", "method", "layer"]])
    found = []
    for (m, v, method, layer), curve in curves.groupby(["model", "variant", "method", "layer"]):
        curve = curve.sort_values("depth")
        low = curve["mean"].idxmin()
        later = curve.loc[curve["depth"] > curve.loc[low, "depth"]]
        if curve.loc[low, "mean"] < threshold and (later["mean"] > threshold).any():
            high = later["mean"].idxmax()
            found.append(f"{m} {v} · {method} (layer {layer}) falls to "
                         f"{curve.loc[low, 'mean']:.2f} after {curve.loc[low, 'unit']} and climbs "
                         f"back to {curve.loc[high, 'mean']:.2f} after {curve.loc[high, 'unit']}")
    return found


def rebounds_sentence(found: Sequence[str]) -> str | None:
    """The report's note on `rebounds` (None when there are none)."""
    if not found:
        return None
    return ("The flag reads only the last step; on the way there, " + "; ".join(found)
            + ": similarity that returns as more of the network is randomised points to "
              "something the remaining weights do not control (e.g. the input or the "
              "architecture's position handling), worth a look in the figure above.")


def after_full_randomisation(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean Spearman per model, method and layer after the deepest cascade step."""
    full = summary[(summary["mode"] == "cascade") & (summary["metric"] == "spearman")]
    full = full[full["depth"] == full.groupby(["model", "variant"])["depth"].transform("max")]
    return full.pivot_table(index=["model", "method"], columns="layer", values="mean").round(3)


def cascade_gallery(study: Study, tables: SanityTables) -> list[plt.Figure]:
    """Per tested model: the first tested image's map of each flagged method (at the flag's
    layer), original and after each cascade step, in the model's input frame."""
    by_id = {s.image_id: s for s in study.samples}
    figures = []
    for (model, variant), rows in tables.steps.groupby(["model", "variant"]):
        picked = tables.flags[(tables.flags["model"] == model)
                              & (tables.flags["variant"] == variant)]
        image_id = sorted(cache.MapStore(rows["store"].iloc[0]).image_ids())[0]
        frame = study.specs[study.names[rows["key"].iloc[0]]].geometry.frame_image(
            data.load_image(by_id[image_id].path))
        figures.append(cascade_figure(rows, [(f"{f.method} L{f.layer}", f.method, int(f.layer))
                                             for f in picked.itertuples()], image_id, frame,
                                      f"{model} · {variant}: image {image_id}, cascade →"))
    return figures


def cascade_figure(steps: pd.DataFrame, rows: Sequence[tuple[str, str, int]], image_id: str,
                   frame: Image.Image, title: str) -> plt.Figure:
    """One image through the cascade: a row per ``(label, method, layer)``, a column per step
    (the original first), each map read from its step's store and drawn over ``frame``."""
    shown = steps[steps["mode"].isin(["original", "cascade"])].sort_values("depth")
    fig, axes = plt.subplots(len(rows), len(shown), squeeze=False, layout="constrained",
                             figsize=(plots.PAGE_WIDTH, 1.45 * len(rows) + 0.6))
    for r, (label, method, layer) in enumerate(rows):
        for c, step in enumerate(shown.itertuples()):
            grid = cache.MapStore(step.store).read_image(method, layer, image_id)[-1]
            plots.overlay(axes[r, c], frame, grid, np.zeros((0, 4)),
                          title=step.unit if r == 0 else None)
            if c == 0:
                axes[r, c].set_ylabel(label, fontsize=plots.TITLE_PT)
    fig.suptitle(title, fontsize=plots.TITLE_PT)
    plots.map_scale(fig, axes)
    return fig
