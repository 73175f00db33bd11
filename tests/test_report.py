"""What a reader sees: table formatting, and a report whose tables and figures fit the page.

The PDF checks read the rendered file with poppler (``pdftotext -bbox``, ``pdfimages
-list``): every column header of every table is on the page, no word lies beyond the
page's edge, and every figure is placed within the page. The HTML check opens the page in
headless Chromium at 1,400 px: the page itself never scrolls sideways.
"""

import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from sightline import config, formatting, pipeline, plots, report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MARGIN = 1.5 / 2.54


# -- formatting ------------------------------------------------------------------------------


def test_p_values_print_two_digits_and_a_bound_never_zero():
    assert formatting.format_p(0.0) == "<\u00a01e-4"  # "< 1e-4" that never wraps
    assert formatting.format_p(3e-9) == "<\u00a01e-4"
    assert formatting.format_p(1e-4) == "0.0001"
    assert formatting.format_p(0.000123) == "0.00012"
    assert formatting.format_p(0.0312) == "0.031"
    assert formatting.format_p(0.5) == "0.5"
    assert formatting.format_p(float("nan")) == "–"


def test_numbers_have_no_signed_zero_and_counts_stay_integers():
    assert formatting.format_number(-0.0001) == "0.000"
    assert formatting.format_number(-0.0) == "0.000"
    assert formatting.format_number(-0.0006) == "-0.001"
    assert formatting.format_number(0.12345, 2) == "0.12"
    frame = pd.DataFrame({"n": [38.0, 37.0], "layer": [0.0, 1.0], "top5_share": [1.0, 1.0],
                          "delta": [-0.00004, 0.25], "p_holm": [0.0, 0.04]})
    text = formatting.table(frame).text
    assert text["n"].tolist() == ["38", "37"] and text["layer"].tolist() == ["0", "1"]
    assert text["top5_share"].tolist() == ["1.000", "1.000"]  # a share, not a count
    assert text["delta"].tolist() == ["0.000", "0.250"]
    assert text["p_holm"].tolist() == ["<\u00a01e-4", "0.04"]


@pytest.mark.parametrize("name,is_p", [("p", True), ("p_holm", True), ("p_value", True),
                                       ("p (test accuracy > chance, binomial)", True),
                                       ("Holm p", True), ("top5_share", False),
                                       ("sc_paper", False), ("dof", False)])
def test_p_columns_are_found_by_name(name, is_p):
    assert formatting.is_p_column(name) is is_p


class _Headers(HTMLParser):
    """The header rows and cells of the tables in an HTML fragment."""

    def __init__(self):
        super().__init__()
        self.rows, self._in = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        if tag in ("th", "td"):
            self._in = tag
            self.rows[-1].append((tag, ""))

    def handle_endtag(self, tag):
        if tag in ("th", "td"):
            self._in = None

    def handle_data(self, data):
        if self._in:
            tag, text = self.rows[-1][-1]
            self.rows[-1][-1] = (tag, text + data)


def test_a_pivot_table_has_one_header_row_and_its_index_as_columns():
    long = pd.DataFrame({"name": ["iou@90", "coverage", "iou@90", "coverage"],
                         "label": ["a · cls", "a · cls", "b · probe", "b · probe"],
                         "value": [0.1, 0.2, 0.3, 0.4]})
    summary = long.pivot_table(index="name", columns="label", values="value").T
    parser = _Headers()
    parser.feed(formatting.table(summary)._repr_html_())
    headers = [row for row in parser.rows if all(tag == "th" for tag, _ in row)]
    assert len(headers) == 1  # pandas would print a second, blank-celled header row
    assert [text for _, text in headers[0]] == ["label", "coverage", "iou@90"]
    assert [text for _, text in parser.rows[1]] == ["a · cls", "0.200", "0.100"]


