"""Saliency maps behind one interface, `extract(model, pixel_values, methods)`: keyed ``(method,
layer)``, float32 ``(B, K, gh, gw)`` on the patch grid (CNN: the stage's), non-negative, larger =
more attention; ``K = num_heads + 1`` for per-head methods (the head mean last), else 1. One
module per method family (`attention`, `gradcam`, `xrai`, `sightline.attribution`)."""

from .attention import rollout
from .interface import extract, extract_with_logits
from .xrai import XraiSettings, xrai_call_function, xrai_maps, xrai_segments

__all__ = ["XraiSettings", "extract", "extract_with_logits", "rollout", "xrai_call_function",
           "xrai_maps", "xrai_segments"]
