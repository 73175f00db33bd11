"""Deterministic demo data in the real data sets' own on-disk formats, read by `sightline.data`
like any other copy: `make_synthetic` (WikiChurches: church façades whose expert boxes are the
drawn diagnostic parts of each style, and a style-labelled pool) and `make_human_attention`
(the ML Interpretability Benchmark). A folder is reused while every file matches its manifest.
"""

from .facades import FEATURES, STYLE_PARTS
from .human_attention import make_human_attention
from .wikichurches import make_synthetic

__all__ = ["FEATURES", "STYLE_PARTS", "make_human_attention", "make_synthetic"]