def test_a_named_index_becomes_columns_an_unnamed_one_goes():
    frame = pd.DataFrame({"model": ["a", "b", "c"], "iou": [0.1, 0.2, 0.3]})
    assert list(formatting.table(frame.iloc[[2, 0]]).text.columns) == ["model", "iou"]
    grouped = frame.assign(method=["cls", "cls", "probe"]).set_index(["model", "method"])
    assert list(formatting.table(grouped).text.columns) == ["model", "method", "iou"]
    counts = pd.Series({"samples": 40, "skipped": 0}, name="count").rename_axis("reader report")
    assert formatting.table(counts).text.values.tolist() == [["samples", "40"], ["skipped", "0"]]


def test_row_numbers_are_no_column_and_row_labels_are_one():
    frame = pd.DataFrame({"photo": ["a", "b", "c", "d"], "top-2..5": ["x " * 40] * 4})
    shown = formatting.table(frame.iloc[[0, 2, 3]])  # pandas would print 0, 2, 3
    assert list(shown.text.columns) == ["photo", "top-2..5"]
    assert shown.text["top-2..5"].tolist() == ["x " * 40] * 3  # never cut with "…"
    labelled = formatting.table(pd.DataFrame({"iou": [0.1, 0.2]}, index=["cls", "rollout"]))
    assert labelled.text.values.tolist() == [["cls", "0.100"], ["rollout", "0.200"]]


def test_every_displayed_frame_is_a_table():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    formatting.display_tables()
    frame = pd.DataFrame({"model": ["a", "b", "c"], "iou": [0.1, 0.2, 0.3]}).iloc[[0, 2]]
    data, _ = shell.display_formatter.format(frame)
    assert data["text/html"] == formatting.table(frame)._repr_html_()
    assert "sightline-table narrow short" in data["text/html"]  # kept on one page
    InteractiveShell.clear_instance()


def test_a_split_table_never_leaves_one_row_alone_on_a_page():
    """Tables of 10 rows after text of growing height: wherever the page breaks, each page
    holds at least two of its rows (the report's CSS, rendered by WeasyPrint)."""
    from weasyprint import HTML

    rows = "".join(f"<tr><td>row{i}</td><td>{i}</td></tr>" for i in range(10))
    pages_per_height = []
    for height in np.arange(19.0, 25.6, 0.3):
        page = (f"<html><head><style>{report.CSS}</style></head><body>"
                f"<div style='height: {height:.1f}cm'>text</div><table><thead><tr><th>name</th>"
                f"<th>value</th></tr></thead><tbody>{rows}</tbody></table></body></html>")
        document = HTML(string=page).render()
        counts = [sum(f"row{i}" in _text(p._page_box) for i in range(10)) for p in document.pages]
        pages_per_height.append([c for c in counts if c])
    assert any(len(c) > 1 for c in pages_per_height)  # the table is split somewhere
    assert all(min(c) >= 2 for c in pages_per_height), pages_per_height


def _text(box) -> str:
    """The text of a WeasyPrint layout box and its descendants."""
    return getattr(box, "text", "") + "".join(_text(c) for c in getattr(box, "children", []))


def test_a_table_too_wide_for_landscape_is_split_repeating_its_key():
    frame = pd.DataFrame({"model": ["siglip2-tiny-random"], "method": ["probe"],
                          **{f"feature_number_{i}": [0.5] for i in range(30)}})
    shown = formatting.table(frame)
    parts = shown.parts()
    assert len(parts) >= 2
    assert all(p[:2] == ["model", "method"] for p in parts)
    assert sorted({c for p in parts for c in p}) == sorted(frame.columns)
    assert all(shown.chars(p) <= formatting.LANDSCAPE_CHARS for p in parts)
    assert "part 1 of" in shown._repr_html_()


def test_the_palette_keeps_baselines_and_models_apart():
    names = ["dinov2", "siglip2", "clip", "centre_gaussian", "random", "baseline · sobel"]
    colours = plots.palette(names)
    tones = [colours[n] for n in ("centre_gaussian", "random", "baseline · sobel")]
    models = [colours[n] for n in ("dinov2", "siglip2", "clip")]
    assert len(set(models)) == 3 and not set(models) & set(tones)
    assert plots.palette(["clip", "dinov2"])["clip"] == colours["clip"]  # sorted, so stable
    assert len(set(map(str, plots.line_styles(["cls", "rollout", "gradcam"]).values()))) == 3


# -- the rendered report -----------------------------------------------------------------------

