"""Models by spec: every source builds offline, its layout and preprocessing are read off
the built model and its own config, and bad specs say what to fix."""

import math
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from safetensors.torch import save_file
from timm.data import create_transform, resolve_data_config
from timm.utils import AttentionExtract
from torch import nn
from torchvision.models import ResNet18_Weights, ResNet50_Weights
from torchvision.transforms import InterpolationMode
from transformers import (
    BitImageProcessor,
    CLIPConfig,
    CLIPModel,
    SiglipImageProcessor,
    ViTConfig,
    ViTModel,
)

from sightline import config, extract, models, pipeline, saliency
from sightline.config import ModelChoice
from sightline.finetune import checkpoints
from sightline.geometry import Geometry

PIXELS = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


# --- factories the python-source specs name (``test_model_specs:...``) --------------------


def small_cnn() -> nn.Module:
    """A tiny CNN classifier: features (two conv stages) -> pooled -> 5 classes."""
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5),
    )


def vit_registers() -> nn.Module:
    """timm's DINOv2-with-registers ViT, tiny: CLS + 4 registers, 56 px -> 4x4 patches."""
    return timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=56,
                             embed_dim=64, depth=2, num_heads=4)


def deit_distilled() -> nn.Module:
    """timm's distilled DeiT, two blocks: CLS + distillation token (2 prefix tokens)."""
    return timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, depth=2)


def vit_non_square() -> nn.Module:
    """A ViT built for 224 x 160 input: a 14 x 10 patch grid."""
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=(224, 160),
                             depth=1)


def not_a_module() -> str:
    return "resnet"


def _choice(**fields) -> ModelChoice:
    return ModelChoice(**fields)


def _load(**fields) -> models.LoadedModel:
    return models.load_choice(_choice(**fields))


# --- timm ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def timm_vit():
    return _load(key="tvit", source="timm", name="vit_tiny_patch16_224", weights="random")


def test_timm_vit_layout_and_preprocessing_are_read_off_the_model(timm_vit):
    assert isinstance(timm_vit.spec.arch, models.TimmViT)
    assert (timm_vit.num_layers, timm_vit.num_heads, timm_vit.grid) == (12, 3, (14, 14))
    assert timm_vit.num_prefix_tokens == 1 and timm_vit.readout == "cls"
    assert timm_vit.methods == ("cls", "rollout", "chefer", "attnlrp", "legrad", "gradcam")
    assert timm_vit.is_classifier  # an ImageNet classifier explains its own predicted class
    assert timm_vit.spec.arch.lora.targets == ("qkv",)
    # timm's own eval transform of the same model
    resize, crop, _, normalize = create_transform(
        **resolve_data_config({}, model=timm_vit.module)).transforms
    geometry = timm_vit.spec.geometry
    assert (geometry.resize, geometry.size) == (resize.size, crop.size[0]) == (248, 224)
    assert resize.interpolation == InterpolationMode(geometry.interpolation)
    assert np.allclose(normalize.mean, timm_vit.spec.mean)
    assert np.allclose(normalize.std, timm_vit.spec.std)


def test_timm_attention_capture_equals_timms_attention_extract(timm_vit):
    with torch.no_grad():
        output, ours = timm_vit.attentions(PIXELS)
        theirs = AttentionExtract(timm_vit.module, method="fx")(PIXELS)
    assert len(ours) == len(theirs) == 12
    for mine, (_, reference) in zip(ours, theirs.items(), strict=True):
        assert mine.shape == (2, 3, 197, 197)
        torch.testing.assert_close(mine, reference)
    maps = saliency.extract(timm_vit, PIXELS, ["cls"])
    np.testing.assert_allclose(maps[("cls", 3)][:, :3].reshape(2, 3, -1),
                               ours[3][:, :, 0, 1:].numpy(), rtol=1e-6)


def test_timm_vit_gradcam_explains_the_predicted_class_at_the_last_norm1(timm_vit):
    maps = saliency.extract(timm_vit, PIXELS, ["gradcam"])
    predicted = timm_vit.score(PIXELS).argmax(-1).tolist()
    given = saliency.extract(timm_vit, PIXELS, ["gradcam"], classes=predicted)
    np.testing.assert_array_equal(maps[("gradcam", 11)], given[("gradcam", 11)])
    assert timm_vit.gradcam_layers()[0][1] is timm_vit.module.blocks[-1].norm1


