"""Saliency maps behind one interface: `extract(model, pixel_values, methods)`.

Maps come back keyed ``(method, layer)`` as float32 arrays ``(B, K, gh, gw)`` on the
patch grid (CNN: the stage's grid), non-negative, larger = more attention. Per-head
methods have ``K = num_heads + 1`` (the last slot is the mean over heads); the others
``K = 1``. Modules by method family: `attention` (one forward pass's attention weights:
``cls``, ``rollout``, ``probe``, ``mean_received``, ``chefer``), `gradcam`, `xrai`, and
`sightline.attribution` (``attnlrp``, ``legrad``); `interface` dispatches on each
`sightline.registry.METHODS` entry's ``runs``; `common` holds what they share.
"""

from .attention import rollout
from .interface import extract, extract_with_logits
from .xrai import XraiSettings, xrai_call_function, xrai_maps, xrai_segments

__all__ = ["XraiSettings", "extract", "extract_with_logits", "rollout", "xrai_call_function",
           "xrai_maps", "xrai_segments"]
