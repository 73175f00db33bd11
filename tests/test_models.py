"""The model registry: every key builds offline, with the real model's geometry and layout
(pretrained weights from an offline cache: test_preset_loading.py)."""

import time

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config
from torchvision.transforms import InterpolationMode

from sightline.geometry import Geometry
from sightline.models import IMAGENET_MEAN, IMAGENET_STD, REGISTRY, ModelError, load_model

# key -> (checkpoint, geometry, readout, prefix tokens, grid) as the real processors define them
EXPECTED = {
    "dinov2": ("facebook/dinov2-base", Geometry(224, 256, "bicubic"), "cls", 1, (16, 16)),
    "dinov2_reg": (
        "facebook/dinov2-with-registers-base",
        Geometry(224, 256, "bicubic"),
        "cls",
        5,
        (16, 16),
    ),
    "dinov3": (
        "facebook/dinov3-vitb16-pretrain-lvd1689m",
        Geometry(224, None, "bilinear"),
        "cls",
        5,
        (14, 14),
    ),
    "mae": ("facebook/vit-mae-base", Geometry(224, None, "bilinear"), "cls", 1, (14, 14)),
    "clip": ("openai/clip-vit-base-patch16", Geometry(224, 224, "bicubic"), "cls", 1, (14, 14)),
    "siglip": (
        "google/siglip-base-patch16-224",
        Geometry(224, None, "bicubic"),
        "probe",
        0,
        (14, 14),
    ),
    "siglip2": (
        "google/siglip2-base-patch16-224",
        Geometry(224, None, "bilinear"),
        "probe",
        0,
        (14, 14),
    ),
    "resnet50": ("resnet50.a1_in1k", Geometry(224, 235, "bicubic"), "cnn", 0, (7, 7)),
    "resnet50_tv": ("resnet50.tv2_in1k", Geometry(224, 232, "bilinear"), "cnn", 0, (7, 7)),
}
CNNS = {"resnet50", "resnet50_tv"}
# the Shared Interest study's classifiers are tested in test_si_models.py
SHARED_INTEREST_KEYS = {"swin_t", "cait_s", "resnet101", "efficientnet_b6"}


@pytest.fixture(scope="module")
def tiny():
    return {key: load_model(key) for key in EXPECTED}


def test_registry_keys_and_entries():
    assert set(REGISTRY) == set(EXPECTED) | SHARED_INTEREST_KEYS | {"efficientnet_lite0"}
    for key, (checkpoint, geometry, readout, prefix, _) in EXPECTED.items():
        spec = REGISTRY[key]
        assert (spec.key, spec.checkpoint, spec.geometry, spec.readout) == (
            key,
            checkpoint,
            geometry,
            readout,
        )
        assert spec.layout.num_prefix_tokens == prefix
    assert len(set(REGISTRY.values())) == len(REGISTRY)  # specs hash (usable as keys)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_tiny_builds_offline_with_real_layout(tiny, key):
    model = tiny[key]
    *_, prefix, grid = EXPECTED[key]
    assert not model.module.training
    assert (model.weights, model.size) == ("random", "tiny")
    assert model.num_prefix_tokens == prefix
    assert model.grid == grid
    assert model.num_layers == 4
    assert model.num_heads == (0 if key in CNNS else 4)


@pytest.mark.parametrize("key", [k for k in sorted(EXPECTED) if k not in CNNS])
def test_attention_is_eager_one_tensor_per_layer(tiny, key):
    model = tiny[key]
    tokens = model.num_prefix_tokens + model.grid[0] * model.grid[1]
    with torch.no_grad():
        out = model.forward(torch.randn(2, 3, 224, 224), output_attentions=True)
    assert model.module.config._attn_implementation == "eager"
    assert len(out.attentions) == model.num_layers
    for attention in out.attentions:
        assert attention.shape == (2, model.num_heads, tokens, tokens)


def test_seed_sets_random_weights():
    first, again, other = (load_model("clip", seed=s).module.state_dict() for s in (0, 0, 1))
    name = "embeddings.patch_embedding.weight"
    assert torch.equal(first[name], again[name])
    assert not torch.equal(first[name], other[name])


def test_random_build_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_model("siglip", seed=7)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("key", ["dinov2", "dinov3", "mae", "clip", "siglip"])
def test_base_config_is_vit_b(key):
    config = REGISTRY[key].arch.config("base")
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (
        768,
        12,
        12,
    )


def test_base_resnet50_shape():
    model = load_model("resnet50", size="base")
    assert [len(getattr(model.module, s)) for s in ("layer1", "layer2", "layer3", "layer4")] == [
        3,
        4,
        6,
        3,
    ]
    assert model.module.fc.out_features == 1000


def test_preprocess_uses_geometry_and_normalisation(tiny):
    model = tiny["dinov2"]
    colour = tuple(round(m * 255) for m in IMAGENET_MEAN)
    image = Image.new("RGB", (320, 240), colour)
    batch = model.preprocess([image, image.convert("L").convert("RGB")])
    assert batch.shape == (2, 3, 224, 224)
    assert batch[0].abs().max() < 0.02  # mean colour -> ~0 after normalisation
    gradient = Image.fromarray(
        np.tile(np.arange(400, dtype=np.uint8)[None, :, None] // 2, (300, 1, 3))
    )
    framed = model.preprocess([gradient])[0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    expected = model.spec.geometry.transform()(gradient)[0]
    assert torch.allclose(framed, expected, atol=1e-5)


def test_resnet50_geometry_is_timm_eval_config(tiny):
    spec = REGISTRY["resnet50"]
    resize, crop, _, normalize = create_transform(
        **resolve_data_config({}, model=tiny["resnet50"].module)
    ).transforms
    assert resize.size == spec.geometry.resize
    assert (
        resize.interpolation
        == InterpolationMode.BICUBIC
        == InterpolationMode(spec.geometry.interpolation)
    )
    assert tuple(crop.size) == (spec.geometry.size, spec.geometry.size)
    assert np.allclose(normalize.mean, spec.mean) and np.allclose(normalize.std, spec.std)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_pretrained_offline_fails_fast_naming_the_checkpoint(key, tmp_path):
    start = time.perf_counter()
    with pytest.raises(ModelError) as error:
        load_model(key, weights="pretrained", size="base", checkpoint_dir=tmp_path)
    assert time.perf_counter() - start < 10
    message = str(error.value)
    assert REGISTRY[key].checkpoint in message
    assert "download" in message and "checkpoint_dir" in message
    assert ("licence" in message) == (key == "dinov3")


def test_bad_arguments_name_the_choices():
    with pytest.raises(ModelError, match="registered keys.*dinov2"):
        load_model("vit_huge")
    with pytest.raises(ModelError, match="'pretrained' or 'random'"):
        load_model("clip", weights="imagenet")
    with pytest.raises(ModelError, match="'base' or 'tiny'"):
        load_model("clip", size="large")
    with pytest.raises(ModelError, match="size 'base' only"):
        load_model("clip", weights="pretrained", size="tiny")
