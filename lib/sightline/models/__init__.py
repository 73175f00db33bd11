"""Models by spec: a source builds the module; what can be read off it is derived from it.

A model is a `ModelSpec`: a source (Hugging Face transformers, timm, torchvision or a
Python factory), a name (hub id or local directory, timm or torchvision model name,
``package.module:function``), optional local weights and optional preprocessing /
Grad-CAM overrides. `spec_for(choice)` turns a params ``models:`` entry into one; the
registry's keys (`REGISTRY`) are presets of the same spec, and each also builds offline
at ``size="tiny"`` with random weights (tests, demo: hidden 64, 4 layers, 4 heads, the
real model's input frame and patch grid). ``weights="pretrained"`` loads the real
checkpoint (hub cache or network); ``weights="random"`` seeds random weights.

Derived from the built module and its own config, not declared (`ModelSpec.describe`):

- the token layout: CLS and the other prefix tokens (registers, distillation token),
  layers, heads, the patch grid (HF config; timm ``num_prefix_tokens``,
  ``patch_embed.grid_size``, ``blocks``, ``attn.num_heads``);
- the saliency methods that apply (`applicable_methods`);
- preprocessing (`Geometry`, mean, std): the HF image processor config, timm's
  ``pretrained_cfg``, torchvision weights' ``transforms()``, unless ``input`` overrides it.

Transformers load with eager attention and timm attention blocks with fused attention
switched off, so every layer's softmax weights exist (`LoadedModel.attentions`).

The package, one job a module: `spec` (spec, layout, methods), `preprocessing`, one module
per source (`from_hf`, `from_timm`, `from_torchvision`, `from_python`), `tensor_archs` (the
archs of modules that return one tensor), `presets` (`REGISTRY`), `choices` (specs from
params entries), `loading` (built models and local checkpoints).
"""

from sightline.models.choices import CHECKPOINT_HELP, SOURCES, check_choices, spec_for
from sightline.models.from_hf import HFVision, pooling_heads
from sightline.models.from_timm import packaged_efficientnet_lite0
from sightline.models.loading import LoadedModel, load_checkpoint, load_choice, load_model
from sightline.models.preprocessing import CLIP_MEAN, CLIP_STD, HALF, IMAGENET_MEAN, IMAGENET_STD
from sightline.models.presets import REGISTRY, preset_keys, preset_table
from sightline.models.spec import Layout, ModelError, ModelSpec, applicable_methods
from sightline.models.tensor_archs import TimmClassifier, TimmCNN, TimmViT

__all__ = [
    "CHECKPOINT_HELP", "CLIP_MEAN", "CLIP_STD", "HALF", "IMAGENET_MEAN", "IMAGENET_STD",
    "REGISTRY", "SOURCES", "HFVision", "Layout", "LoadedModel", "ModelError", "ModelSpec",
    "TimmCNN", "TimmClassifier", "TimmViT", "applicable_methods", "check_choices",
    "load_checkpoint", "load_choice", "load_model", "packaged_efficientnet_lite0",
    "pooling_heads", "preset_keys", "preset_table", "spec_for",
]  # fmt: skip
