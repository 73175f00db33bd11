"""Saliency maps: shapes, token bookkeeping, and agreement with direct computations."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform
from torch import nn

from sightline.models import REGISTRY, load_model
from sightline.registry import METHODS
from sightline.saliency import extract, rollout
from sightline.saliency.attention import rollout_matrices
from sightline.saliency.gradcam import token_reshape_transform


def _sharpen(module: nn.Module, factor: float = 10.0) -> None:
    """Scale query/key weights so random-weight attention is peaked, not near-uniform."""
    with torch.no_grad():
        for name, sub in module.named_modules():
            if name.endswith(("q_proj", "k_proj")):
                sub.weight.mul_(factor)
            if isinstance(sub, nn.MultiheadAttention):
                sub.in_proj_weight[: 2 * sub.embed_dim].mul_(factor)


# the Shared Interest classifiers (Grad-CAM + XRAI) are tested in test_si_models.py
KEYS = sorted(k for k in REGISTRY if "xrai" not in REGISTRY[k].methods)


@pytest.fixture(scope="module")
def tiny():
    models = {key: load_model(key) for key in KEYS}
    for model in models.values():
        _sharpen(model.module)
    return models


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def _attentions(model, pixel_values):
    with torch.no_grad():
        return model.forward(pixel_values, output_attentions=True).attentions


class _ScoreModule(nn.Module):
    """What pytorch-grad-cam needs: a module from pixels to one tensor."""

    def __init__(self, model):
        super().__init__()
        self.model, self.backbone = model, model.module
        self.head = model.head

    def forward(self, x):
        return self.model.score(x)


def _as_library_output(grid_maps: np.ndarray, size: int = 224) -> np.ndarray:
    """pytorch-grad-cam's post-processing of a grid CAM: resize + min-max, then aggregate."""
    return scale_cam_image(np.maximum(scale_cam_image(grid_maps, (size, size)), 0))


# --- every model, every method -----------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_extract_shapes_for_every_method(tiny, pixels, key):
    model = tiny[key] if tiny[key].is_classifier else _with_style_head(tiny[key], pixels)
    maps = extract(model, pixels)
    heads, layers, grid = model.num_heads, model.num_layers, model.grid
    expected = {}
    for method in model.spec.methods:
        if method in ("cls", "mean_received", "legrad"):
            expected |= {(method, layer): (2, heads + 1, *grid) for layer in range(layers)}
        elif method in ("rollout", "chefer", "attnlrp"):
            expected |= {(method, layer): (2, 1, *grid) for layer in range(layers)}
        elif method == "probe":
            expected[(method, layers)] = (2, heads + 1, *grid)
        elif key in ("resnet50", "resnet50_tv"):
            expected |= {("gradcam", i): (2, 1, 56 >> i, 56 >> i) for i in range(4)}
        else:
            expected[("gradcam", layers - 1)] = (2, 1, *grid)
    assert {k: v.shape for k, v in maps.items()} == expected
    for array in maps.values():
        assert array.dtype == np.float32
        assert np.isfinite(array).all() and (array >= 0).all()
    gradcam = [v for (method, _), v in maps.items() if method == "gradcam"]
    assert all(v.max() > 0 for v in gradcam)


def test_dinov2_grid_is_16x16_at_patch_14(tiny, pixels):
    assert extract(tiny["dinov2"], pixels, ["cls"])[("cls", 0)].shape[-2:] == (16, 16)


@pytest.mark.parametrize(
    ("key", "method"), [("clip", "cls"), ("siglip", "probe"), ("siglip", "mean_received")]
)
def test_last_slot_is_mean_over_heads(tiny, pixels, key, method):
    for array in (v for (m, _), v in extract(tiny[key], pixels, [method]).items() if m == method):
        assert np.allclose(array[:, -1], array[:, :-1].mean(axis=1), atol=1e-7)


@pytest.mark.parametrize("key", ["clip", "siglip"])
def test_attention_methods_share_one_forward(tiny, pixels, key):
    model = tiny[key]
    calls = []
    handle = model.module.register_forward_hook(lambda *_: calls.append(1))
    try:
        extract(model, pixels, [m for m in model.spec.methods
                               if not METHODS[m].explains_class])
    finally:
        handle.remove()
    assert len(calls) == 1


# --- token bookkeeping ---------------------------------------------------------------------


def test_cls_map_is_the_cls_attention_row(tiny, pixels):
    model = tiny["clip"]
    maps = extract(model, pixels, ["cls"])
    for layer, attention in enumerate(_attentions(model, pixels)):
        direct = attention[:, :, 0, 1:].reshape(2, model.num_heads, 14, 14).numpy()
        assert np.allclose(maps[("cls", layer)][:, :-1], direct, atol=1e-7)


