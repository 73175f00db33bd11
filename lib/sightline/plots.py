"""Figures shared by several notebooks, their one colour scheme (`palette`, `line_styles`) and
alt text (`alt_text`); a figure up to `PAGE_WIDTH` inches prints at full size on A4."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from IPython.display import HTML
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_rgb
from matplotlib.figure import Figure, FigureBase
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator
from PIL import Image

from . import formatting
from .baselines import BASELINES

STYLE_COLOURS = {
    "Romanesque": "#c0622f",
    "Gothic": "#3b5b92",
    "Renaissance": "#5a9a4b",
    "Baroque": "#9b4f96",
}
PAGE_WIDTH = 7.5  # inches at the figures' 90 dpi: the text width of an A4 page (1.5 cm margins)
TITLE_PT = 9  # panel titles and box labels: 8.4 pt as printed (90 dpi pixels as CSS px)
# seaborn's colour-blind palette without its grey, ordered so that neighbours (in sorted
# names: siglip, siglip2) are far apart, and the first seven hold no two close ones
_QUALITATIVE = [sns.color_palette("colorblind", 10)[i] for i in (0, 1, 2, 4, 3, 9, 8, 6, 5)]
_BASELINE_COLOURS = ["#262626", "#a6a6a6", "#7a4f2a", "#4a6a4a"]  # dark, muted, told apart
_DASHES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (8, 2))]
BOX_COLOUR = "#ffdd00"  # the chosen boxes' outlines and labels
MAP_CMAP = "inferno"  # every map overlay's colours, and its scale's (`map_scale`)
MAP_SCALE = "map value\n(each map: min 0, max 1)"


def setup() -> None:
    """The house style for every figure and table in the report, and figures shown with
    their alt text."""
    sns.set_theme(context="notebook", style="whitegrid", palette=_QUALITATIVE)
    plt.rcParams.update({"figure.dpi": 90, "savefig.dpi": 90, "figure.autolayout": False,
                         "legend.fontsize": 8, "legend.title_fontsize": 8})
    formatting.display_tables()
    from IPython import get_ipython
    from IPython.core.pylabtools import print_figure

    shell = get_ipython()
    if shell is not None:
        plt.switch_backend(plt.get_backend())  # the inline backend sets its formatters now, not later
        shell.display_formatter.formatters["image/png"].for_type(
            Figure, lambda fig: (print_figure(fig, "png", base64=True), {"alt": alt_text(fig)}))


def alt_text(fig: FigureBase) -> str:
    """What a figure shows, in its own words: its label (``fig.set_label``) if it has one,
    else its titles, panel titles, axis labels, legend entries and colour scales."""
    if fig.get_label():
        return fig.get_label()
    figures = [fig, *fig.subfigs]
    titles = _unique(f.get_suptitle() for f in figures)
    axes = fig.axes  # those of its subfigures, too
    scales = _unique(ax.get_ylabel() or ax.get_xlabel() for ax in axes if hasattr(ax, "_colorbar"))
    plotted = [ax for ax in axes if not hasattr(ax, "_colorbar") and ax.axison]
    panels = _unique(ax.get_title() for ax in plotted)
    legends = [*(f.legends for f in figures), *([ax.get_legend()] for ax in plotted)]
    entries = _unique(t.get_text() for group in legends for legend in group if legend
                      for t in legend.get_texts())
    parts = [" / ".join(titles) or "Figure",
             f"{len(plotted)} panel{'s' * (len(plotted) != 1)}"
             + (f" ({_few(panels)})" if panels else ""),
             _few(_unique(f"x: {ax.get_xlabel()}" for ax in plotted if ax.get_xlabel())
                  + _unique(f"y: {ax.get_ylabel()}" for ax in plotted if ax.get_ylabel())),
             f"legend: {_few(entries)}" if entries else "",
             f"colour scale: {_few(scales)}" if scales else ""]
    return ". ".join(part.replace("\n", " ") for part in parts if part) + "."


def _unique(texts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(t.strip() for t in texts if t and t.strip()))


def _few(texts: Sequence[str], most: int = 6) -> str:
    """Up to ``most`` texts joined, and how many more."""
    more = f"; and {len(texts) - most} more" if len(texts) > most else ""
    return "; ".join(texts[:most]) + more


def map_scale(owner: FigureBase, axes, label: str = MAP_SCALE, cmap: str = MAP_CMAP,
              limits: tuple[float, float] = (0, 1), location: str = "right") -> None:
    """The colour bar of the map overlays on ``axes`` (one for all of them), drawn in
    ``owner`` (the figure or subfigure holding them)."""
    owner.colorbar(ScalarMappable(Normalize(*limits), cmap=cmap), ax=axes, label=label,
                   location=location, shrink=0.8, aspect=30)


def is_baseline(name: str) -> bool:
    """A baseline map (by its method name, or a label ``baseline · ...``), not a model."""
    return str(name).split(" · ")[0] in ("baseline", *BASELINES)


def palette(names: Iterable[str]) -> dict[str, tuple]:
    """One colour per name, the same scheme in every figure: baselines in dark muted tones,
    the rest (models, runs, methods) in a colour-blind qualitative palette, both in sorted
    order."""
    names = sorted({str(n) for n in names})
    baselines = [n for n in names if is_baseline(n)]
    others = [n for n in names if not is_baseline(n)]
    qualitative = _QUALITATIVE if len(others) <= len(_QUALITATIVE) else sns.color_palette(
        "husl", len(others))
    tones = (_BASELINE_COLOURS if len(baselines) <= len(_BASELINE_COLOURS)
             else sns.color_palette("Greys_r", len(baselines)))
    colours = {n: to_rgb(tones[i]) for i, n in enumerate(baselines)}
    colours.update({n: tuple(qualitative[i]) for i, n in enumerate(others)})
    return colours


def line_styles(methods: Iterable[str]) -> dict[str, object]:
    """One line style per method (sorted), for figures whose colours mean models."""
    return {m: _DASHES[i % len(_DASHES)] for i, m in enumerate(sorted({str(m) for m in methods}))}


def integer_ticks(ax: Axes) -> None:
    """Whole-number ticks only on the x axis (layers, heads, epochs)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def draw_boxes(ax: Axes, boxes_xyxy: np.ndarray, width: float, height: float,
               labels: Sequence[str] | None = None, highlight: int | None = None) -> None:
    """Outline relative ``(x0, y0, x1, y1)`` boxes on an axis showing a ``width x height`` image,
    each label placed where it overlaps no other when the figure is drawn (`_BoxLabels`)."""
    placer = _BoxLabels()
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes_xyxy).reshape(-1, 4)):
        chosen = highlight is None or i == highlight
        ax.add_patch(Rectangle((x0 * width, y0 * height), (x1 - x0) * width, (y1 - y0) * height,
                               fill=False, lw=2 if chosen else 1, ec=BOX_COLOUR if chosen else "white",
                               alpha=1.0 if chosen else 0.6))
        if labels is None or not chosen:
            continue
        text = ax.text(x0 * width, y0 * height, labels[i], fontsize=TITLE_PT, color="black",
                       bbox={"facecolor": BOX_COLOUR, "alpha": 0.8, "pad": 1, "lw": 0}, va="bottom")
        text.set_in_layout(False)  # the layout does not move for a label
        placer.labels.append((text, (x0 * width, x1 * width),
                              [(y0 * height, "bottom"), (y0 * height, "top"),
                               (y1 * height, "bottom")]))
    if placer.labels:
        ax.add_artist(placer)


