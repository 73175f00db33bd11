"""The demo profile's values as a notebook's ``parameters`` defaults, so a notebook runs as is in
JupyterLab (a build injects its profile's after them); such a run writes its tables to
``report/<profile>/interactive/tables/``, never into the build's."""

from __future__ import annotations

import os
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import config

DEMO = Path("params") / "demo.yaml"
INTERACTIVE = "interactive"  # report/<profile>/interactive/tables: an interactive run's tables


def project_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding the demo params file,
    else the one this library lives in (a kernel started elsewhere)."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / DEMO).is_file() and (folder / "notebooks").is_dir():
            return folder
    return Path(__file__).resolve().parents[2]


@lru_cache(maxsize=4)
def _demo_values(root: Path) -> dict[str, Any]:
    params = config.load_params(root / DEMO, base=root)
    values = params.model_dump(mode="json")
    values["tables_dir"] = str(root / "report" / params.profile / "tables")
    values["project_root"] = str(root)
    return values


def default(name: str) -> Any:
    """The demo profile's value of a notebook parameter (a params section, or ``tables_dir``:
    outside a build, the interactive folder of `interactive_tables`)."""
    values = _demo_values(project_root())
    if name not in values:
        raise KeyError(f"'{name}' is neither a section of {DEMO} nor a build-provided value "
                       f"({', '.join(values)})")
    if name == "tables_dir" and not os.environ.get("SIGHTLINE_BUILD"):
        return str(interactive_tables(Path(values["tables_dir"])))
    return values[name]


def interactive_tables(build_tables: Path) -> Path:
    """The tables folder of an interactive run, beside the build's, which it leaves as it is;
    the build's tables it lacks are copied in first (Q2 reads Q1's scores)."""
    folder = build_tables.parent / INTERACTIVE / build_tables.name
    folder.mkdir(parents=True, exist_ok=True)
    missing = [table for table in sorted(build_tables.glob("*"))
               if table.is_file() and not (folder / table.name).exists()]
    for table in missing:
        shutil.copy2(table, folder / table.name)
    note = f"; {len(missing)} of the build's tables copied in as inputs" if missing else ""
    print(f"Interactive run: tables go to {folder} (the build's {build_tables} is left as the "
          f"build made it{note}). Set tables_dir in the parameters cell to write elsewhere.")
    return folder
