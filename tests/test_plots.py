"""Figure helpers: box labels never overprint one another and cost no extra drawing; map
overlays carry their colour scale; colours tell models and baselines apart; alt text says
what a figure shows."""

import ast
import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from skimage.color import deltaE_ciede2000, rgb2lab  # noqa: E402

from sightline import plots  # noqa: E402

PRINTED = 0.75 * 90 / 72  # a point of a 90-dpi figure in the PDF: its pixels are CSS px (0.75 pt)


def printed_points(fig, text) -> float:
    """A text's size in the PDF, in points: figures wider than the page are scaled down."""
    return text.get_fontsize() * PRINTED * min(1.0, plots.PAGE_WIDTH / fig.get_figwidth())


def test_box_labels_move_or_drop_rather_than_overprint():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.zeros((100, 100, 3)))
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [0.12, 0.12, 0.6, 0.6], [0.11, 0.1, 0.3, 0.7],
                      [0.11, 0.11, 0.31, 0.71], [0.6, 0.6, 0.9, 0.9]])
    plots.draw_boxes(ax, boxes, 100, 100, labels=["Round Arch Window", "Door", "Oval", "Niche",
                                                  "x"])
    fig.canvas.draw()  # labels are placed when the figure is drawn, after its layout
    renderer = fig.canvas.get_renderer()
    shown = [t for t in ax.texts if t.get_visible()]
    extents = {t.get_text(): t.get_window_extent(renderer) for t in shown}
    names = list(extents)
    assert not any(extents[a].overlaps(extents[b]) for i, a in enumerate(names)
                   for b in names[i + 1:])
    assert len(ax.patches) == 5  # every outline stays
    assert {"Round Arch Window", "x"} <= set(names)  # free places keep the first position
    above = [t for t in shown if t.get_text() == "x"][0]
    assert above.get_position()[1] == 60 and above.get_verticalalignment() == "bottom"
    assert len(names) < 5  # the fifth label on the same corner has no free place
    plt.close(fig)


def test_box_labels_on_a_constrained_subfigure():
    """The gallery's layout: axes in subfigures of a constrained-layout figure."""
    fig = plt.figure(figsize=(4, 2), layout="constrained")
    axes = [sub.subplots() for sub in fig.subfigures(1, 2)]
    for ax in axes:
        ax.imshow(np.zeros((50, 50, 3)))
        plots.draw_boxes(ax, np.array([[0.1, 0.1, 0.6, 0.6], [0.12, 0.12, 0.7, 0.7]]), 50, 50,
                         labels=["Round Arch Window", "Door"])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in axes:
        first, second = (t.get_window_extent(renderer) for t in ax.texts if t.get_visible())
        assert not first.overlaps(second)
    plt.close(fig)


def test_box_labels_stay_apart_after_the_layout_runs_again():
    """Labels reaching past the axes must not shrink them once placed (00_data's examples)."""
    fig, axes = plt.subplots(2, 4, figsize=(7.0, 4.0), layout="constrained")
    boxes = np.array([[0.5, 0.2, 0.6, 0.5], [0.6, 0.3, 0.7, 0.6], [0.65, 0.35, 0.75, 0.65],
                      [0.2, 0.1, 0.3, 0.2]])
    for ax in axes.flat:
        ax.imshow(np.zeros((256, 320, 3)))
        plots.draw_boxes(ax, boxes, 320, 256, labels=["Pointed Arch Window"] * 3 + ["Pinnacle"])
    fig.canvas.draw()  # the layout runs again, as when the notebook shows the figure
    renderer = fig.canvas.get_renderer()
    for ax in axes.flat:
        extents = [t.get_window_extent(renderer) for t in ax.texts if t.get_visible()]
        assert not any(a.overlaps(b) for i, a in enumerate(extents) for b in extents[i + 1:])
    plt.close(fig)


def test_boxes_cost_no_drawing_of_the_figure(monkeypatch):
    """A gallery draws boxes on dozens of axes: none of them may lay out or draw the figure."""
    fig = plt.figure(figsize=(6, 3), layout="constrained")
    draws = []
    monkeypatch.setattr(fig, "draw_without_rendering", lambda: draws.append(1))
    monkeypatch.setattr(fig.canvas, "draw", lambda: draws.append(1))
    for sub in fig.subfigures(1, 2):
        for ax in sub.subplots(2, 4).flat:
            ax.imshow(np.zeros((20, 20, 3)))
            plots.draw_boxes(ax, np.array([[0.1, 0.1, 0.5, 0.5]]), 20, 20, labels=["Door"])
    assert draws == []
    plt.close(fig)


