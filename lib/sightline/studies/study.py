"""A study opened from its params: the data set, the model choices, the fine-tuning runs and
the map stores, each computed once on first use (what six notebook preludes used to rebuild).

    study = Study.open("params/demo.yaml")
    study.samples, study.names, study.jobs, study.tables   # what every analysis reads

A build's notebook makes one from the sections papermill injected (`Study.from_sections`);
from your own notebook or script, `Study.open` a params file. Tables are read and written
through `read_table` / `write_table`, in one folder (`tables`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from .. import config, data, extract, saliency
from .. import finetune as ft
from .. import models as registry


@dataclass
class Study:
    """One profile's study; every attribute is computed lazily and kept."""

    params: config.Params
    tables: Path
    _manifests: list[dict] | None = field(default=None, repr=False)

    @classmethod
    def open(cls, params: str | Path = "params/demo.yaml", *, root: str | Path | None = None,
             tables: str | Path | None = None) -> Study:
        """Open a params file (relative paths in it resolve against ``root``, default: the
        project root). Tables default to the build's ``report/<profile>/tables``."""
        from ..notebook_defaults import project_root

        root = Path(root) if root is not None else project_root()
        path = Path(params)
        loaded = config.load_params(path if path.is_absolute() else root / path, base=root)
        folder = Path(tables) if tables is not None else root / "report" / loaded.profile / "tables"
        return cls(loaded, folder)

    @classmethod
    def from_sections(cls, tables: str | Path, **sections: Any) -> Study:
        """A study from params sections as a build injects them (paths already resolved)."""
        sections.setdefault("profile", Path(tables).parent.name or "notebook")
        return cls(config.Params.model_validate(sections), Path(tables))

    # --- data ---------------------------------------------------------------------------
    @cached_property
    def dataset(self) -> data.WikiChurches:
        return data.load_dataset(self.params.dataset.model_dump(mode="json"))

    @property
    def samples(self) -> list[data.Sample]:
        return self.dataset.samples

    @cached_property
    def dataset_id(self) -> str:
        return data.dataset_fingerprint(self.params.dataset.model_dump(mode="json"))

    # --- models -------------------------------------------------------------------------
    @property
    def choices(self) -> tuple[config.ModelChoice, ...]:
        return self.params.models

    @cached_property
    def names(self) -> dict[str, str]:
        """Preset key or spec key -> the model's name in every table."""
        return {c.key: extract.model_name(c) for c in self.choices}

    @cached_property
    def specs(self) -> dict[str, registry.ModelSpec]:
        """Model name -> its spec (layout, geometry, methods)."""
        return {self.names[c.key]: registry.spec_for(c) for c in self.choices}

    @cached_property
    def geometries(self) -> dict:
        return {name: spec.geometry for name, spec in self.specs.items()}

    # --- fine-tuning and map stores -----------------------------------------------------
    @cached_property
    def runs(self) -> list[ft.Run]:
        """The planned fine-tuning runs (none when the data set has no training pool)."""
        runs = ft.plan(self.choices, self.params.finetune, self.params.seed)
        return runs if self.dataset.has_pool else []

    @cached_property
    def splits(self) -> dict[int, ft.Split]:
        return ft.splits_for(self.dataset, self.dataset_id, self.params.finetune,
                             [r.seed for r in self.runs])

    def train(self, *, progress: bool = True) -> list[dict]:
        """Train (or read from their checkpoints) every planned run; their manifests."""
        if self._manifests is None:
            self._manifests = ft.train_all(
                self.runs, self.splits, self.params.finetune, model_seed=self.params.seed,
                execution=self.params.execution, progress=progress)
        return self._manifests

    @property
    def manifests(self) -> list[dict]:
        """The runs' manifests (trained first where a checkpoint is missing)."""
        return self.train(progress=False)

    @cached_property
    def jobs(self) -> dict[tuple[str, str], extract.MapJob]:
        """``{(model name, variant): job}``: every variant's map store, frozen included."""
        settings = self.params.extraction
        return ft.map_jobs(self.choices, self.manifests, cache_dir=settings.cache_dir,
                           dataset_id=self.dataset_id, seed=self.params.seed,
                           xrai=saliency.XraiSettings(**settings.xrai.model_dump()))

    @property
    def stores(self) -> dict[tuple[str, str], Any]:
        return {key: job.store for key, job in self.jobs.items()}

    @cached_property
    def baseline_store(self):
        return extract.store_for(self.params.extraction.cache_dir, self.dataset_id, "baseline",
                                 "none")

    # --- tables -------------------------------------------------------------------------
    def table_path(self, name: str) -> Path:
        return self.tables / name

    def read_table(self, name: str) -> pd.DataFrame:
        """A table this profile's build wrote (``.csv`` or ``.parquet``)."""
        path = self.table_path(name)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such table; build the profile first "
                                    f"(python build.py --params <this profile's file>)")
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)

    def write_table(self, name: str, frame: pd.DataFrame) -> Path:
        """Write one table into this study's folder (`write_table`); returns its path."""
        return write_table(self.tables, name, frame)


def write_table(tables: str | Path, name: str, frame: pd.DataFrame) -> Path:
    """Write one table into ``tables`` (the one place tables are written, for a notebook with
    no models too, such as 00_data); returns its path."""
    path = Path(tables) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path
