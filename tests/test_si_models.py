"""The Shared Interest study's classifiers: registry entries, Grad-CAM layouts, XRAI."""

import dataclasses

import numpy as np
import pytest
import timm
import torch
from saliency.core import XRAI, XRAIParameters
from saliency.core import xrai as pair_xrai
from timm.data import create_transform, resolve_data_config
from torch import nn
from torchvision.transforms import InterpolationMode

from sightline import saliency
from sightline.models import REGISTRY, LoadedModel, ModelError, TimmClassifier, load_model

# key -> (timm checkpoint, input size, Grad-CAM grid)
SHARED_INTEREST = {
    "swin_t": ("swin_tiny_patch4_window7_224.ms_in1k", 224, (7, 7)),
    "cait_s": ("cait_s24_224.fb_dist_in1k", 224, (14, 14)),
    "resnet101": ("resnet101.tv_in1k", 224, (7, 7)),
    "efficientnet_b6": ("tf_efficientnet_b6.aa_in1k", 528, (17, 17)),
}
FAST = saliency.XraiSettings(steps=3, batch_size=3, algorithm="fast")


@pytest.fixture(scope="module")
def tiny():
    return {key: load_model(key) for key in SHARED_INTEREST}


@pytest.mark.parametrize("key", sorted(SHARED_INTEREST))
def test_geometry_is_the_checkpoints_timm_eval_config(key):
    spec = REGISTRY[key]
    checkpoint, size, _ = SHARED_INTEREST[key]
    assert spec.checkpoint == checkpoint and spec.methods == ("gradcam", "xrai")
    config = timm.models.get_pretrained_cfg(checkpoint).to_dict()
    resize, crop, _, normalize = create_transform(
        **resolve_data_config(pretrained_cfg=config)
    ).transforms
    assert (resize.size, tuple(crop.size)) == (spec.geometry.resize, (size, size))
    assert resize.interpolation == InterpolationMode(spec.geometry.interpolation)
    assert np.allclose(normalize.mean, spec.mean) and np.allclose(normalize.std, spec.std)


@pytest.mark.parametrize("key", sorted(SHARED_INTEREST))
def test_tiny_maps_have_the_real_grids(tiny, key):
    model = tiny[key]
    _, size, grid = SHARED_INTEREST[key]
    assert model.is_classifier and model.grid == grid
    assert model.module.num_classes == 1000  # ImageNet classes, for the subject mapping
    pixels = torch.randn(1, 3, size, size)
    maps = saliency.extract(model, pixels, xrai=FAST)
    assert sorted(maps) == [("gradcam", 0), ("xrai", 0)]
    assert maps[("gradcam", 0)].shape == (1, 1, *grid)
    assert maps[("xrai", 0)].shape == (1, 1, size, size)
    assert all(m.min() >= 0 for m in maps.values())
    assert maps[("xrai", 0)].max() == pytest.approx(1.0)


def test_base_builds_are_the_real_architectures():
    assert type(REGISTRY["efficientnet_b6"].arch.random("tf_efficientnet_b6", "tiny")).__name__ \
        == "EfficientNet"
    swin = load_model("swin_t", size="base")
    assert [len(stage.blocks) for stage in swin.module.layers] == [2, 2, 6, 2]
    cait = load_model("cait_s", size="base")
    assert (len(cait.module.blocks), cait.module.embed_dim) == (24, 384)


def test_pretrained_offline_names_the_timm_checkpoint(tmp_path):
    with pytest.raises(ModelError, match="timm/resnet101.tv_in1k"):
        load_model("resnet101", weights="pretrained", size="base", checkpoint_dir=tmp_path)