FEATURES = ["portal", "rose_window", "flying_buttress", "pointed_arch", "round_arch",
            "tracery", "dome", "lantern", "pilaster", "blind_arcade", "gable", "tower"]


def _wide_tables() -> dict[str, pd.DataFrame]:
    """Tables shaped like the report's widest: the positive control, the shift table, head
    concentration, Q2 by feature (with its Kruskal–Wallis columns), and one wider still."""
    rng = np.random.default_rng(0)
    control = pd.DataFrame({
        "model": ["resnet50-tiny-random", "clip-tiny-random"], "variant": ["full.s0", "lora.s0"],
        "test_accuracy": [0.571, 0.262], "method": ["gradcam", "rollout"], "layer": [3, 1],
        "layer_stability": [0.97, 0.55], "metric": ["coverage", "iou@90"],
        "against": ["untrained", "centre baseline"], "reference": [0.116, 0.0414],
        "fine_tuned": [0.321, 0.0412], "delta": [0.205, -0.0002], "ci_low": [0.17, -0.003],
        "ci_high": [0.24, 0.003], "p_wilcoxon": [1e-7, 0.81], "p_ttest": [2e-8, 0.79],
        "d_z": [1.9, -0.02], "p_holm": [3e-6, 1.0], "outcome": ["enhanced", "equivalent"]})
    shift = pd.DataFrame({
        "model": ["clip-tiny-random"] * 2, "strategy": ["lora", "full"], "method": ["cls"] * 2,
        "layer": [1, 1], "metric": ["coverage", "iou"], "mean_frozen": [0.2461, 0.0713],
        "mean_finetuned": [0.246, 0.170], "delta": [-0.0001, 0.0988], "ci_low": [-0.0002, 0.06],
        "ci_high": [0.0, 0.13], "p_wilcoxon": [0.0004, 0.0], "p_holm": [0.003, 0.0],
        "d_z": [-0.61, 1.2], "verdict": ["equivalent", "enhanced"]})
    concentration = pd.DataFrame({
        "model": ["dinov3-tiny-random"], "method": ["cls"], "best_layer": [1], "best_head": [3],
        "best_mean": [0.0912], "best_cross_fit": [0.071], "head_stability": [0.42],
        "median_mean": [0.061], "ratio": [1.49], "top5_share": [0.61], "n_heads": [16],
        "statistic": [0.0301], "p_value": [0.0498]})
    by_feature = pd.DataFrame({
        "model": ["clip-tiny-random", "resnet50-tiny-random"], "strategy": ["full", "full"],
        "method": ["cls", "gradcam"], **{f: rng.normal(0, 0.05, 2) for f in FEATURES},
        "Kruskal-Wallis H": [12.3, 4.1], "p": [0.031, 0.94]})
    widest = pd.DataFrame({"model": ["siglip2-tiny-random"], "method": ["probe"],
                           **{f"{f}_{i}": [0.25] for i in range(3) for f in FEATURES}})
    return {"positive control": control, "shift": shift, "head concentration": concentration,
            "by feature": by_feature, "widest": widest}