@pytest.mark.parametrize("factory, prefix, grid, size", [
    ("vit_registers", 5, (4, 4), 56),  # CLS + 4 registers
    ("deit_distilled", 2, (14, 14), 224),  # CLS + distillation token
])
def test_prefix_tokens_of_planted_layouts(factory, prefix, grid, size):
    model = _load(key="planted", source="python", factory=f"test_model_specs:{factory}",
                  input={"size": size})
    assert (model.num_prefix_tokens, model.grid, model.readout) == (prefix, grid, "cls")
    pixels = torch.randn(1, 3, size, size)
    with torch.no_grad():
        _, attentions = model.attentions(pixels)
    assert attentions[0].shape[-1] == prefix + grid[0] * grid[1]
    maps = saliency.extract(model, pixels, ["cls", "rollout"])
    # the CLS row over patches: every prefix token skipped
    heads = model.num_heads
    np.testing.assert_allclose(maps[("cls", 1)][0, :heads].reshape(heads, -1),
                               attentions[1][0, :, 0, prefix:].numpy(), rtol=1e-6)
    rollout = saliency.rollout(attentions, prefix)
    np.testing.assert_allclose(maps[("rollout", 1)][0, 0].ravel(), rollout[0].numpy(), rtol=1e-5)


def test_a_non_square_grid_is_an_error_naming_the_fix(tmp_path):
    with pytest.raises(models.ModelError, match=r"patch grid is 14x10.*square"):
        models.spec_for(_choice(key="wide", source="python",
                                factory="test_model_specs:vit_non_square",
                                input={"size": 224, "mean": "imagenet"}))
    with pytest.raises(ValueError, match=r"224x160: sightline's input frame is square"):
        _choice(key="wide", source="timm", name="resnet18", input={"size": [224, 160]})


def test_a_vit_built_for_another_size_names_input_size():
    with pytest.raises(models.ModelError, match=r"built for 56-px input.*input.size: 56"):
        models.spec_for(_choice(key="reg", source="python",
                                factory="test_model_specs:vit_registers", input={"size": 224}))


def test_a_timm_vit_is_built_for_the_input_size_the_spec_asks():
    """DINOv2's 518-px ViT at 224 px: timm resamples its position embeddings to 16x16."""
    model = _load(key="reg", source="timm", name="vit_small_patch14_reg4_dinov2",
                  weights="random", input={"size": 224})
    assert tuple(model.module.pos_embed.shape) == (1, 16 * 16, 384)
    assert (model.grid, model.num_prefix_tokens, model.spec.geometry.size) == ((16, 16), 5, 224)
    pixels = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    maps = saliency.extract(model, pixels, ["cls"])
    assert maps[("cls", 11)].shape == (1, 6 + 1, 16, 16)  # each head and their mean


def test_a_hf_vit_runs_at_another_size_by_interpolated_position_embeddings(tmp_path):
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, image_size=32, patch_size=8)).save_pretrained(tmp_path)
    model = _load(key="vit", source="hf", name=str(tmp_path), weights="random",
                  input={"size": 64, "resize": "squash", "mean": "imagenet"})
    pixels = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert model.grid == (8, 8)
    assert saliency.extract(model, pixels, ["cls"])[("cls", 1)].shape == (1, 2 + 1, 8, 8)
    with pytest.raises(models.ModelError, match=r"built for 32-px input and cannot run at "
                                                r"16 px \(.*\); set input.size: 32"):
        ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, image_size=32, patch_size=32)
                 ).save_pretrained(tmp_path / "coarse")
        models.spec_for(_choice(key="coarse", source="hf", name=str(tmp_path / "coarse"),
                                input={"size": 16, "resize": "squash", "mean": "imagenet"}))


def test_timm_cnn_gradcam_at_its_last_feature_stage_with_xrai():
    model = _load(key="cnn", source="timm", name="resnet18", weights="random")
    assert model.spec.arch.target == "layer4" and model.spec.arch.output == "nchw"
    assert model.methods == ("gradcam", "xrai") and model.grid == (7, 7)


