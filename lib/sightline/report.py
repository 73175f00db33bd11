"""Stitch the executed notebooks into one self-contained HTML page (contents, run summary, a
section per notebook with its code hidden, the parameters) and the same page as a PDF."""

from __future__ import annotations

import html
import re
import time
from importlib import metadata
from pathlib import Path

import nbformat
import yaml
from nbconvert import HTMLExporter
from pygments.formatters import HtmlFormatter

from . import config
from .notebook_defaults import project_root

KEY_PACKAGES = ("torch", "torchvision", "transformers", "timm", "peft", "grad-cam", "saliency",
                "numpy", "scipy", "pandas", "h5py", "pingouin", "seaborn", "matplotlib", "papermill",
                "nbconvert", "weasyprint")
_HIDDEN_TAGS = {"parameters", "injected-parameters", "remove-cell"}

CSS = (Path(__file__).parent / "report.css").read_text()  # the page's and the PDF's


def notebook_section(path: Path, anchor: str) -> tuple[str, list[tuple[int, str, str]]]:
    """One executed notebook as HTML (its own ids prefixed by ``anchor``) and its headings."""
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if not _HIDDEN_TAGS & set(c.metadata.get("tags", []))]
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        cell.outputs = [o for o in cell.outputs
                        if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    body, _ = HTMLExporter(template_name="basic", exclude_input_prompt=True,
                           exclude_output_prompt=True, embed_images=True).from_notebook_node(nb)
    body = re.sub(r'(id="|href="#)([^"]+)"', lambda m: f'{m.group(1)}{anchor}-{m.group(2)}"', body)
    body = re.sub(r'<a class="anchor-link"[^>]*>.*?</a>', "", body)
    body = _alt_text(_landscape(body))
    headings = re.findall(r'<h([12]) id="([^"]+)"[^>]*>(.*?)</h\1>', body)
    return body, [(int(level), ident, re.sub(r"<[^>]+>", "", text).strip())
                  for level, ident, text in headings]


_CELL = '<div class="cell border-box-sizing '


def _landscape(body: str) -> str:
    """Mark the cells that show a table too wide for a portrait page, and the text cell just
    before each (its heading), for the PDF's landscape pages."""
    first, *cells = body.split(_CELL)
    marked = set()
    for i, cell in enumerate(cells):
        if "sightline-table wide" in cell:
            marked.add(i)
            if i and cells[i - 1].startswith("text_cell"):
                marked.add(i - 1)
    return first + "".join(_CELL + ("landscape " if i in marked else "") + cell
                           for i, cell in enumerate(cells))


def _summary(params: config.Params, params_path: Path, notebooks: list, records: dict) -> str:
    rows = [f"<tr><td>{nb.name}</td><td>{rec.get('seconds', '–')} s</td><td>"
            f"{rec.get('executed_at', 'not run')}</td><td>{rec.get('commit', '')}</td></tr>"
            for nb, rec in ((nb, records.get(nb.name, {})) for nb in notebooks)]
    installed = {d.metadata["Name"].lower() for d in metadata.distributions()}
    versions = [f"{name} {metadata.version(name)}" for name in KEY_PACKAGES if name in installed]
    return (
        "<h2 id='run-summary'>Run summary</h2>"
        f"<p>Profile <b>{params.profile}</b> from <code>{html.escape(str(params_path))}</code>; "
        f"report made {time.strftime('%Y-%m-%d %H:%M:%S')}.</p>"
        "<table class='summary'><tr><th>notebook</th><th>duration</th><th>executed</th>"
        f"<th>commit</th></tr>{''.join(rows)}</table>"
        f"<p><b>Packages:</b> {html.escape(', '.join(versions))}</p>"
        "<p>Every number in this report comes from a table in <code>tables/</code> next to "
        "this page.</p>"
        "<p><b>Explore it interactively</b> (each image, model, layer, head and expert box): "
        f"<code>python build.py explore --params {html.escape(str(params_path))}</code> serves "
        "the explorer on <code>http://127.0.0.1:8765/</code> and opens it in a browser.</p>"
    )


def _set(value: object) -> object:
    """``value`` without its unset entries: no null, no empty mapping or list, at any depth."""
    if isinstance(value, dict):
        value = {k: _set(v) for k, v in value.items()}
        return {k: v for k, v in value.items() if v not in (None, {}, [])}
    return [_set(v) for v in value] if isinstance(value, list) else value


class _ParamsDumper(yaml.SafeDumper):
    """Block style, a list of plain values on one line."""


_ParamsDumper.add_representer(list, lambda dumper, values: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", values, flow_style=not any(isinstance(v, dict | list) for v in values)))


def params_appendix(params: config.Params, params_path: Path) -> str:
    """The parameters this report was built with, as indented YAML without the unset entries;
    paths inside the project are shown relative to its root (as a params file writes them)."""
    root = f"{project_root(Path(params_path).parent)}/"
    text = yaml.dump(_set(params.model_dump(mode="json")), Dumper=_ParamsDumper, sort_keys=False,
                     width=44).replace(root, "")  # width: a column of the page
    return ("<section class='notebook' id='parameters'><h1 id='parameters-title'>Appendix: "
            "parameters</h1><p>The profile's parameters (<code>"
            f"{html.escape(str(params_path).removeprefix(root))}</code> with the defaults filled "
            "in; unset entries left out; paths relative to the project root).</p>"
            f"<pre class='params'>{html.escape(text)}</pre></section>")


_NO_ALT = re.compile(r'\salt="(No description has been provided for this image)?"')  # nbconvert's


def _alt_text(body: str) -> str:
    """Every figure without alt text of its own gets one naming the heading it sits under."""
    heading, pieces = "this section", []
    for piece in re.split(r"(<h[1-4][^>]*>.*?</h[1-4]>|<img\b[^>]*>)", body, flags=re.S):
        if re.match(r"<h[1-4]", piece):
            heading = html.unescape(re.sub(r"<[^>]+>", "", piece).strip())
        elif piece.startswith("<img") and (_NO_ALT.search(piece) or " alt=" not in piece):
            alt = html.escape(f"Figure under the heading “{heading}”", quote=True)
            piece = _NO_ALT.sub("", piece).replace("<img", f'<img alt="{alt}"', 1)
        pieces.append(piece)
    return "".join(pieces)


def build_report(params: config.Params, params_path: Path, profile_dir: Path, notebooks: list,
                 records: dict) -> Path:
    """Write ``index.html`` and ``report.pdf`` for a profile; returns the HTML path."""
    from weasyprint import HTML

    sections, toc = [], []
    for nb in notebooks:
        path = profile_dir / "notebooks" / f"{nb.name}.ipynb"
        if not path.exists():
            continue
        body, headings = notebook_section(path, nb.name)
        sections.append(f'<section class="notebook" id="{nb.name}">{body}</section>')
        items = "".join(f'<li><a href="#{i}">{html.escape(t)}</a></li>'
                        for level, i, t in headings if level == 2)
        title = next((t for level, _, t in headings if level == 1), nb.name)
        first = next((i for level, i, _ in headings if level == 1), nb.name)
        toc.append(f'<li><a href="#{first}">{html.escape(title)}</a><ul>{items}</ul></li>')
    pygments_css = HtmlFormatter().get_style_defs(".highlight")
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>sightline report: {params.profile}</title>"
        f"<style>{CSS}{pygments_css}</style></head><body>"
        "<button id='toggle-code' onclick=\"document.body.classList.toggle('show-code')\">"
        "show / hide code</button>"
        f"<h1>sightline: do vision models look where experts look?</h1>"
        "<nav class='toc'><b>Contents</b><ul><li><a href='#run-summary'>Run summary</a></li>"
        f"{''.join(toc)}<li><a href='#parameters-title'>Appendix: parameters</a></li></ul></nav>"
        f"{_summary(params, params_path, notebooks, records)}"
        f"{''.join(sections)}{params_appendix(params, params_path)}</body></html>"
    )
    index = profile_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    HTML(string=page, base_url=str(profile_dir)).write_pdf(profile_dir / "report.pdf")
    return index
