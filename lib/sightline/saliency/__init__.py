"""Saliency maps behind one interface: `extract(model, pixel_values, methods)`.

Maps come back keyed ``(method, layer)`` as float32 arrays ``(B, K, gh, gw)`` on the
patch grid (CNN: the stage's grid), non-negative, larger = more attention. Per-head
methods have ``K = num_heads + 1`` (the last slot is the mean over heads); the others
``K = 1``. One module per method family:

- `attention`: ``cls``, ``rollout``, ``probe``, ``mean_received`` and ``chefer``, read from
  one forward pass's attention weights;
- `gradcam`: ``gradcam`` (pytorch-grad-cam's GradCAM at the layer's grid);
- `xrai`: ``xrai`` (XRAI from PAIR's ``saliency`` package, `XraiSettings`);
- (`sightline.attribution`) ``attnlrp`` and ``legrad``: AttnLRP and LeGrad relevance per
  layer for a class logit (LeGrad per head too), with Chefer's target and head requirement;
- `interface`: `extract`, which dispatches to them; `common`: what they share (map keys,
  the classifier and target-class checks, frozen parameters).

The methods are entries of `sightline.registry.METHODS`, each naming its function in one of
these modules; extraction dispatches on the entry's ``runs``. All attention methods
(``chefer`` included) share one forward pass (`LoadedModel.attentions`: HF
``output_attentions`` or hooks on timm attention blocks). Which methods apply to a model is
derived from its readout (`sightline.registry.applicable_methods`). `extract_with_logits`
also returns a classifier's class logits from the forward pass the maps ran (its prediction
at no extra cost).
"""

from .attention import rollout
from .interface import extract, extract_with_logits
from .xrai import XraiSettings, xrai_call_function, xrai_maps, xrai_segments

__all__ = ["XraiSettings", "extract", "extract_with_logits", "rollout", "xrai_call_function",
           "xrai_maps", "xrai_segments"]