def test_timm_nhwc_layout_is_read_off_the_module():
    model = _load(key="swin", source="timm", name="swin_tiny_patch4_window7_224",
                  weights="random", target_layer="layers.-1.blocks.-1")
    assert model.spec.arch.output == "nhwc" and model.grid == (7, 7)


# --- Hugging Face ---------------------------------------------------------------------------


def _save_hf(model: models.LoadedModel, folder, processor) -> None:
    model.module.save_pretrained(folder)
    processor.save_pretrained(folder)


DINO_PROCESSOR = BitImageProcessor(
    size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}, do_center_crop=True,
    resample=3, image_mean=list(models.IMAGENET_MEAN), image_std=list(models.IMAGENET_STD))


@pytest.mark.parametrize("preset, prefix", [("dinov2", 1), ("dinov2_reg", 5)])
def test_hf_directory_spec_equals_the_preset_with_the_same_weights(tmp_path, preset, prefix):
    reference = models.load_model(preset)
    _save_hf(reference, tmp_path, DINO_PROCESSOR)
    spec = _load(key="mine", source="hf", name=str(tmp_path))
    assert spec.spec.geometry == reference.spec.geometry == Geometry(224, 256, "bicubic")
    assert (spec.spec.mean, spec.spec.std) == (models.IMAGENET_MEAN, models.IMAGENET_STD)
    assert (spec.num_prefix_tokens, spec.grid, spec.num_layers, spec.num_heads) == (
        prefix, (16, 16), 4, 4)
    assert spec.methods == reference.methods == ("cls", "rollout", "chefer", "attnlrp", "legrad",
                                                "gradcam")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 300, 3), np.uint8))
    pixels = reference.preprocess([image])
    torch.testing.assert_close(spec.preprocess([image]), pixels)
    ours, theirs = saliency.extract(spec, pixels), saliency.extract(reference, pixels)
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        np.testing.assert_allclose(ours[key], value, rtol=1e-5, atol=1e-7)


def test_hf_checkpoint_directory_stands_in_for_the_hub_id(tmp_path):
    reference = models.load_model("dinov2", seed=3)
    _save_hf(reference, tmp_path, DINO_PROCESSOR)
    model = _load(key="ft", source="hf", name="facebook/dinov2-base", checkpoint=tmp_path)
    expected = reference.module.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in model.module.state_dict().items())
    assert model.spec.geometry == Geometry(224, 256, "bicubic")


def test_hf_full_clip_checkpoint_gives_its_vision_tower(tmp_path):
    vision = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 64, "image_size": 224, "patch_size": 32}
    text = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 64}
    full = CLIPModel(CLIPConfig(vision_config=vision, text_config=text))
    full.save_pretrained(tmp_path)
    model = _load(key="myclip", source="hf", name=str(tmp_path),
                  input={"size": 224, "resize": 224, "mean": "clip"})
    assert type(model.module).__name__ == "CLIPVisionModel"
    assert (model.grid, model.num_prefix_tokens, model.spec.std) == ((7, 7), 1, models.CLIP_STD)
    expected = full.vision_model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in model.module.state_dict().items())


def test_hf_siglip_spec_reads_its_probe_and_squash_processor(tmp_path):
    reference = models.load_model("siglip")
    _save_hf(reference, tmp_path, SiglipImageProcessor(size={"height": 224, "width": 224}))
    spec = _load(key="mysiglip", source="hf", name=str(tmp_path))
    assert spec.readout == "probe" and spec.num_prefix_tokens == 0
    assert spec.methods == ("probe", "mean_received", "chefer", "attnlrp", "legrad", "gradcam")
    assert spec.spec.geometry == Geometry(224, None, "bicubic")


def test_hf_gradcam_layer_is_the_blocks_first_layernorm():
    """The derived Grad-CAM layer is the pre-attention LayerNorm each family names."""
    names = {"dinov2": "norm1", "dinov2_reg": "norm1", "dinov3": "norm1",
             "mae": "layernorm_before", "clip": "layer_norm1", "siglip": "layer_norm1"}
    for key, name in names.items():
        model = models.load_model(key)
        layer = model.gradcam_layers()[0][1]
        owners = [m for m in model.module.modules() if getattr(m, name, None) is layer]
        assert len(owners) == 1, key


