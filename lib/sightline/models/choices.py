"""Specs from params ``models:`` entries: a preset by its key, or a spec whose architecture
is built once (random weights) and read off, with preprocessing from the checkpoint's own
config and the entry's ``input`` over it."""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from . import from_hf, from_timm, from_torchvision
from .from_python import FactoryBuilder
from .from_timm import TimmBuilder, timm_preprocessing
from .from_torchvision import TorchvisionBuilder
from .preprocessing import Preprocessing, resolve_preprocessing
from .presets import REGISTRY, preset_keys
from .spec import Arch, Builder, ModelError, ModelSpec, Study, lora_defaults
from .tensor_archs import tensor_arch

if TYPE_CHECKING:
    from sightline.config import ModelChoice

# What each source needs in a params `models:` entry (`python build.py models` lists it).
SOURCES: dict[str, str] = {
    "hf": "name: a Hugging Face id (in the hub cache for weights: pretrained) or a local "
    "directory saved with save_pretrained; preprocessing from its preprocessor_config.json",
    "timm": "name: a timm model name, with a pretrained tag for weights: pretrained "
    "(e.g. convnext_tiny.fb_in1k, from the hub cache); preprocessing from its pretrained_cfg",
    "torchvision": "name: a torchvision.models builder (resnet50); weights: a weights enum "
    "name (IMAGENET1K_V2; pretrained = DEFAULT) from the torch hub cache, or random; "
    "preprocessing from the weights' transforms()",
    "python": "factory: 'package.module:function' returning an nn.Module (called with no "
    "arguments); input: unless the module carries a timm pretrained_cfg",
}
CHECKPOINT_HELP = (
    "checkpoint: a local .safetensors / .pth / .bin state_dict loaded into the built module "
    "(any source), or a local HF directory (source hf)"
)


def check_choices(choices: Sequence[ModelChoice], study: Study, section: str) -> None:
    """A params ``models`` list of ``study`` against the registry before any work: each
    entry a preset of the study, or a spec under a new key whose layout can be read; else a
    one-line ModelError naming the entry (``section.index``) and what is allowed."""
    presets = preset_keys(study)
    for index, choice in enumerate(choices):
        where = f"'{section}.{index}.key'"
        if choice.source is None and choice.key not in presets:
            close = difflib.get_close_matches(choice.key, presets, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ModelError(f"{where} is {choice.key!r}; allowed: {', '.join(presets)} (or a "
                             f"spec with a 'source').{hint}")
        if choice.source is not None and choice.key in REGISTRY:
            raise ModelError(f"{where}: {choice.key!r} is a preset key; name your spec with a "
                             "new key")
        if choice.source is not None:
            spec_for(choice)


def spec_for(choice: ModelChoice) -> ModelSpec:
    """The spec of a params ``models:`` entry: the preset of its key, or its own spec."""
    if choice.source is None:
        if choice.key not in REGISTRY:
            raise ModelError(f"unknown model key {choice.key!r}; presets: {sorted(REGISTRY)}")
        return REGISTRY[choice.key]
    return _spec_from_choice(choice)


@functools.cache
def _spec_from_choice(choice: ModelChoice) -> ModelSpec:
    """Build the architecture once (random weights) and read off it what it is."""
    key, source = choice.key, choice.source
    name = choice.factory if source == "python" else choice.name
    if source == "timm":
        from_timm.check_name(key, name)
    if source == "torchvision":
        from_torchvision.check_name(key, name, choice.weights)
    if source == "hf":
        # a local checkpoint directory carries its own config and processor config
        where = str(choice.checkpoint) if choice.checkpoint and choice.checkpoint.is_dir() else name
        vision = from_hf.checkpoint_arch(key, where)
        derived = from_hf.hf_preprocessing(key, where) or from_hf.hf_preprocessing(key, name)
        probe = _probe_module(vision, name, key)
        geometry, mean, std = resolve_preprocessing(key, derived, choice.input)
        vision.check_frame(probe, geometry, key)
        arch: Arch = dataclasses.replace(vision, lora=lora_defaults(probe))
    else:
        tag = {"pretrained": "DEFAULT", "random": None}.get(choice.weights, choice.weights)
        builder: Builder = {"timm": TimmBuilder(), "python": FactoryBuilder(),
                            "torchvision": TorchvisionBuilder(tag)}[source]
        probe = _probe_module(builder, name, key)
        derived = _module_preprocessing(key, name, probe, builder)
        geometry, mean, std = resolve_preprocessing(key, derived, choice.input)
        if source == "timm" and _built_side(probe) not in (None, geometry.size):
            builder = TimmBuilder(img_size=geometry.size)
            probe = _probe_module(builder, name, key)
        arch = tensor_arch(key, probe, builder, choice, geometry)
    spec = ModelSpec(key=key, checkpoint=name, arch=arch, geometry=geometry, mean=mean, std=std,
                     source=source, weights_file=choice.checkpoint,
                     notes=f"spec: source {source}, {name}")
    spec.describe(probe)  # a layout that cannot be read stops here, before any work
    return spec


def _probe_module(builder: Builder | Arch, name: str, key: str) -> nn.Module:
    """A random-weight build of the spec's architecture, to read its layout off."""
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return builder.random(name, "base").eval()
    except ModelError:
        raise
    except Exception as error:  # a user factory or a name the library rejects
        raise ModelError(f"model {key!r}: building {name!r} failed: {type(error).__name__}: "
                         f"{error}") from error


def _built_side(module: nn.Module) -> int | None:
    """The square input side a patch-embedding module (timm ViT, Swin, ...) was built for;
    None for one that takes any size (CNNs, ``dynamic_img_size``)."""
    embed = getattr(module, "patch_embed", None)
    if embed is None or getattr(embed, "dynamic_img_size", False) or \
            getattr(embed, "img_size", None) is None:
        return None
    return int(embed.img_size[0])


def _module_preprocessing(key: str, name: str, module: nn.Module,
                          builder: Builder) -> Preprocessing | None:
    """torchvision weights' ``transforms()``, else the module's timm ``pretrained_cfg``."""
    if isinstance(builder, TorchvisionBuilder) and builder.tag is not None:
        return builder.preprocessing(key, name)
    config = getattr(module, "pretrained_cfg", None)
    if not config or "input_size" not in config:
        return None
    return timm_preprocessing(key, config)
