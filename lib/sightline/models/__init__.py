"""Models by spec: a source (transformers, timm, torchvision, a Python factory) builds the
module; its layout, saliency methods and preprocessing are read off it and its own config
(`ModelSpec.describe`). `spec_for` makes a spec of a params ``models:`` entry; the presets
(`REGISTRY`) are specs too, each also built offline at ``size="tiny"`` with random weights.
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