def test_a_timm_checkpoint_saved_at_its_default_size_loads_at_the_input_size(tmp_path):
    """A ViT fine-tuned at 224 px, read at 112 px: the file's 14x14 position embeddings are
    resampled to 7x7 as timm resamples them; every other weight is the file's."""
    saved = timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict()
    path = tmp_path / "vit.safetensors"
    save_file(saved, path)
    model = _load(key="vit", source="timm", name="vit_tiny_patch16_224", checkpoint=path,
                  input={"size": 112})
    loaded = model.module.state_dict()
    expected = timm.layers.resample_abs_pos_embed(saved["pos_embed"], (7, 7), num_prefix_tokens=1)
    assert model.grid == (7, 7) and torch.allclose(loaded["pos_embed"], expected)
    assert all(torch.equal(loaded[k], v) for k, v in saved.items() if k != "pos_embed")


# --- torchvision ----------------------------------------------------------------------------


def test_torchvision_spec_reads_its_weights_transforms_and_loads_a_checkpoint(tmp_path):
    from torchvision.models import resnet18

    weights = resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(weights, path)
    model = _load(key="tv", source="torchvision", name="resnet18", weights="IMAGENET1K_V1",
                  checkpoint=path)
    transform = ResNet18_Weights.IMAGENET1K_V1.transforms()
    assert model.spec.geometry == Geometry(transform.crop_size[0], transform.resize_size[0],
                                           "bilinear") == Geometry(224, 256, "bilinear")
    assert all(torch.equal(v, weights[k]) for k, v in model.module.state_dict().items())
    assert model.spec.arch.target == "layer4" and model.methods == ("gradcam", "xrai")
    ours = saliency.extract(model, PIXELS, ["gradcam"])[("gradcam", 0)][:, 0]
    targets = [ClassifierOutputTarget(c) for c in model.score(PIXELS).argmax(-1).tolist()]
    with GradCAM(model.module, [model.module.layer4]) as cam:  # the library, called directly
        direct = cam(PIXELS.clone(), targets)
    # the library's post-processing of a grid CAM: resize + min-max
    expected = scale_cam_image(np.maximum(scale_cam_image(ours, (224, 224)), 0))
    np.testing.assert_allclose(expected, direct, atol=1e-5)


def test_resnet50_tv_preset_is_torchvisions_imagenet1k_v2_eval_transform():
    transform = ResNet50_Weights.IMAGENET1K_V2.transforms()
    geometry = models.REGISTRY["resnet50_tv"].geometry
    assert (geometry.size, geometry.resize) == (transform.crop_size[0], transform.resize_size[0])
    assert InterpolationMode(geometry.interpolation) == transform.interpolation
    assert models.REGISTRY["resnet50_tv"].mean == tuple(transform.mean)
    # timm's own test-time config of the same weights says the same
    cfg = timm.models.get_pretrained_cfg("resnet50.tv2_in1k").to_dict()
    assert math.floor(cfg["test_input_size"][1] / cfg["test_crop_pct"]) == geometry.resize


# --- python factories, checkpoints ---------------------------------------------------------


def test_python_factory_with_a_checkpoint_and_target_layer(tmp_path):
    weights = small_cnn().state_dict()
    path = tmp_path / "w.safetensors"
    save_file(weights, path)
    model = _load(key="own", source="python", factory="test_model_specs:small_cnn",
                  checkpoint=path, target_layer="0.2",
                  input={"size": 64, "resize": "squash", "mean": "imagenet"})
    assert all(torch.equal(v, weights[k]) for k, v in model.module.state_dict().items())
    assert model.spec.geometry == Geometry(64, None, "bicubic")
    assert model.spec.std == models.IMAGENET_STD
    assert model.grid == (16, 16) and model.methods == ("gradcam", "xrai")
    maps = saliency.extract(model, torch.randn(1, 3, 64, 64), ["gradcam"])
    assert maps[("gradcam", 0)].shape == (1, 1, 16, 16)
    derived = models.spec_for(_choice(key="own2", source="python",
                                      factory="test_model_specs:small_cnn",
                                      input={"size": 64, "mean": "imagenet"}))
    assert derived.arch.target == "0"  # the last top-level module with a spatial map