def test_dinov3_skips_cls_and_all_registers(tiny, pixels):
    model = tiny["dinov3"]
    maps = extract(model, pixels, ["cls"])
    for layer, attention in enumerate(_attentions(model, pixels)):
        ours = maps[("cls", layer)][:, :-1].reshape(2, model.num_heads, -1)
        assert np.allclose(ours, attention[:, :, 0, 5:].numpy(), atol=1e-7)
        # the CLS row's mass = patches (the map) + CLS and 4 registers (left out)
        assert np.allclose(ours.sum(-1) + attention[:, :, 0, :5].sum(-1).numpy(), 1, atol=1e-5)
        # skipping only the CLS token would give a visibly different (shifted) map
        assert not np.allclose(ours, attention[:, :, 0, 1:197].numpy(), atol=1e-4)


def test_mae_tokens_are_in_spatial_order(tiny):
    """A planted bright patch must reach the blocks as the token of its own grid cell."""
    model = tiny["mae"]
    row, col = 3, 10
    pixel_values = torch.zeros(1, 3, 224, 224)
    pixel_values[..., row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16] = 5.0
    seen = []
    handle = model.module.layers[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        extract(model, pixel_values, ["cls"])
        torch.manual_seed(0)
        with torch.no_grad():
            model.module(pixel_values=pixel_values)  # the model's own default: random noise
    finally:
        handle.remove()
    ours, shuffled = (tokens[0, 1:] for tokens in seen)
    embeddings = model.module.embeddings
    with torch.no_grad():
        spatial = (
            embeddings.patch_embeddings(pixel_values)[0] + embeddings.position_embeddings[0, 1:]
        )
    assert torch.allclose(ours, spatial, atol=1e-6)
    planted = row * 14 + col
    distance = (ours - ours.median(dim=0).values).norm(dim=-1)
    assert int(distance.argmax()) == planted
    assert not torch.allclose(shuffled, spatial, atol=1e-3)
    assert int((shuffled - shuffled.median(dim=0).values).norm(dim=-1).argmax()) != planted


def test_probe_is_softmax_of_probe_query_and_token_keys(tiny, pixels):
    model = tiny["siglip"]
    head = model.module.head
    heads, dim = model.num_heads, head.attention.embed_dim // model.num_heads
    with torch.no_grad():
        tokens = model.module(pixel_values=pixels).last_hidden_state
        w_q, w_k, _ = head.attention.in_proj_weight.chunk(3)
        b_q, b_k, _ = head.attention.in_proj_bias.chunk(3)
        query = (head.probe[0] @ w_q.T + b_q).reshape(1, heads, dim)  # (1, H, d)
        keys = (tokens @ w_k.T + b_k).reshape(2, -1, heads, dim)  # (B, N, H, d)
        logits = torch.einsum("qhd,bnhd->bhn", query, keys) / math.sqrt(dim)
        direct = logits.softmax(dim=-1).reshape(2, heads, 14, 14).numpy()
    ours = extract(model, pixels, ["probe"])[("probe", model.num_layers)]
    assert np.allclose(ours[:, :-1], direct, atol=1e-6)
    assert direct.max() > 5 / 196  # peaked: a head/token mix-up could not match by chance


def test_mean_received_averages_query_rows(tiny, pixels):
    model = tiny["siglip"]
    maps = extract(model, pixels, ["mean_received"])
    for layer, attention in enumerate(_attentions(model, pixels)):
        direct = attention.mean(dim=2).reshape(2, model.num_heads, 14, 14).numpy()
        assert np.allclose(maps[("mean_received", layer)][:, :-1], direct, atol=1e-7)


# --- rollout -------------------------------------------------------------------------------


def _naive_rollout(attentions, num_prefix):
    """Slow, obvious rollout: per image, per layer, per row; returns CLS row and matrix."""
    rows, matrices = [], []
    for b in range(attentions[0].shape[0]):
        joint = None
        for attention in attentions:
            a = np.mean(attention[b].numpy().astype(np.float64), axis=0) + np.eye(attention.shape[-1])
            for i in range(a.shape[0]):
                a[i] = a[i] / a[i].sum()
            joint = a if joint is None else a @ joint
        rows.append(joint[0, num_prefix:])
        matrices.append(joint)
    return np.stack(rows), np.stack(matrices)


def _random_attentions(layers=4, batch=2, heads=3, tokens=3 + 9, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [
        (3 * torch.randn(batch, heads, tokens, tokens, generator=generator)).softmax(dim=-1)
        for _ in range(layers)
    ]


def test_rollout_matches_naive_computation():
    attentions = _random_attentions()  # 3 prefix tokens (CLS + 2 registers), 9 patches
    expected, matrices = _naive_rollout(attentions, 3)
    ours = rollout(attentions, num_prefix_tokens=3)
    assert ours.shape == (2, 9)
    assert np.allclose(ours.numpy(), expected, atol=1e-6)
    *_, joint = rollout_matrices(attentions)
    assert np.allclose(joint.numpy(), matrices, atol=1e-6)
    assert np.allclose(joint.sum(dim=-1).numpy(), 1, atol=1e-5)  # rows, not columns


def test_rollout_is_per_image():
    attentions = _random_attentions()
    together = rollout(attentions, num_prefix_tokens=3)
    for b in range(2):
        alone = rollout([a[b : b + 1] for a in attentions], num_prefix_tokens=3)
        assert torch.allclose(together[b], alone[0], atol=1e-7)


def test_rollout_of_identity_attention_leaves_cls_on_itself():
    # A = I for every head: (A + I) renormalised is I, so the CLS row puts no mass on patches
    attentions = [torch.eye(12).expand(2, 3, 12, 12) for _ in range(3)]
    assert torch.equal(rollout(attentions, num_prefix_tokens=1), torch.zeros(2, 11))
    *_, joint = rollout_matrices(attentions)
    assert torch.equal(joint, torch.eye(12).expand(2, 12, 12))


def test_rollout_rejects_bad_arguments():
    attentions = _random_attentions()
    with pytest.raises(ValueError, match=r"attention must be \(B, heads, T, T\)"):
        rollout([a[..., :-1] for a in attentions], 1)
    with pytest.raises(ValueError, match="CLS row"):
        rollout(attentions, 0)


def test_extract_rollout_is_rollout_to_each_layer(tiny, pixels):
    model = tiny["dinov3"]
    maps = extract(model, pixels, ["rollout"])
    attentions = _attentions(model, pixels)
    for layer in range(model.num_layers):
        direct = rollout(attentions[: layer + 1], model.num_prefix_tokens).reshape(2, 1, 14, 14)
        assert np.allclose(maps[("rollout", layer)], direct.numpy(), atol=1e-7)


# --- Grad-CAM ------------------------------------------------------------------------------


@pytest.mark.parametrize("classes", [None, [3, 7]])
def test_resnet_gradcam_matches_pytorch_grad_cam(tiny, pixels, classes):
    model = tiny["resnet50"]
    maps = extract(model, pixels, ["gradcam"], classes=classes)
    targets = None if classes is None else [ClassifierOutputTarget(c) for c in classes]
    for index, stage in enumerate(("layer1", "layer2", "layer3", "layer4")):
        with GradCAM(model.module, [getattr(model.module, stage)[-1]]) as cam:
            library = cam(pixels, targets)
        assert np.allclose(_as_library_output(maps[("gradcam", index)][:, 0]), library, atol=1e-5)
    assert all(p.requires_grad for p in model.module.parameters())  # restored after extract


def test_gradcam_works_under_no_grad_and_inference_mode(tiny, pixels):
    model = _with_style_head(tiny["clip"], pixels)
    expected = extract(model, pixels, ["gradcam"])[("gradcam", 3)]
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            assert np.array_equal(extract(model, pixels, ["gradcam"])[("gradcam", 3)], expected)


def test_resnet_gradcam_grid_is_relu_of_gradient_weighted_activations(tiny, pixels):
    model = tiny["resnet50"]
    recorded = {}
    handle = model.module.layer4[-1].register_forward_hook(
        lambda _m, _i, out: recorded.update(a=out)
    )
    try:
        logits = model.module(pixels)
    finally:
        handle.remove()
    activation = recorded["a"]
    predicted = logits.argmax(dim=1)
    (gradient,) = torch.autograd.grad(logits[torch.arange(2), predicted].sum(), activation)
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    direct = (weights * activation).sum(dim=1).clamp(min=0).detach().numpy()
    ours = extract(model, pixels, ["gradcam"])[("gradcam", 3)][:, 0]
    assert np.allclose(ours, direct, rtol=1e-4, atol=1e-7)
    assert direct.max() > 0


@pytest.mark.parametrize(("prefix", "grid"), [(1, (14, 14)), (5, (14, 14)), (5, (4, 6))])
def test_token_reshape_transform_places_each_patch(prefix, grid):
    height, width = grid
    tokens = torch.full((2, prefix + height * width, 3), -1.0)
    cells = torch.arange(height * width, dtype=torch.float32)
    tokens[:, prefix:, 0] = cells  # channel 0 holds the patch's flat index
    tokens[:, prefix:, 1] = torch.tensor([[0.0], [1.0]])  # channel 1 holds the image's index
    tokens[:, prefix:, 2] = 0.0  # prefix tokens stay -1 everywhere
    spatial = token_reshape_transform(prefix, grid)(tokens)
    assert spatial.shape == (2, 3, height, width)
    assert torch.equal(spatial[:, 0], cells.reshape(height, width).expand(2, -1, -1))
    assert torch.equal(
        spatial[:, 1], torch.tensor([0.0, 1.0])[:, None, None].expand(-1, height, width)
    )
    assert not (spatial == -1).any()
    if prefix == 1 and grid == (14, 14):
        assert torch.equal(spatial, vit_reshape_transform(tokens))  # the library's special case
    with pytest.raises(ValueError, match="prefix tokens"):
        token_reshape_transform(prefix + 1, grid)(tokens)


def _with_style_head(model, pixels, seed: int = 0):
    """The model with a random 4-way linear head on its pooled features (a linear probe)."""
    with torch.no_grad():
        width = model.spec.arch.features(model.forward(pixels)).shape[-1]
    torch.manual_seed(seed)
    return dataclasses.replace(model, head=nn.Linear(width, 4))


@pytest.mark.parametrize("key", ["dinov3", "siglip"])
def test_vit_gradcam_matches_pytorch_grad_cam(tiny, pixels, key):
    model = _with_style_head(tiny[key], pixels)
    ((layer, ours),) = extract(model, pixels, ["gradcam"]).items()
    assert layer == ("gradcam", model.num_layers - 1)
    target_layer = model.gradcam_layers()[0][1]
    assert target_layer is model.module.get_submodule(
        {"dinov3": "model.layer.3.norm1", "siglip": "encoder.layers.3.layer_norm1"}[key]
    )
    reshape = token_reshape_transform(model.num_prefix_tokens, model.grid)
    with torch.no_grad():
        predicted = model.score(pixels).argmax(dim=1).tolist()
    with GradCAM(_ScoreModule(model), [target_layer], reshape_transform=reshape) as cam:
        library = cam(pixels, [ClassifierOutputTarget(c) for c in predicted])
    assert np.allclose(_as_library_output(ours[:, 0]), library, atol=1e-4)


def test_gradcam_with_a_head_targets_the_predicted_class(tiny, pixels):
    backbone = tiny["clip"]
    torch.manual_seed(0)
    model = dataclasses.replace(backbone, head=nn.Linear(64, 5))
    with torch.no_grad():
        predicted = model.score(pixels).argmax(dim=1).tolist()
    layer = model.gradcam_layers()[0][1]
    reshape = token_reshape_transform(1, model.grid)
    for classes in (None, [4, 0]):
        ours = extract(model, pixels, ["gradcam"], classes=classes)[("gradcam", 3)][:, 0]
        with GradCAM(_ScoreModule(model), [layer], reshape_transform=reshape) as cam:
            library = cam(pixels, [ClassifierOutputTarget(c) for c in classes or predicted])
        assert np.allclose(_as_library_output(ours), library, atol=1e-4)


def test_a_backbone_without_a_head_has_no_gradcam(tiny, pixels):
    """No class logit, no Grad-CAM: left out by default, an error when asked for."""
    backbone = tiny["dinov2"]
    assert "gradcam" in backbone.spec.methods and not backbone.is_classifier
    assert all(method != "gradcam" for method, _ in extract(backbone, pixels))
    with pytest.raises(ValueError, match="no classifier head.*linear_probe"):
        extract(backbone, pixels, ["gradcam"])
    headed = _with_style_head(backbone, pixels)
    assert any(method == "gradcam" for method, _ in extract(headed, pixels))


# --- errors --------------------------------------------------------------------------------


def test_inapplicable_or_unknown_methods_name_the_model_and_its_methods(tiny, pixels):
    with pytest.raises(ValueError, match=r"'siglip'.*\['probe', 'mean_received', 'chefer', "
                                         r"'attnlrp', 'legrad', 'gradcam'\]"):
        extract(tiny["siglip"], pixels, ["cls"])
    with pytest.raises(ValueError, match=r"'resnet50'.*\['gradcam'\]"):
        extract(tiny["resnet50"], pixels, ["rollout"])
    with pytest.raises(ValueError, match=r"\['saliency'\].*'clip'"):
        extract(tiny["clip"], pixels, ["saliency"])


def test_bad_inputs_are_explained(tiny, pixels):
    with pytest.raises(ValueError, match=r"\(B, 3, 224, 224\).*preprocess"):
        extract(tiny["clip"], pixels[:, :, :200, :200])
    with pytest.raises(ValueError, match="no classifier head"):
        extract(tiny["clip"], pixels, ["gradcam"], classes=[0, 1])
    with pytest.raises(ValueError, match="one class per image"):
        extract(tiny["resnet50"], pixels, ["gradcam"], classes=[0])
    with pytest.raises(ValueError, match=r"\['chefer', 'attnlrp', 'legrad', 'gradcam', "
                                         r"'xrai'\]: pass it only with"):
        extract(tiny["resnet50"], pixels, [], classes=[0, 1])
    model = load_model("dinov3")
    model.module.train()
    with pytest.raises(ValueError, match=r"training mode.*eval\(\)"):
        extract(model, pixels, ["cls"])
