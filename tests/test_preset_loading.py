"""Every preset the real profiles list, and the demo's, loads its pretrained weights from an
offline cache.

The cache is written by the test in the layout `hf download` leaves: Hugging Face presets as
the checkpoint's own class (full CLIP / SigLIP models whose vision tower is taken, MAE's
pre-training model saved with mask_ratio 0.75, DINOv2 with registers ...) at a tiny size, timm
presets as the full-size architecture's ``model.safetensors``. Loading goes through the
profile's own entry, so a preset a real profile names cannot lose its pretrained path unnoticed.
"""

from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from transformers import (
    CLIPConfig,
    CLIPModel,
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    DINOv3ViTConfig,
    DINOv3ViTModel,
    SiglipConfig,
    SiglipModel,
    ViTMAEConfig,
    ViTMAEForPreTraining,
)

from sightline import config
from sightline.models import REGISTRY, load_choice
from sightline.saliency import extract

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ("wikichurches.yaml", "shared_interest.yaml")

VISION = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
          "intermediate_size": 128, "image_size": 224, "patch_size": 16}
TEXT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64}
DINOV2 = {**VISION, "patch_size": 14, "image_size": 518}
MAE_DECODER = {"decoder_hidden_size": 32, "decoder_num_hidden_layers": 1,
               "decoder_num_attention_heads": 2, "decoder_intermediate_size": 64}

# Hugging Face presets: what the hub repository holds, and the part of it the preset loads.
HUB_MODELS = {
    "dinov2": (lambda: Dinov2Model(Dinov2Config(**DINOV2)), lambda m: m),
    "dinov2_reg": (lambda: Dinov2WithRegistersModel(
        Dinov2WithRegistersConfig(**DINOV2, num_register_tokens=4)), lambda m: m),
    "dinov3": (lambda: DINOv3ViTModel(DINOv3ViTConfig(**VISION, num_register_tokens=4)),
               lambda m: m),
    "mae": (lambda: ViTMAEForPreTraining(ViTMAEConfig(**VISION, **MAE_DECODER, mask_ratio=0.75)),
            lambda m: m.vit),
    "clip": (lambda: CLIPModel(CLIPConfig(vision_config=VISION, text_config=TEXT)),
             lambda m: m.vision_model),
    "siglip": (lambda: SiglipModel(SiglipConfig(vision_config=VISION, text_config=TEXT)),
               lambda m: m.vision_model),
    "siglip2": (lambda: SiglipModel(SiglipConfig(vision_config=VISION, text_config=TEXT)),
                lambda m: m.vision_model),
}


def _profile_choices() -> list[config.ModelChoice]:
    choices = []
    for name in PROFILES:
        params = config.load_params(ROOT / "params" / name, base=ROOT)
        listed = [*params.models, *(params.shared_interest.models if params.shared_interest
                                   else ())]
        choices += [c for c in listed if c.weights == "pretrained" and c.source is None]
    return choices


CHOICES = _profile_choices()
# the profiles' presets and the demo's (dinov2, resnet50), each loaded through its entry
ENTRIES = CHOICES + [config.ModelChoice(key=key) for key in ("dinov2", "resnet50")]


def _snapshot(cache: Path, repo: str) -> Path:
    """The snapshot folder of ``repo`` in hub-cache layout, with its ``refs/main``."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text("0123abc")
    return repo_dir / "snapshots" / "0123abc"


def test_the_real_profiles_list_every_pretrained_preset_family():
    keys = {c.key for c in CHOICES}
    assert {"dinov2_reg", "dinov3", "mae", "clip", "siglip", "siglip2", "resnet50_tv",
            "swin_t", "cait_s", "resnet101", "efficientnet_b6"} <= keys
    assert keys <= set(REGISTRY)


@pytest.mark.parametrize("choice", ENTRIES, ids=lambda c: c.key)
def test_preset_loads_from_an_offline_cache(choice, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = REGISTRY[choice.key]
    if choice.key in HUB_MODELS:
        build, part = HUB_MODELS[choice.key]
        saved = build()
        saved.save_pretrained(_snapshot(tmp_path, spec.checkpoint))
        expected = part(saved).state_dict()
    else:
        from safetensors.torch import save_file

        reference = timm.create_model(spec.checkpoint, pretrained=False)
        folder = _snapshot(tmp_path, f"timm/{spec.checkpoint}")
        folder.mkdir(parents=True)
        save_file(reference.state_dict(), folder / "model.safetensors")
        expected = reference.state_dict()
    loaded = load_choice(choice, checkpoint_dir=tmp_path)
    state = loaded.module.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in state.items())
    assert not loaded.module.training
    if choice.key in HUB_MODELS:
        assert type(loaded.module) is spec.arch.model_cls
        assert loaded.module.config._attn_implementation == "eager"
        assert loaded.num_layers == 2
    if choice.key == "mae":
        assert loaded.module.config.mask_ratio == 0.0  # the saved 0.75 forced off
    if choice.key.startswith("dinov"):  # the loaded model extracts on its grid (patch 14 / 16)
        assert loaded.num_prefix_tokens == (1 if choice.key == "dinov2" else 5)
        maps = extract(loaded, loaded.preprocess([Image.new("RGB", (300, 240))]))
        grid = (14, 14) if choice.key == "dinov3" else (16, 16)
        assert maps[("cls", 1)].shape == (1, 5, *grid)