def test_checkpoint_that_does_not_fit_lists_the_keys(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"0.0.weight": torch.zeros(8, 3, 3, 3), "extra.bias": torch.zeros(2)}, path)
    with pytest.raises(models.ModelError) as error:
        _load(key="own", source="python", factory="test_model_specs:small_cnn", checkpoint=path,
              input={"size": 64, "mean": "imagenet"})
    message = str(error.value)
    assert str(path) in message and "missing keys (e.g. 0.0.bias" in message
    assert "1 unexpected keys (e.g. extra.bias)" in message
    with pytest.raises(models.ModelError, match=r"checkpoint file .*gone.pth does not exist"):
        models.load_checkpoint(small_cnn(), tmp_path / "gone.pth", "own")


def test_a_factory_that_is_not_there_or_returns_no_module():
    with pytest.raises(models.ModelError, match="cannot import 'nowhere_pkg'"):
        models.spec_for(_choice(key="own", source="python", factory="nowhere_pkg:build",
                                input={"size": 64, "mean": "imagenet"}))
    with pytest.raises(models.ModelError, match="returned str, not an nn.Module"):
        models.spec_for(_choice(key="own", source="python",
                                factory="test_model_specs:not_a_module",
                                input={"size": 64, "mean": "imagenet"}))


def test_no_preprocessing_config_names_input():
    with pytest.raises(models.ModelError, match="set input"):
        models.spec_for(_choice(key="own", source="python", factory="test_model_specs:small_cnn"))


def test_a_target_layer_that_does_not_exist_suggests_close_ones():
    with pytest.raises(models.ModelError, match=r"target_layer 'layer5' is not a module.*layer4"):
        models.spec_for(_choice(key="cnn", source="timm", name="resnet18", weights="random",
                                target_layer="layer5"))


# --- params files ---------------------------------------------------------------------------

BASE = {"profile": "t", "dataset": {"kind": "synthetic", "root": "data/x"}}


def _params(tmp_path, models_list, **extra):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**BASE, "models": models_list, **extra}))
    return path


@pytest.mark.parametrize("entry, expected", [
    ({"key": "m", "source": "keras", "name": "x"},
     "'models.0.source' is 'keras'; allowed: 'hf', 'timm', 'torchvision' or 'python'"),
    ({"key": "m", "source": "timm"}, "source timm needs 'name'"),
    ({"key": "m", "source": "timm", "nmae": "resnet18"}, "Did you mean 'name'?"),
    ({"key": "m", "source": "timm", "name": "resnet18", "input": {"sise": 3}},
     "unknown key 'models.0.input.sise'. Did you mean 'size'?"),
    ({"key": "clip", "target_layer": "x"}, "target_layer describe a spec: add 'source'"),
    ({"key": "m", "source": "timm", "name": "resnet18", "weights": "IMAGENET1K_V2"},
     "'models.0.weights' is 'IMAGENET1K_V2'; allowed: 'pretrained' or 'random'"),
    ({"key": "m", "source": "python", "factory": "pkg:build", "size": "tiny"},
     "'size' applies to presets"),
    ({"key": "m", "source": "timm", "name": "resnet18", "checkpoint": "nowhere.pth"},
     "checkpoint"),
])
def test_bad_specs_are_params_errors_naming_the_key(tmp_path, entry, expected):
    with pytest.raises(config.ParamsError) as error:
        config.load_params(_params(tmp_path, [entry]), base=tmp_path)
    assert expected in str(error.value)
    assert "models" in str(error.value) or "'m'" in str(error.value)