def test_a_label_at_the_right_edge_ends_at_its_box():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.zeros((100, 100, 3)))
    plots.draw_boxes(ax, np.array([[0.7, 0.4, 0.95, 0.6]]), 100, 100, labels=["Round Arch Window"])
    fig.canvas.draw()
    (label,) = ax.texts
    assert label.get_horizontalalignment() == "right" and label.get_position()[0] == 95
    assert label.get_window_extent(fig.canvas.get_renderer()).x1 <= ax.bbox.x1 + 0.5
    plt.close(fig)


def _overlays():
    """Two map overlays with labelled boxes and their shared colour scale."""
    fig, axes = plt.subplots(1, 2, figsize=(plots.PAGE_WIDTH, 3), layout="constrained")
    frame = Image.fromarray(np.zeros((64, 64, 3), np.uint8))
    for ax, title in zip(axes, ["frozen cls L3", "lora cls L3"], strict=True):
        plots.overlay(ax, frame, np.random.default_rng(0).random((4, 4)),
                      np.array([[0.1, 0.1, 0.6, 0.6]]), title=title)
        plots.draw_boxes(ax, np.array([[0.1, 0.1, 0.6, 0.6]]), 64, 64, labels=["portal"])
    plots.map_scale(fig, axes)
    fig.suptitle("img_001")
    return fig


def test_a_map_overlay_has_its_colour_scale_and_legible_text():
    fig = _overlays()
    fig.canvas.draw()
    bars = [ax for ax in fig.axes if hasattr(ax, "_colorbar")]
    assert len(bars) == 1 and bars[0].get_ylabel() == plots.MAP_SCALE
    assert bars[0]._colorbar.cmap.name == plots.MAP_CMAP  # the overlays' own colours
    assert bars[0]._colorbar.norm.vmin == 0 and bars[0]._colorbar.norm.vmax == 1
    texts = [ax.title for ax in fig.axes[:2]] + [t for ax in fig.axes[:2] for t in ax.texts]
    assert len(texts) == 4 and min(printed_points(fig, t) for t in texts) >= 8
    plt.close(fig)


def test_alt_text_names_title_panels_axes_and_scale():
    fig = _overlays()
    alt = plots.alt_text(fig)
    assert alt.startswith("img_001. 2 panels (frozen cls L3; lora cls L3).")
    assert alt.endswith(f"colour scale: {plots.MAP_SCALE}.".replace("\n", " "))
    fig.set_label("Two maps of one image")
    assert plots.alt_text(fig) == "Two maps of one image"
    plt.close(fig)
    fig, ax = plt.subplots()
    for name in ("siglip", "siglip2"):
        ax.plot([1, 2], [0, 1], label=name)
    ax.legend()
    ax.set_xlabel("layer")
    assert plots.alt_text(fig) == "Figure. 1 panel. x: layer. legend: siglip; siglip2."
    plt.close(fig)


def _distances(colours) -> list[float]:
    """CIEDE2000 colour differences of every pair (skimage)."""
    lab = rgb2lab(np.array([colours])).reshape(-1, 3)
    return [deltaE_ciede2000(a, b) for a, b in itertools.combinations(lab, 2)]


def test_models_and_the_four_baselines_get_colours_told_apart():
    models = ["clip", "dinov2", "dinov3", "mae", "resnet50", "siglip", "siglip2"]
    baselines = ["random", "centre_gaussian", "spectral_residual", "sobel"]
    colours = plots.palette(models + baselines)
    assert min(_distances([colours[m] for m in models])) > 15
    assert min(_distances([colours[b] for b in baselines])) > 20
    assert min(_distances([colours["siglip"], colours["siglip2"]])) > 40  # sorted neighbours


