"""Q1's larger figures (notebook q1_alignment): the leaderboard, IoU layer by layer, and the
gallery of one image's headline maps."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import data, plots
from .alignment import BASELINE, KEY, VARIANT, Leaderboard, best_layers, label
from .study import Study


def leaderboard(board: Leaderboard) -> plt.Figure:
    """Cross-fitted IoU per map with its 95% CI (baselines grey), the in-sample value marked."""
    table, p = board.table, board.percentile
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(table) + 1))
    values = table[board.headline]
    ax.barh(label(table), values, color=np.where(table["kind"] == BASELINE, "#999999", "#4c72b0"),
            xerr=[values - table["CI low"], table["CI high"] - values])
    ax.scatter(table[f"IoU@{p:g} in-sample"], label(table), marker="|", s=120, color="black",
               zorder=3, label="in-sample best layer")
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel(f"IoU@{p:g} against the union of boxes (cross-fitted best layer, 95% CI; "
                  f"{board.frame} frame)")
    fig.tight_layout()
    return fig


def layers(by_layer: pd.DataFrame, percentile: float) -> plt.Figure:
    """IoU per layer (``alignment.layers``), one panel per method; baselines as dashed lines."""
    layered = by_layer[by_layer["model"] != BASELINE]
    methods = sorted(layered["method"].unique())
    cols = min(3, len(methods))
    rows_n = int(np.ceil(len(methods) / cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(plots.PAGE_WIDTH, 2.4 * rows_n + 1.2),
                             squeeze=False, sharey=True, layout="constrained")
    baselines = best_layers(by_layer).query(f"model == '{BASELINE}'")
    colours = plots.palette([*layered["model"].unique(), *baselines["method"]])
    dashes = dict(zip(sorted(baselines["method"]), ["--", ":", "-.", (0, (5, 2))], strict=False))
    for ax, method in zip(axes.flat, methods, strict=False):
        sub = layered[layered["method"] == method]
        for model, rows in sub.groupby("model", observed=True):
            ax.plot(rows["layer"], rows["iou"], marker="o", ms=3, color=colours[model], label=model)
        for b in baselines.itertuples():
            ax.axhline(b.iou, ls=dashes[b.method], lw=1, color=colours[b.method])
        ax.set_title(method, fontsize=plots.TITLE_PT)
        ax.set_xlabel("layer", fontsize=8)
        ax.set_xticks(sorted(sub["layer"].unique()))
        ax.tick_params(labelsize=7)
        ax.set_ylabel(f"IoU@{percentile:g}", fontsize=8)
    for ax in axes.flat[len(methods):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colours[m], marker="o", label=m)
               for m in sorted(layered["model"].unique())]
    handles += [plt.Line2D([], [], color=colours[b], ls=dashes[b], label=f"baseline: {b}")
                for b in sorted(baselines["method"])]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8)
    return fig


def gallery(study: Study, maps: pd.DataFrame, union_iou: pd.DataFrame, kind: str,
            image_ids: Sequence[str], percentile: float) -> plt.Figure:
    """One row block per image: every model's headline map (``maps``) in its own input frame
    with the expert boxes, titled with its IoU (``alignment.headline_iou``)."""
    models = [r for r in maps.itertuples() if r.model != BASELINE]
    score = union_iou.set_index([*KEY, "image_id"])["value"]
    by_id = {s.image_id: s for s in study.samples}
    cols = min(4, len(models))
    per_image = int(np.ceil(len(models) / cols))  # rows of maps per image
    fig = plt.figure(figsize=(plots.PAGE_WIDTH, 2.1 * per_image * len(image_ids) + 0.4),
                     layout="constrained")
    fig.suptitle(f"{kind} images (IoU@{percentile:g} per map)")
    for subfig, image_id in zip(fig.subfigures(len(image_ids), 1, squeeze=False)[:, 0],
                                image_ids, strict=True):
        subfig.suptitle(image_id, fontsize=9)
        axes = subfig.subplots(per_image, cols, squeeze=False)
        sample = by_id[image_id]
        image = data.load_image(sample.path)
        for ax, row in zip(axes.flat, models, strict=False):
            geometry = study.geometries[row.model]
            _, values = study.stores[(row.model, VARIANT)].read(row.method, row.layer, [image_id])
            xyxy = geometry.boxes_to_frame(sample.boxes_ltwh(), sample.width, sample.height)
            plots.overlay(ax, geometry.frame_image(image), values[0, -1], xyxy,
                          title=f"{row.model}\n{row.method} L{row.layer}: "
                                f"{score[(row.model, row.method, row.layer, image_id)]:.2f}")
        for ax in axes.flat[len(models):]:
            ax.axis("off")
        plots.map_scale(subfig, axes)
    return fig