@pytest.mark.parametrize("entry, expected", [
    ({"key": "m", "source": "timm", "name": "resnet181"},
     "model 'm': 'resnet181' is not a timm model; close: resnet18"),
    ({"key": "m", "source": "torchvision", "name": "resnet5"},
     "model 'm': 'resnet5' is not a torchvision model; close: resnet50"),
    ({"key": "m", "source": "torchvision", "name": "resnet50", "weights": "IMAGENET1K_V3"},
     "model 'm': weights 'IMAGENET1K_V3' are not torchvision resnet50's; allowed: pretrained, "
     "random, IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT. Did you mean 'IMAGENET1K_V2'?"),
    ({"key": "dinov2", "source": "timm", "name": "resnet18"},
     "'models.0.key': 'dinov2' is a preset key; name your spec with a new key"),
    ({"key": "dinov22"}, "'models.0.key' is 'dinov22'; allowed: dinov2, dinov2_reg, dinov3, "
                         "mae, clip, siglip, siglip2, resnet50, resnet50_tv (or a spec with a "
                         "'source'). Did you mean 'dinov2'?"),
    ({"key": "swin_t"}, "'models.0.key' is 'swin_t'; allowed: dinov2"),
])
def test_keys_and_names_the_registry_rejects_stop_the_build_naming_the_entry(
        tmp_path, entry, expected):
    params = config.load_params(_params(tmp_path, [entry]), base=tmp_path)
    with pytest.raises(pipeline.UsageError) as error:
        pipeline.check_models(params)
    assert str(error.value).startswith(expected)


@pytest.mark.parametrize("name", ["demo", "wikichurches", "shared_interest", "photos",
                                  "own_data"])
def test_shipped_profiles_pass_the_builds_model_check(name):
    root = Path(__file__).resolve().parents[1]
    pipeline.check_models(config.load_params(root / "params" / f"{name}.yaml", base=root))


def test_missing_checkpoint_is_named_with_its_resolved_path(tmp_path):
    entry = {"key": "m", "source": "timm", "name": "resnet18", "checkpoint": "runs/best.pth"}
    with pytest.raises(config.ParamsError, match=r"model 'm': checkpoint .*runs/best.pth does "
                                                 "not exist"):
        config.load_params(_params(tmp_path, [entry]), base=tmp_path)


def test_specs_validate_and_keep_preset_names(tmp_path):
    (tmp_path / "w.pth").write_bytes(b"")
    params = config.load_params(_params(tmp_path, [
        {"key": "dinov2", "weights": "random", "size": "tiny"},
        {"key": "mynet", "source": "timm", "name": "convnext_tiny.fb_in1k"},
        {"key": "ft", "source": "timm", "name": "vit_small_patch16_224", "checkpoint": "w.pth"},
        {"key": "tv", "source": "torchvision", "name": "resnet50", "weights": "IMAGENET1K_V2"},
        {"key": "own", "source": "python", "factory": "mypkg.models:build", "checkpoint": "w.pth",
         "target_layer": "features.7", "input": {"size": 224, "resize": "squash",
                                                 "mean": "imagenet"}},
    ], finetune={"strategies": {"mynet": ["linear_probe"], "ft": ["lora"]}}), base=tmp_path)
    assert [extract.model_name(c) for c in params.models] == [
        "dinov2-tiny-random", "mynet", "ft", "tv", "own"]
    assert params.models[2].checkpoint == tmp_path / "w.pth"
    assert params.finetune.strategies["ft"] == ("lora",)


def test_build_stops_before_any_work_on_a_spec_that_cannot_be_read(tmp_path):
    entry = {"key": "cnn", "source": "timm", "name": "resnet18", "weights": "random",
             "target_layer": "layer9"}
    path = _params(tmp_path, [entry])
    with pytest.raises(pipeline.UsageError, match="target_layer 'layer9'"):
        pipeline.build(path, root=tmp_path)
    assert not (tmp_path / "data").exists()


def test_a_spec_fine_tunes_through_the_shared_variant_loader():
    choice = _choice(key="tvit", source="timm", name="vit_tiny_patch16_224", weights="random")
    backbone = checkpoints.backbone(choice, 0, "cpu")
    assert checkpoints.feature_dim(backbone) == 192  # the classifier head is dropped
    from sightline import finetune

    assert finetune.recipe(config.Finetune(), choice, "lora")["lora_targets"] == ["qkv"]


# --- the map cache's code version ------------------------------------------------------------


def test_code_version_changes_with_any_file_of_the_models_package(tmp_path, monkeypatch):
    package = tmp_path / "models"
    package.mkdir()
    for source in Path(models.__file__).parent.glob("*.py"):
        (package / source.name).write_bytes(source.read_bytes())
    monkeypatch.setattr(extract.models, "__file__", str(package / "__init__.py"))
    before = extract.code_version()
    with (package / "presets.py").open("a") as presets:
        presets.write("# a change\n")
    assert extract.code_version() != before
