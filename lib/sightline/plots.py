"""Figures shared by several notebooks (matplotlib / seaborn)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from IPython.display import HTML
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle
from PIL import Image

STYLE_COLOURS = {
    "Romanesque": "#c0622f",
    "Gothic": "#3b5b92",
    "Renaissance": "#5a9a4b",
    "Baroque": "#9b4f96",
}


def setup() -> None:
    """The house style for every figure in the report."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 90, "savefig.dpi": 90, "figure.autolayout": False})


def draw_boxes(
    ax: Axes,
    boxes_xyxy: np.ndarray,
    width: float,
    height: float,
    labels: Sequence[str] | None = None,
    colour: str = "#ffdd00",
    highlight: int | None = None,
) -> None:
    """Outline relative ``(x0, y0, x1, y1)`` boxes on an axis showing a ``width x height`` image."""
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes_xyxy).reshape(-1, 4)):
        chosen = highlight is None or i == highlight
        ax.add_patch(
            Rectangle(
                (x0 * width, y0 * height),
                (x1 - x0) * width,
                (y1 - y0) * height,
                fill=False,
                lw=2 if chosen else 1,
                ec=colour if chosen else "white",
                alpha=1.0 if chosen else 0.6,
            )
        )
        if labels is not None and chosen:
            ax.text(
                x0 * width,
                y0 * height,
                labels[i],
                fontsize=7,
                color="black",
                bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "lw": 0},
                va="bottom",
            )


def show_image(ax: Axes, image: Image.Image | np.ndarray, title: str | None = None) -> None:
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title, fontsize=8)


def overlay(
    ax: Axes,
    frame: Image.Image,
    saliency: np.ndarray,
    boxes_xyxy: np.ndarray,
    title: str | None = None,
    highlight: int | None = None,
) -> None:
    """A model-frame image with a saliency map (any grid, upsampled smoothly) and the boxes."""
    show_image(ax, frame, title)
    size = frame.size
    ax.imshow(
        np.asarray(saliency, dtype=np.float32),
        cmap="inferno",
        alpha=0.55,
        extent=(0, size[0], size[1], 0),
        interpolation="bilinear",
    )
    draw_boxes(ax, boxes_xyxy, size[0], size[1], highlight=highlight)



BANNER_STYLE = ("border: 2px solid #b8860b; background: #fff4d6; color: #3d2e00; "
                "padding: 0.6em 0.9em; margin: 0.4em 0 1em 0; border-radius: 4px; font-weight: 600")


def random_weights_banner(models: Sequence) -> HTML | None:
    """The one box at the top of a section computed from random-weight models, saying its
    numbers exercise the pipeline and are not findings; None (nothing shown) when every
    model listed (params ``models`` entries or `ModelChoice`s) has real weights."""
    choices = [m if isinstance(m, dict) else m.model_dump() for m in models]
    random = [m["key"] for m in choices if m.get("weights", "pretrained") == "random"]
    if not random:
        return None
    text = (f"Random-weight models ({', '.join(random)}): these numbers exercise the "
            "pipeline; they are not findings.")
    return HTML(f'<div class="sightline-banner" style="{BANNER_STYLE}">{text}</div>')