class _BoxLabels(Artist):
    """Draws nothing itself: after the figure's layout, just before the axis' texts, moves each
    label to its first place (above its box's top-left corner, inside it at the top, at its
    bottom-left) that overlaps no label placed before and stays inside the axis, or hides it.
    A label that would run past the axis' right edge ends at its box's right edge instead."""

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
                extent, bounds = text.get_window_extent(renderer), text.axes.bbox
                inside = bounds.y0 - 0.5 <= extent.y0 and extent.y1 <= bounds.y1 + 0.5  # no title
                if inside and not any(extent.overlaps(other) for other in placed):
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
        ax.set_title(title, fontsize=TITLE_PT)


def overlay(ax: Axes, frame: Image.Image, saliency: np.ndarray, boxes_xyxy: np.ndarray,
            title: str | None = None, highlight: int | None = None) -> None:
    """A model-frame image with a saliency map (any grid, upsampled smoothly, coloured from its
    minimum to its maximum: `map_scale`) and the boxes."""
    show_image(ax, frame, title)
    size = frame.size
    ax.imshow(np.asarray(saliency, dtype=np.float32), cmap=MAP_CMAP, alpha=0.55,
              extent=(0, size[0], size[1], 0), interpolation="bilinear")
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
    fig, axes = plt.subplots(len(panels), 2, figsize=(PAGE_WIDTH, 2.9 * len(panels)), squeeze=False,
                             layout="constrained")
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
            ax.set_title(f"{model} · {variant} · {metric}", fontsize=TITLE_PT)
            ax.set_xlabel("re-initialised down to" if mode == "cascade"
                          else "unit re-initialised alone")
            ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{mode} randomisation (dashed red: the flag's threshold)")
    return fig