class _PlantedTokens(nn.Module):
    """Patch embedding that sums each 16x16 patch's pixels into every channel, a target
    block that passes its input on, and a head summing all channels of all tokens."""

    def __init__(self, nhwc: bool):
        super().__init__()
        self.nhwc = nhwc
        self.embed = nn.Conv2d(3, 4, 16, 16, bias=False)
        nn.init.ones_(self.embed.weight)
        self.blocks = nn.Sequential(nn.Identity())
        self.num_classes = 3

    def forward(self, x):
        tokens = self.embed(x)  # (B, C, 14, 14)
        if self.nhwc:
            tokens = tokens.permute(0, 2, 3, 1)  # Swin: (B, H, W, C)
        else:
            tokens = tokens.flatten(2).transpose(1, 2)  # CaiT: (B, H*W, C), row-major
        features = self.blocks(tokens)
        return features.sum(dim=tuple(range(1, features.ndim)))[:, None].expand(-1, 3) * 1.0


@pytest.mark.parametrize("key, nhwc", [("swin_t", True), ("cait_s", False)])
def test_gradcam_reshape_puts_the_planted_patch_back_in_place(key, nhwc):
    """Only patch (row 3, col 10) is lit: Grad-CAM must peak there and be zero elsewhere
    (a transposed or shifted reshape would move the peak)."""
    arch = TimmClassifier(target="blocks.-1", output="nhwc" if nhwc else "tokens")
    spec = dataclasses.replace(REGISTRY[key], arch=arch)
    module = _PlantedTokens(nhwc).eval()
    _, _, grid = arch.layout(module, spec.geometry)
    assert grid == (14, 14)
    model = LoadedModel(spec, module, "random", "tiny", 1, 0, 0, grid)
    pixels = torch.zeros(1, 3, 224, 224)
    pixels[:, :, 3 * 16 : 4 * 16, 10 * 16 : 11 * 16] = 1.0
    cam = saliency.extract(model, pixels, ["gradcam"])[("gradcam", 0)][0, 0]
    expected = np.zeros((14, 14), np.float32)
    expected[3, 10] = cam.max()
    assert cam.max() > 0
    np.testing.assert_allclose(cam, expected)


def test_xrai_segments_equal_the_packages_own():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(224, 224, 3)).astype(np.float32)
    image[40:150, 60:200] += 2.0
    ours = saliency.xrai_segments(image)
    theirs = pair_xrai._get_segments_felzenszwalb(image)
    assert len(ours) == len(theirs) > 10
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))


@pytest.mark.parametrize("key, algorithm", [("resnet101", "full"), ("swin_t", "fast")])
def test_xrai_equals_the_package_called_directly(tiny, key, algorithm):
    """Same model, input and class: our map is saliency.XRAI's own, min-max scaled."""
    model = tiny[key]
    torch.manual_seed(0)
    pixels = torch.randn(1, 3, 224, 224)
    settings = saliency.XraiSettings(steps=4, batch_size=2, algorithm=algorithm)
    ours = saliency.extract(model, pixels, ["xrai"], xrai=settings)[("xrai", 0)]
    predicted = model.score(pixels).argmax(-1).tolist()
    for image, target, map_ in zip(pixels, predicted, ours, strict=True):

        def call(x, call_model_args=None, expected_keys=None, target=target):
            x = torch.tensor(x, dtype=torch.float32).permute(0, 3, 1, 2).requires_grad_(True)
            logits = model.module(x)
            (grad,) = torch.autograd.grad(logits[:, target].sum(), x)
            return {"INPUT_OUTPUT_GRADIENTS": grad.permute(0, 2, 3, 1).numpy()}

        direct = XRAI().GetMask(
            image.permute(1, 2, 0).numpy(),
            call,
            batch_size=2,
            extra_parameters=XRAIParameters(steps=4, algorithm=algorithm),
        )
        scaled = (direct - direct.min()) / (direct.max() - direct.min())
        np.testing.assert_allclose(map_[0], scaled, atol=1e-5)