def _png(width: float, height: float) -> str:
    import base64

    fig, ax = plt.subplots(figsize=(width, height))
    ax.plot([0, 1], [0, 1])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _executed_notebook(path: Path, tables: dict[str, pd.DataFrame]) -> None:
    cells = [nbformat.v4.new_markdown_cell(
        "# Tables and figures\n<div class=\"sightline-banner\">These numbers exercise the "
        "pipeline; they are not findings.</div>")]
    for title, frame in tables.items():
        cell = nbformat.v4.new_code_cell("display(table)")
        cell.outputs = [nbformat.v4.new_output(
            "display_data", data={"text/html": formatting.table(frame)._repr_html_(),
                                  "text/plain": repr(formatting.table(frame))})]
        cells += [nbformat.v4.new_markdown_cell(f"## {title}"), cell]
    for size, alt in (((7.0, 30.0), "A tall figure"), ((20.0, 3.0), None)):  # 8 gallery rows
        cell = nbformat.v4.new_code_cell("fig")
        cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": _png(*size)},
                                               metadata={"image/png": {"alt": alt}} if alt else {})]
        cells.append(cell)
    # a wide table and a tall bar chart from one cell (the leaderboard): a landscape page
    cell = nbformat.v4.new_code_cell("display(table); fig")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={
            "text/html": formatting.table(tables["shift"])._repr_html_(), "text/plain": "t"}),
        nbformat.v4.new_output("display_data", data={"image/png": _png(8.0, 12.0)})]
    cells.append(cell)
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """index.html and report.pdf of a one-notebook report holding the wide tables."""
    profile = tmp_path_factory.mktemp("report") / "demo"
    (profile / "notebooks").mkdir(parents=True)
    tables = _wide_tables()
    _executed_notebook(profile / "notebooks" / "wide.ipynb", tables)
    params_path = ROOT / "params" / "demo.yaml"
    params = config.load_params(params_path, base=ROOT)
    notebook = pipeline.Notebook("wide", profile / "notebooks" / "wide.ipynb", [])
    index = report.build_report(params, params_path, profile, [notebook], {})
    return index, profile / "report.pdf", tables


