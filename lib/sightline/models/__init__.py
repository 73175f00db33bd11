"""Models by spec: a source builds the module; what can be read off it is derived from it.

A `ModelSpec` is a source (Hugging Face transformers, timm, torchvision or a Python factory),
a name (hub id or local directory, timm / torchvision name, ``package.module:function``),
optional local weights and optional preprocessing / Grad-CAM overrides; `spec_for(choice)`
makes one of a params ``models:`` entry, and the presets (`REGISTRY`) are specs too, each
also built offline at ``size="tiny"`` with random weights (tests, demo). Derived from the
built module and its own config (`ModelSpec.describe`): the token layout (prefix tokens,
layers, heads, patch grid), the saliency methods that apply, and the preprocessing, unless
``input`` overrides it. Transformers load with eager attention and timm blocks with fused
attention off, so every layer's softmax weights exist (`LoadedModel.attentions`).
"""

from .choices import CHECKPOINT_HELP, SOURCES, check_choices, spec_for
from .from_hf import HFVision, pooling_heads
from .from_timm import packaged_efficientnet_lite0  # params' factory path
from .loading import LoadedModel, load_checkpoint, load_choice, load_model
from .preprocessing import CLIP_STD, IMAGENET_MEAN, IMAGENET_STD
from .presets import REGISTRY, preset_keys, preset_table
from .spec import Layout, ModelError, ModelSpec
from .tensor_archs import TimmClassifier, TimmCNN, TimmViT

__all__ = [
    "CHECKPOINT_HELP", "CLIP_STD", "IMAGENET_MEAN", "IMAGENET_STD", "REGISTRY", "SOURCES", "HFVision",
    "Layout", "LoadedModel", "ModelError", "ModelSpec", "TimmCNN", "TimmClassifier", "TimmViT",
    "check_choices", "load_checkpoint", "load_choice", "load_model", "packaged_efficientnet_lite0",
    "pooling_heads", "preset_keys", "preset_table", "spec_for",
]  # fmt: skip
