"""Loading: a spec built with random, pretrained or local-checkpoint weights into a
`LoadedModel` (eval mode, preprocessing, attention capture, Grad-CAM layers), and a missing
checkpoint as an error that says what to download and where to put it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from huggingface_hub.errors import HfHubHTTPError
from PIL import Image
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import nn
from torchvision.transforms import v2 as T

from .choices import spec_for
from .presets import REGISTRY
from .spec import Layout, ModelError, ModelSpec, Readout, Size, Weights

if TYPE_CHECKING:
    from sightline.config import ModelChoice


@dataclass
class LoadedModel:
    """A built model in eval mode plus everything needed to read maps off it.

    ``head`` (optional) maps the backbone's pooled features to style logits (a linear probe's
    or a fine-tuned model's head); Grad-CAM then targets a style logit. ``layout``: what
    `ModelSpec.describe` read off this module (None: read off it when first needed).
    """

    spec: ModelSpec
    module: nn.Module
    weights: Weights
    size: Size
    num_layers: int
    num_heads: int
    num_prefix_tokens: int
    grid: tuple[int, int]
    head: nn.Module | None = None
    layout: Layout | None = None

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def is_classifier(self) -> bool:
        return self.head is not None or self.spec.arch.classifier

    @cached_property
    def _layout(self) -> Layout:
        return self.layout or self.spec.describe(self.module)

    @property
    def methods(self) -> tuple[str, ...]:
        """The saliency methods that apply to this model."""
        return self._layout.methods

    @property
    def readout(self) -> Readout:
        return self._layout.readout

    @cached_property
    def _transform(self) -> T.Compose:
        return T.Compose([self.spec.geometry.transform(), T.Normalize(self.spec.mean, self.spec.std)])

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> normalised batch ``(B, 3, S, S)`` through the spec's geometry."""
        batch = torch.stack([self._transform(image.convert("RGB")) for image in images])
        return batch.to(self.device)

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        """The module's own forward (with the spec's extra arguments, e.g. MAE's noise)."""
        return self.spec.arch.forward(self.module, pixel_values, self.grid, **kwargs)

    def attentions(self, pixel_values: torch.Tensor) -> tuple[Any, Sequence[torch.Tensor]]:
        """One forward pass: its output and every layer's attention ``(B, heads, T, T)``
        (the one capture interface: HF ``output_attentions``, timm block hooks)."""
        return self.spec.arch.attentions(self.module, pixel_values, self.grid)

    def score(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Class logits for a classifier, else the pooled embedding ``(B, D)``."""
        features = self.spec.arch.features(self.forward(pixel_values))
        return features if self.head is None else self.head(features)

    def gradcam_layers(self) -> list[tuple[int, nn.Module]]:
        """(layer index, module) pairs that Grad-CAM reads, in forward order."""
        return self.spec.arch.gradcam_layers(self.module, self.num_layers)


def load_model(key: str | ModelSpec, *, weights: str = "random", size: str = "tiny", seed: int = 0,
               device: str = "cpu", checkpoint_dir: str | Path | None = None) -> LoadedModel:
    """Build the model registered under ``key`` (or given as a spec).

    ``checkpoint_dir`` is a Hugging Face hub cache directory (``hf download <id> --cache-dir
    DIR``) for pretrained weights; by default the usual one (``HF_HUB_CACHE``) is used. A
    spec's ``weights_file`` is loaded into a build of its architecture instead.
    """
    spec = key if isinstance(key, ModelSpec) else REGISTRY.get(key)
    if spec is None:
        raise ModelError(f"unknown model key {key!r}; registered keys: {sorted(REGISTRY)}")
    for name, value, allowed in (("weights", weights, ("pretrained", "random")),
                                 ("size", size, ("base", "tiny"))):
        if value not in allowed:
            raise ModelError(f"{name} must be {allowed[0]!r} or {allowed[1]!r}, got {value!r}")
    cache_dir = Path(checkpoint_dir) if checkpoint_dir else None
    if spec.weights_file is not None and spec.weights_file.is_dir():
        module = _load_pretrained(spec, cache_dir, str(spec.weights_file))
    elif weights == "pretrained" and spec.weights_file is None:
        if size != "base":
            raise ModelError(f"{spec.key}: pretrained weights exist at size 'base' only, got "
                             f"{size!r}")
        module = _load_pretrained(spec, cache_dir, spec.checkpoint)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = spec.arch.random(spec.checkpoint, size)
        if spec.weights_file is not None:
            load_checkpoint(module, spec.weights_file, spec.key)
    spec.arch.prepare(module)
    module = module.to(device).eval()
    layout = spec.describe(module)
    return LoadedModel(spec=spec, module=module, weights=weights, size=size,
                       num_layers=layout.num_layers, num_heads=layout.num_heads,
                       num_prefix_tokens=layout.num_prefix_tokens, grid=layout.grid, layout=layout)


def load_choice(choice: ModelChoice, *, seed: int = 0, device: str = "cpu",
                checkpoint_dir: str | Path | None = None) -> LoadedModel:
    """The model of a params ``models:`` entry (a preset key or a spec)."""
    weights = "random" if choice.weights == "random" else "pretrained"
    return load_model(spec_for(choice), weights=weights, size=choice.size, seed=seed,
                      device=device, checkpoint_dir=checkpoint_dir)


def _load_pretrained(spec: ModelSpec, cache_dir: Path | None, checkpoint: str) -> nn.Module:
    """The real checkpoint, or a ModelError that says how to get it."""
    try:
        return spec.arch.pretrained(checkpoint, cache_dir)
    except (OSError, HfHubHTTPError) as error:
        hub_id = spec.arch.hub_id(checkpoint)
        hint = getattr(spec.arch, "download_hint", lambda _: None)(checkpoint)
        cause = f" Cause: {type(error).__name__}: {error}"
        if hint:
            raise ModelError(f"model {spec.key!r}: weights {hub_id!r} are not in the local "
                             f"cache and cannot be downloaded here. {hint}{cause}") from error
        where = f"checkpoint_dir={cache_dir}" if cache_dir else "the Hugging Face hub cache"
        gated = (f" The repository is gated: accept the licence on https://huggingface.co/{hub_id} "
                 "and log in (`hf auth login`) before downloading." if spec.gated else "")
        raise ModelError(f"model {spec.key!r}: checkpoint {hub_id!r} is not in {where} and cannot be "
                         f"downloaded here. On a machine with network run `hf download {hub_id}` "
                         f"(older clients: `huggingface-cli download {hub_id}`), optionally with "
                         "`--cache-dir DIR`, then copy that directory here and set HF_HUB_CACHE=DIR or "
                         f"pass checkpoint_dir=DIR.{gated}{cause}") from error


# --- local checkpoint files ----------------------------------------------------------------


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin`` state_dict (a ``state_dict`` or
    ``model`` entry of a training checkpoint is unwrapped; a DataParallel ``module.``
    prefix is dropped)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for entry in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(entry), dict):
                state = state[entry]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a state_dict (a mapping of parameter names to tensors)")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_checkpoint(module: nn.Module, path: Path, key: str) -> None:
    """Load a local state_dict into ``module`` strictly, or say which keys do not fit."""
    if not path.is_file():
        raise ModelError(f"model {key!r}: checkpoint file {path} does not exist")
    state = read_state_dict(path)
    if isinstance(module, VisionTransformer):  # timm's own filter: position embeddings resampled
        state = checkpoint_filter_fn(state, module)  # to the grid the spec's input.size built
    own = module.state_dict()
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    problems = [f"{len(items)} {what} (e.g. {', '.join(items[:3])})" for what, items in (
        ("missing keys", sorted(set(own) - set(state))), ("unexpected keys", sorted(set(state) - set(own))),
        ("shape mismatches (file vs model)", shapes)) if items]
    if problems:
        raise ModelError(f"model {key!r}: {path} does not fit {type(module).__name__}: "
                         + "; ".join(problems))
    module.load_state_dict(state)