def _poppler(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        reason = f"no {tool}: install poppler-utils (apt-get install -y poppler-utils)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return found


def _pages(pdf: Path) -> list[dict]:
    """Per PDF page: its size in points and its words with their boxes (pdftotext -bbox)."""
    xhtml = subprocess.run([_poppler("pdftotext"), "-bbox", str(pdf), "-"], capture_output=True,
                           text=True, check=True).stdout
    pages = []
    for size, body in re.findall(r'<page width="([\d.]+)" height="[\d.]+">(.*?)</page>',
                                 xhtml, re.S):
        height = re.search(rf'<page width="{re.escape(size)}" height="([\d.]+)"', xhtml).group(1)
        words = [(float(x0), float(y0), float(x1), float(y1), w) for x0, y0, x1, y1, w in
                 re.findall(r'<word xMin="([\d.-]+)" yMin="([\d.-]+)" xMax="([\d.-]+)" '
                            r'yMax="([\d.-]+)">(.*?)</word>', body)]
        pages.append({"width": float(size), "height": float(height), "words": words})
    return pages


def test_every_table_column_is_on_a_page_and_no_word_leaves_it(rendered):
    _, pdf, tables = rendered
    pages = _pages(pdf)
    for page in pages:
        for x0, y0, x1, y1, word in page["words"]:
            assert x0 >= 0 and x1 <= page["width"] + 0.5, (word, x1, page["width"])
            assert y0 >= 0 and y1 <= page["height"] + 0.5, (word, y1, page["height"])
    text = " ".join(w[-1] for page in pages for w in page["words"]).replace("&gt;", ">")
    for title, frame in tables.items():
        for column in frame.columns:
            for piece in re.split(r"[ _]", column):
                assert piece in text, (title, column, piece)
    last = {"positive control": "equivalent", "shift": "enhanced", "head concentration": "0.05",
            "by feature": "0.94"}
    for title, value in last.items():  # the right-most column's cells, too
        assert value in text, (title, value)


def test_wide_tables_get_landscape_pages_and_narrow_text_stays_portrait(rendered):
    _, pdf, _ = rendered
    pages = _pages(pdf)
    words = lambda page: {w[-1] for w in page["words"]}  # noqa: E731
    shift = next(p for p in pages if "verdict" in words(p))
    assert shift["width"] > shift["height"]
    assert "shift" in words(shift)  # its heading goes with it
    summary = next(p for p in pages if "Run" in words(p) and "summary" in words(p))
    assert summary["width"] < summary["height"]


def test_every_figure_is_placed_within_the_page(rendered):
    _, pdf, _ = rendered
    listing = subprocess.run([_poppler("pdfimages"), "-list", str(pdf)], capture_output=True,
                             text=True, check=True).stdout.splitlines()[2:]
    pages = _pages(pdf)
    placed = []
    for line in listing:
        fields = line.split()
        if fields[2] != "image":  # an alpha channel (smask) is listed as its own row
            continue
        width, height, x_ppi, y_ppi = int(fields[3]), int(fields[4]), float(fields[12]), \
            float(fields[13])
        page = pages[int(fields[0]) - 1]  # its page's own size: portrait or landscape
        placed.append((width / x_ppi, height / y_ppi, page["width"] / 72, page["height"] / 72))
    assert len(placed) == 3
    assert sum(page_width > page_height for *_, page_width, page_height in placed) == 1
    for width, height, page_width, page_height in placed:
        assert width <= page_width - 2 * MARGIN + 0.01, (width, page_width)
        assert height <= page_height - 2 * MARGIN + 0.01, (height, page_height)


def test_pages_are_numbered_and_the_contents_give_them(rendered):
    index, pdf, _ = rendered
    assert "counter(page)" in report.CSS and "target-counter(attr(href), page)" in report.CSS
    pages = [p for p in subprocess.run([_poppler("pdftotext"), "-layout", str(pdf), "-"],
                                       capture_output=True, text=True, check=True
                                       ).stdout.split("\f") if p.strip()]
    for number, text in enumerate(pages, start=1):
        assert text.strip().splitlines()[-1].strip() == f"{number} / {len(pages)}"
    contents = dict(re.findall(r"(Run summary|Tables and figures|Appendix: parameters)[ .]+(\d+)",
                               pages[0]))
    assert len(contents) == 3
    for title, number in contents.items():  # each entry's number is the page its heading is on
        assert re.search(rf"^\s*{title}\s*$", pages[int(number) - 1], re.M), (title, number)
    assert int(contents["Appendix: parameters"]) > int(contents["Tables and figures"])
    page = index.read_text()
    assert page.count("<li><a href=") == 1 + 1 + 5 + 1  # summary, notebook + 5 sections, appendix


def test_the_parameters_are_a_formatted_appendix_at_the_end(rendered):
    index, _, _ = rendered
    page = index.read_text()
    appendix = page.index("Appendix: parameters</h1>")
    assert page.index("<section class=\"notebook\" id=\"wide\">") < appendix
    assert "profile: demo" in page[appendix:] and "profile: demo" not in page[:appendix]
    assert "null" not in page[appendix:]  # unset entries left out
    assert "\n  kind: synthetic\n" in page[appendix:]  # indented YAML, not one flow line
    assert str(ROOT) not in page[appendix:]  # paths as a params file writes them
    assert "\n  root: data/synthetic-demo\n" in page[appendix:]
    assert report._set({"a": None, "b": {"c": None}, "d": [{"e": None, "f": 1}], "g": 0}) == \
        {"d": [{"f": 1}], "g": 0}


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.alts = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.alts.append(dict(attrs).get("alt"))


def test_every_figure_has_alt_text(rendered):
    index, _, _ = rendered
    images = _Images()
    images.feed(index.read_text())
    assert len(images.alts) == 3 and all(alt and alt.strip() for alt in images.alts)
    assert images.alts[0] == "A tall figure"  # the figure's own, from its output's metadata
    assert images.alts[1] == "Figure under the heading “widest”"  # else where it stands


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def test_the_html_page_never_scrolls_sideways_wide_tables_scroll_in_their_box(rendered):
    if not (CHROMIUM and CHROMEDRIVER):
        reason = "no Chromium: install Debian's chromium and chromium-driver"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    index, _, _ = rendered
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"sightline-report-{os.getpid()}"
    for argument in ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--window-size=1400,1000", f"--user-data-dir={profile_dir}"]:
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.get(index.as_uri())
        page_width = driver.execute_script("return document.documentElement.scrollWidth")
        window = driver.execute_script("return document.documentElement.clientWidth")
        assert page_width <= window
        boxes = driver.execute_script(
            "return [...document.querySelectorAll('.sightline-table')]"
            ".map(e => [e.scrollWidth, e.clientWidth])")
        assert any(scroll > client for scroll, client in boxes)  # the widest scrolls inside
        banner = driver.execute_script(
            "const s = getComputedStyle(document.querySelector('.sightline-banner'));"
            "return [s.borderTopWidth, s.backgroundColor]")
        assert banner[0] != "0px" and banner[1] not in ("rgba(0, 0, 0, 0)", "transparent")
    finally:
        driver.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)