def test_xrai_explains_the_given_class(tiny):
    model = tiny["resnet101"]
    pixels = torch.randn(1, 3, 224, 224)
    settings = saliency.XraiSettings(steps=4, batch_size=4, algorithm="fast")
    predicted = int(model.score(pixels).argmax())
    other = (predicted + 1) % 1000
    as_predicted = saliency.extract(model, pixels, ["xrai"], xrai=settings)
    given = saliency.extract(model, pixels, ["xrai"], classes=[predicted], xrai=settings)
    np.testing.assert_array_equal(as_predicted[("xrai", 0)], given[("xrai", 0)])
    changed = saliency.extract(model, pixels, ["xrai"], classes=[other], xrai=settings)
    assert not np.array_equal(changed[("xrai", 0)], given[("xrai", 0)])


def test_xrai_rejects_bad_settings_and_heads(tiny):
    with pytest.raises(ValueError, match="'full' or 'fast'"):
        saliency.xrai_maps(tiny["resnet101"], torch.zeros(1, 3, 224, 224),
                           xrai=saliency.XraiSettings(algorithm="quick"))
    with pytest.raises(ValueError, match="do not apply"):
        saliency.extract(load_model("dinov2"), torch.zeros(1, 3, 224, 224), ["xrai"])


def test_method_cost_is_timed_once_and_kept_beside_the_store(tmp_path, monkeypatch):
    from sightline import cache, data, synthetic
    from sightline.config import SIModelChoice
    from sightline.models import loading
    from sightline.studies import shared_interest as si

    synthetic.make_human_attention(tmp_path / "bench", subjects=("dog",), per_subject=1,
                                   image_size=(96, 80))
    sample = data.load_human_attention(tmp_path / "bench").samples[0]
    choice = SIModelChoice(key="resnet101", weights="random", size="tiny")
    store = cache.MapStore(tmp_path / "cache" / "m.h5")
    settings = saliency.XraiSettings(steps=2, batch_size=4, algorithm="fast")
    first = si.method_cost(choice, store, sample, ["gradcam", "xrai"], settings, device="cpu")
    assert set(first) == {"gradcam", "xrai"} and all(v >= 0 for v in first.values())
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("timed again"))
    assert si.method_cost(choice, store, sample, ["xrai"], settings) == {"xrai": first["xrai"]}


def test_the_benchmark_target_explains_the_subjects_class_not_the_prediction(tmp_path):
    """``shared_interest.target: benchmark``: each image's map is of its subject's ImageNet class
    the model scores highest, stored by the study's extraction (random weights rarely predict it)."""
    from sightline import cache, data, synthetic
    from sightline.config import SIModelChoice
    from sightline.studies import shared_interest as si

    synthetic.make_human_attention(tmp_path / "bench", subjects=("dog", "car"), per_subject=1)
    samples = data.load_human_attention(tmp_path / "bench").samples
    choice = SIModelChoice(key="resnet101", weights="random", size="tiny")
    subjects = {"dog": (151, 152, 153), "car": (436, 511)}
    stores = {target: cache.MapStore(tmp_path / f"{target}.h5") for target in ("benchmark", "predicted")}
    for target, store in stores.items():
        si.extract_study(samples, choice, store, subjects, methods=["gradcam"], target=target,
                         xrai=FAST, batch_size=2, device="cpu", seed=0)
    model = load_model("resnet101")
    pixels = model.preprocess([data.load_image(s.path) for s in samples])
    logits = model.score(pixels).detach()
    wanted = [max(subjects[s.subject], key=lambda c: float(logits[i, c])) for i, s in enumerate(samples)]
    expected = saliency.extract(model, pixels, ["gradcam"], classes=wanted)[("gradcam", 0)]
    ids = [s.image_id for s in samples]
    np.testing.assert_allclose(stores["benchmark"].read("gradcam", 0, ids)[1], expected, atol=1e-6)
    assert not np.allclose(stores["predicted"].read("gradcam", 0, ids)[1], expected)
