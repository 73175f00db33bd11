"""Deterministic demo data, written in the real data sets' own on-disk formats (which the
readers in `sightline.data` then read like any other copy).

- `make_synthetic`: a WikiChurches folder of church façades whose expert boxes are exactly
  the drawn diagnostic parts of each style (`facades`, `parts`), plus a style-labelled pool
  from other churches in church-disjoint splits (`wikichurches`);
- `make_human_attention`: a stand-in of the ML Interpretability Benchmark (`human_attention`).

Each folder carries a manifest (`manifest`): it is reused while every file matches it.
"""

from .facades import FEATURES, STYLE_PARTS
from .human_attention import make_human_attention
from .wikichurches import make_synthetic

__all__ = ["FEATURES", "STYLE_PARTS", "make_human_attention", "make_synthetic"]
