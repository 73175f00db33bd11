"""How every notebook shows a table (`table`): one number format (p-values to two significant
digits, never ``0.0``; NaN as a dash), and a layout that fits the report's page."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from itertools import takewhile

import numpy as np
import pandas as pd

P_BELOW = 1e-4  # p-values below this print as "< 1e-4"
_P_COLUMN = re.compile(r"(^|[ _])p($|[ _(])")  # p, p_holm, p_value, "p (binomial)", "Holm p"
# Whole-number floats print as integers when they count something (a share of 1.0 stays 1.000)
_COUNT_COLUMN = re.compile(r"(^|[ _])(n|layer|head|epoch|seed|images|boxes|dof|k)s?($|[ _])")
# What fits a line of an A4 page at the report's table type (7 pt DejaVu Sans, 1.5 cm
# margins): characters of the widest cell (or header word) per column, summed, plus a
# per-column allowance for padding and borders.
PORTRAIT_CHARS = 130
LANDSCAPE_CHARS = 195
_PER_COLUMN = 2
SHORT_ROWS = 20  # a table up to this many rows is never split across pages


def format_p(p: float) -> str:
    """A p-value as printed: two significant digits, ``< 1e-4`` below 1e-4, a dash for NaN."""
    if pd.isna(p):
        return "–"
    if p < P_BELOW:  # a no-break space: "<" never wraps away from its bound
        return f"<\u00a0{P_BELOW:.0e}".replace("e-0", "e-")
    return f"{p:.2g}"


def format_number(value: float, digits: int = 3) -> str:
    """A float rounded to ``digits`` decimals, with no ``-0.000``; a dash for NaN."""
    if pd.isna(value):
        return "–"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def is_p_column(name: str) -> bool:
    """Whether a column holds p-values, by its name (``p``, ``p_holm``, ``p (t-test)``...)."""
    return bool(_P_COLUMN.search(str(name)))


def _flat(frame: pd.DataFrame | pd.Series) -> pd.DataFrame:
    """The index as ordinary columns, and one header row of plain column names."""
    frame = frame.to_frame() if isinstance(frame, pd.Series) else frame.copy()
    if isinstance(frame.columns, pd.MultiIndex):
        frame.columns = [" · ".join(str(p) for p in c if str(p)) for c in frame.columns]
    frame.columns = [str(c) for c in frame.columns]
    frame.columns.name = None
    named = any(name is not None for name in frame.index.names)
    if named or not pd.api.types.is_integer_dtype(frame.index):  # not just row numbers: data
        frame.index.names = [name if name is not None else "" if frame.index.nlevels == 1
                             else f"level {i}" for i, name in enumerate(frame.index.names)]
        frame = frame.reset_index()
    return frame.reset_index(drop=True)


def _column_text(column: pd.Series, name: str, digits: int) -> list[str]:
    if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
        return ["–" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                for v in column.astype(object)]
    values = column.to_numpy(dtype=float, na_value=np.nan)
    if is_p_column(name):
        return [format_p(v) for v in values]
    finite = values[np.isfinite(values)]
    whole = len(finite) and np.all(finite == np.round(finite)) and np.all(np.abs(finite) < 1e15)
    if pd.api.types.is_integer_dtype(column) or (
            whole and (np.abs(finite).max() >= 2 or _COUNT_COLUMN.search(name))):
        return ["–" if math.isnan(v) else f"{int(v)}" for v in values]
    return [format_number(v, digits) for v in values]


def _width(name: str, cells: Sequence[str]) -> int:
    """Characters a column needs: its widest cell, or its header's longest word (headers wrap
    at spaces and underscores)."""
    header = max((len(w) for w in re.split(r"[ _]", name)), default=0)
    return max([header, *(max((len(w) for w in c.split(" ")), default=0) for c in cells)])


class Table:
    """A formatted table: HTML for the notebook and the report, text for a console."""

    def __init__(self, text: pd.DataFrame, key: Sequence[str], caption: str | None = None):
        self.text, self.key, self.caption = text, list(key), caption
        self.widths = {c: _width(c, text[c].tolist()) for c in text.columns}

    def chars(self, columns: Sequence[str] | None = None) -> int:
        """The estimated line length of the table (or of some of its columns), in characters."""
        return sum(self.widths[c] + _PER_COLUMN for c in (columns or self.text.columns))

    def parts(self) -> list[list[str]]:
        """The column groups shown as separate tables: one unless even a landscape line is too
        short, then as few as fit, each repeating the key columns."""
        if self.chars() <= LANDSCAPE_CHARS:
            return [list(self.text.columns)]
        rest = [c for c in self.text.columns if c not in self.key]
        room = LANDSCAPE_CHARS - self.chars(self.key)
        for n in range(2, len(rest) + 1):  # the fewest parts of about equal width that fit
            target = self.chars(rest) / n
            groups, current = [], []
            for column in rest:
                grown = self.chars([*current, column])
                if current and (grown > room or (grown > target and len(groups) < n - 1)):
                    groups.append(current)
                    current = []
                current.append(column)
            groups.append(current)
            if len(groups) <= n and all(self.chars(g) <= room for g in groups):
                return [[*self.key, *g] for g in groups]
        return [[*self.key, c] for c in rest]

    def _html_table(self, columns: Sequence[str]) -> str:
        head = "".join(f"<th>{_header(c)}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
            for row in self.text[list(columns)].itertuples(index=False)
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def _repr_html_(self) -> str:
        parts = self.parts()
        layout = "wide" if max(self.chars(p) for p in parts) > PORTRAIT_CHARS else "narrow"
        if len(self.text) <= SHORT_ROWS:
            layout += " short"
        caption = f"<p class='caption'>{html.escape(self.caption)}</p>" if self.caption else ""
        tables = []
        for i, columns in enumerate(parts):
            label = (f"<p class='part'>part {i + 1} of {len(parts)} (columns "
                     f"{', '.join(html.escape(c) for c in columns if c not in self.key)})</p>"
                     if len(parts) > 1 else "")
            tables.append(f"{label}{self._html_table(columns)}")
        return f"<div class='sightline-table {layout}'>{caption}{''.join(tables)}</div>"

    def __repr__(self) -> str:
        text = self.text.to_string(index=False)
        return f"{self.caption}\n{text}" if self.caption else text


def _header(name: str) -> str:
    """A column header that may wrap after underscores as well as at spaces."""
    return html.escape(name).replace("_", "_<wbr>")


def table(frame: pd.DataFrame | pd.Series, *, digits: int = 3, caption: str | None = None) -> Table:
    """``frame`` as the report shows it (see the module docstring); a split table repeats its
    leading text columns (up to three)."""
    flat = _flat(frame)
    text = pd.DataFrame({c: _column_text(flat[c], c, digits) for c in flat.columns},
                        columns=flat.columns)
    key = list(takewhile(lambda c: not pd.api.types.is_numeric_dtype(flat[c]), flat.columns))[:3]
    return Table(text, key, caption)


def display_tables() -> None:
    """Every DataFrame or Series the running notebook displays is shown as its `table`: no
    index column of row numbers, no cell cut short, the report's number format."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        html_formatter = shell.display_formatter.formatters["text/html"]
        for kind in (pd.DataFrame, pd.Series):
            html_formatter.for_type(kind, lambda frame: table(frame)._repr_html_())