def test_every_figure_with_map_overlays_draws_their_scale():
    """Each library function that makes a figure and lays maps over images (`plots.overlay`,
    a study's ``show``, or an image in the maps' colours) draws a colour bar: `map_scale`."""
    lib = Path(plots.__file__).parent
    drawing, scaled = [], []
    for path in sorted(lib.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            calls = {c.func.attr if isinstance(c.func, ast.Attribute) else getattr(c.func, "id", "")
                     for c in ast.walk(node) if isinstance(c, ast.Call)}
            names = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
            if calls & {"subplots", "figure"} and (calls & {"overlay", "show"} or "MAP_CMAP" in names):
                drawing.append(f"{path.stem}.{node.name}")
                if "map_scale" in calls:
                    scaled.append(f"{path.stem}.{node.name}")
    assert len(drawing) >= 9  # photos (4), Q1's gallery, shift maps, cascades, heads, SI (2)
    assert drawing == scaled, drawing


def test_a_label_of_a_box_at_the_top_stays_off_the_title():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.zeros((100, 100, 3)))
    ax.set_title("astronaut.png")
    plots.draw_boxes(ax, np.array([[0.1, 0.0, 0.5, 0.5]]), 100, 100, labels=["space shuttle"])
    fig.canvas.draw()
    (label,) = ax.texts
    extent = label.get_window_extent(fig.canvas.get_renderer())
    assert label.get_visible() and label.get_verticalalignment() == "top"  # inside the box
    assert extent.y1 <= ax.bbox.y1 + 0.5 and not extent.overlaps(
        ax.title.get_window_extent(fig.canvas.get_renderer()))
    plt.close(fig)


def test_a_notebook_shows_figures_with_alt_text_and_frames_as_tables():
    """In a kernel (as papermill runs the notebooks), after `plots.setup`: a figure shown by
    ``plt.show()`` carries its `alt_text`, and a DataFrame displays as its `formatting.table`."""
    import nbformat
    from nbclient import NotebookClient

    lib = Path(plots.__file__).parents[1]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in (
        f"import sys; sys.path.insert(0, {str(lib)!r})\nimport matplotlib\n"  # the build's backend:
        "matplotlib.use('module://matplotlib_inline.backend_inline')\nimport matplotlib.pyplot as plt\n"
        "import pandas as pd\nfrom sightline import plots\nplots.setup()",
        "fig, ax = plt.subplots()\nax.plot([1, 2])\nax.set_xlabel('layer')\nplt.show()",
        "pd.DataFrame({'iou': [0.1, 0.25]}).iloc[[1]]")])
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    (figure,), (frame,) = nb.cells[1].outputs, nb.cells[2].outputs
    assert figure.metadata["image/png"]["alt"] == "Figure. 1 panel. x: layer."
    assert frame.data["text/html"].startswith("<div class='sightline-table narrow short'>")
    assert "<td>0.250</td>" in frame.data["text/html"] and "<td>1</td>" not in frame.data["text/html"]


def test_the_best_head_gallery_has_its_colour_scale_and_names_each_model_once(tmp_path):
    """A real figure function over a real map store: two models, a head's map on two images."""
    import pandas as pd

    from sightline import cache
    from sightline.data.contract import Region, Sample
    from sightline.geometry import Geometry
    from sightline.studies import heads

    samples = []
    for name in ("a", "b"):
        Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(tmp_path / f"{name}.png")
        samples.append(Sample(name, tmp_path / f"{name}.png", (Region(
            0.1, 0.1, 0.5, 0.5, label=0, group_label=0, group=0, feature="portal"),), 64, 48))
    stores, rows = {}, []
    for model in ("dinov2-tiny-random", "siglip2-tiny-random"):
        store = cache.MapStore(tmp_path / f"{model}.h5")
        with store.writer() as writer:
            writer.put(["a", "b"], {("cls", 1): np.random.default_rng(0).random((2, 4, 7, 7))})
        stores[(model, "frozen")] = store.path
        rows += [dict(model=model, variant="frozen", method="cls", layer=1, head=2,
                      outcome=outcome, image_id=image, value=0.5)
                 for outcome, image in (("wins", "a"), ("fails", "b"))]
    fig = heads.best_head_gallery(pd.DataFrame(rows), samples=samples, stores=stores,
                                  geometries={m: Geometry(size=32) for m, _ in stores})
    bars = [ax for ax in fig.axes if hasattr(ax, "_colorbar")]
    assert len(bars) == 1 and bars[0].get_ylabel() == plots.MAP_SCALE
    panels = [ax for ax in fig.axes if not hasattr(ax, "_colorbar")]
    assert [ax.get_ylabel() for ax in panels] == ["dinov2-tiny-random", "",
                                                  "siglip2-tiny-random", ""]
    assert {ax.get_title() for ax in panels} == {"L1H2\nwins: 0.50", "L1H2\nfails: 0.50"}
    assert min(printed_points(fig, ax.title) for ax in panels) >= 8
    plt.close(fig)
