"""Figures shared by several notebooks (matplotlib / seaborn), and their one colour scheme.

Every figure colours by `palette` (baselines in greys, everything else in a colour-blind
qualitative palette) and draws methods with `line_styles`. A figure up to `PAGE_WIDTH`
inches wide prints at full size on the report's A4 page; a wider one is scaled down.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from IPython.display import HTML
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator
from PIL import Image

from .baselines import BASELINES

STYLE_COLOURS = {
    "Romanesque": "#c0622f",
    "Gothic": "#3b5b92",
    "Renaissance": "#5a9a4b",
    "Baroque": "#9b4f96",
}
PAGE_WIDTH = 7.5  # inches at the figures' 90 dpi: the text width of an A4 page (1.5 cm margins)
# seaborn's colour-blind palette without its grey, which is the baselines' colour
_QUALITATIVE = [c for i, c in enumerate(sns.color_palette("colorblind", 10)) if i != 7]
_GREYS = ["#3d3d3d", "#6e6e6e", "#9a9a9a", "#c2c2c2"]
_DASHES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (8, 2))]


def setup() -> None:
    """The house style for every figure in the report."""
    sns.set_theme(context="notebook", style="whitegrid", palette=_QUALITATIVE)
    plt.rcParams.update({"figure.dpi": 90, "savefig.dpi": 90, "figure.autolayout": False,
                         "legend.fontsize": 8, "legend.title_fontsize": 8})


def is_baseline(name: str) -> bool:
    """A baseline map (by its method name, or a label ``baseline · ...``), not a model."""
    return str(name).split(" · ")[0] in ("baseline", *BASELINES)


def palette(names: Iterable[str]) -> dict[str, tuple]:
    """One colour per name, the same scheme in every figure: baselines in greys, the rest
    (models, runs, methods) in a colour-blind qualitative palette, both in sorted order."""
    names = sorted({str(n) for n in names})
    baselines = [n for n in names if is_baseline(n)]
    others = [n for n in names if not is_baseline(n)]
    qualitative = _QUALITATIVE if len(others) <= len(_QUALITATIVE) else sns.color_palette(
        "husl", len(others))
    greys = _GREYS if len(baselines) <= len(_GREYS) else sns.color_palette("Greys_r", len(baselines))
    colours = {n: to_rgb(greys[i]) for i, n in enumerate(baselines)}
    colours.update({n: tuple(qualitative[i]) for i, n in enumerate(others)})
    return colours


def line_styles(methods: Iterable[str]) -> dict[str, object]:
    """One line style per method (sorted), for figures whose colours mean models."""
    return {m: _DASHES[i % len(_DASHES)] for i, m in enumerate(sorted({str(m) for m in methods}))}


def integer_ticks(ax: Axes, axis: str = "x") -> None:
    """Whole-number ticks only (layers, heads, epochs)."""
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def draw_boxes(
    ax: Axes,
    boxes_xyxy: np.ndarray,
    width: float,
    height: float,
    labels: Sequence[str] | None = None,
    colour: str = "#ffdd00",
    highlight: int | None = None,
) -> None:
    """Outline relative ``(x0, y0, x1, y1)`` boxes on an axis showing a ``width x height`` image.

    Each label goes above its box's top-left corner, else inside it at the top, else at its
    bottom-left, whichever first overlaps no label already placed; a label with no free place
    is hidden (its outline stays). Placed when the figure is drawn, after its layout, so at
    the axes' final size (`_BoxLabels`)."""
    placer = _BoxLabels()
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
        if labels is None or not chosen:
            continue
        text = ax.text(x0 * width, y0 * height, labels[i], fontsize=7, color="black",
                       bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "lw": 0}, va="bottom")
        text.set_in_layout(False)  # the layout does not move for a label
        placer.labels.append((text, (x0 * width, x1 * width),
                              [(y0 * height, "bottom"), (y0 * height, "top"),
                               (y1 * height, "bottom")]))
    if placer.labels:
        ax.add_artist(placer)


class _BoxLabels(Artist):
    """Draws nothing itself: just before an axis' texts are drawn (a lower zorder, after the
    figure's layout), moves each of its labels to its first place that overlaps no label
    placed before it, or hides it. A label that would run past the axis' right edge ends at
    its box's right edge instead (the next axis would cover it)."""

    zorder = 2.5  # after the image and patches, before the texts (zorder 3)

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[tuple[Text, tuple[float, float], list[tuple[float, str]]]] = []

    def draw(self, renderer) -> None:
        placed = []  # extents in display pixels
        for text, (left, right), places in self.labels:
            text.set_visible(True)
            text.set_x(left)
            text.set_horizontalalignment("left")
            if text.get_window_extent(renderer).x1 > text.axes.bbox.x1:
                text.set_x(right)
                text.set_horizontalalignment("right")
            for y, va in places:
                text.set_y(y)
                text.set_verticalalignment(va)
                extent = text.get_window_extent(renderer)
                if not any(extent.overlaps(other) for other in placed):
                    placed.append(extent)
                    break
            else:
                text.set_visible(False)


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


def randomisation_curves(summary, flags, mode: str, threshold: float) -> plt.Figure:
    """The classic figure of the randomisation test (Adebayo et al. 2018) for one ``mode``:
    a row per (model, variant) of `sanity.sensitivity_flags`, Spearman and SSIM against the
    randomised depth, one line per method at the flag's layer, its 95% CI shaded; left of
    the grey line the original model, dashed red the flag's ``threshold``."""
    from .registry import METHODS  # every method keeps its colour in every figure

    rows = summary[(summary["mode"] == mode) & summary["metric"].isin(["spearman", "ssim"])]
    rows = rows.merge(flags[["model", "variant", "method", "layer"]],
                      on=["model", "variant", "method", "layer"])
    panels = flags[["model", "variant"]].drop_duplicates().to_records(index=False).tolist()
    colours = palette(METHODS.names())
    fig, axes = plt.subplots(len(panels), 2, figsize=(10, 2.9 * len(panels)), squeeze=False)
    for r, (model, variant) in enumerate(panels):
        for c, metric in enumerate(["spearman", "ssim"]):
            ax = axes[r, c]
            sub = rows[(rows["model"] == model) & (rows["variant"] == variant)
                       & (rows["metric"] == metric)].sort_values("depth")
            for method, line in sub.groupby("method"):
                ax.plot(line["depth"], line["mean"], marker="o", ms=4, color=colours[method],
                        label=f"{method} (layer {line['layer'].iloc[0]})")
                ax.fill_between(line["depth"], line["ci_low"], line["ci_high"], alpha=0.2,
                                color=colours[method])
            labels = sub.drop_duplicates("depth").sort_values("depth")
            ax.set_xticks(labels["depth"])
            ax.set_xticklabels(labels["unit"], rotation=45, fontsize=8)
            ax.axvline(0.5, color="grey", lw=0.8)
            ax.axhline(0, color="black", lw=0.5)
            if metric == "spearman":
                ax.axhline(threshold, color="#c44e52", ls="--", lw=0.8)
            floor = min(-0.3, sub["ci_low"].min() - 0.05) if metric == "spearman" else 0
            ax.set_ylim(floor, 1.05)
            ax.set_title(f"{model} · {variant} · {metric}", fontsize=9)
            ax.set_xlabel("re-initialised down to" if mode == "cascade"
                          else "unit re-initialised alone")
            ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{mode} randomisation (dashed red: the flag's threshold)", y=1.0)
    fig.tight_layout()
    return fig
