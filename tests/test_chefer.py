"""Chefer et al. (2021) gradient-weighted attention relevance: against hand computations."""

import dataclasses
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from sightline.geometry import Geometry
from sightline.models import Layout, LoadedModel, ModelSpec, load_model
from sightline.registry import METHODS
from sightline.saliency import extract
from sightline.saliency.attention import (
    chefer_maps,
    chefer_matrices,
    multihead_attention,
    probe_attention,
    rollout_matrices,
)

# --- the rule by hand, in NumPy -------------------------------------------------------------


def _hand_relevance(attentions, gradients):
    """R after each block: R = I; R <- R + mean_h(max(grad * A, 0)) @ R (float64)."""
    relevance, out = None, []
    for a, g in zip(attentions, gradients, strict=True):
        weighted = np.maximum(np.asarray(g, np.float64) * np.asarray(a, np.float64), 0).mean(1)
        if relevance is None:
            relevance = np.broadcast_to(np.eye(a.shape[-1]), weighted.shape)
        relevance = relevance + weighted @ relevance
        out.append(relevance)
    return out


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# --- a planted two-layer "ViT" whose attentions and their gradients are known ----------------

GRID, REGISTERS, HEADS, CLASSES = (2, 3), 1, 2, 3
TOKENS = 1 + REGISTERS + GRID[0] * GRID[1]


class _Planted(nn.Module):
    """Two layers of attention ``A_l = softmax(base_l + z * slope_l)`` (``z``: the image's mean
    pixel) and class logits ``s_c = Σ_l <W_lc, A_l> + v_c <A_0, A_1>``, so that
    ``∂s_c/∂A_0 = W_0c + v_c A_1`` and ``∂s_c/∂A_1 = W_1c + v_c A_0``."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.base = nn.Parameter(3 * torch.randn(2, HEADS, TOKENS, TOKENS, generator=g))
        self.slope = nn.Parameter(torch.randn(2, HEADS, TOKENS, TOKENS, generator=g))
        self.w = nn.Parameter(torch.randn(2, CLASSES, HEADS, TOKENS, TOKENS, generator=g))
        self.v = nn.Parameter(torch.randn(CLASSES, generator=g))

    def forward(self, pixel_values, output_attentions=False):
        z = pixel_values.mean(dim=(1, 2, 3))[:, None, None, None]
        a0, a1 = ((self.base[i] + z * self.slope[i]).softmax(dim=-1) for i in range(2))
        logits = sum((a[:, None] * self.w[i]).sum(dim=(2, 3, 4)) for i, a in enumerate((a0, a1)))
        logits = logits + (a0 * a1).sum(dim=(1, 2, 3))[:, None] * self.v
        return SimpleNamespace(attentions=(a0, a1), logits=logits)

    def by_hand(self, pixel_values, target):
        """NumPy: the attentions, the target logits and the gradients of each image's logit."""
        p = {k: v.detach().double().numpy() for k, v in self.named_parameters()}
        z = pixel_values.double().mean(dim=(1, 2, 3)).numpy()[:, None, None, None]
        a = [_softmax(p["base"][i] + z * p["slope"][i]) for i in range(2)]
        logits = sum((a[i][:, None] * p["w"][i]).sum(axis=(2, 3, 4)) for i in range(2))
        logits = logits + (a[0] * a[1]).sum(axis=(1, 2, 3))[:, None] * p["v"]
        target = logits.argmax(axis=1) if target is None else np.asarray(target)
        v = p["v"][target][:, None, None, None]
        grads = [p["w"][0][target] + v * a[1], p["w"][1][target] + v * a[0]]
        return a, grads, target


@dataclass(frozen=True, eq=False)
class _PlantedArch:
    """Just what `saliency.extract` calls on an architecture."""

    classifier = True
    token_outputs = True

    def forward(self, module, pixel_values, grid, **kwargs):
        return module(pixel_values, **kwargs)

    def features(self, output):
        return output.logits

    def attentions(self, module, pixel_values, grid):
        output = module(pixel_values, output_attentions=True)
        return output, output.attentions


def _planted_model(seed: int = 8) -> LoadedModel:  # seed 8: the images predict 2, 0, 0, 2
    spec = ModelSpec(key="planted", checkpoint="-", arch=_PlantedArch(), geometry=Geometry(size=8),
                     mean=(0.0,) * 3, std=(1.0,) * 3)
    layout = Layout("cls", 2, HEADS, 1 + REGISTERS, GRID, ("cls", "rollout", "chefer"))
    return LoadedModel(spec=spec, module=_Planted(seed).eval(), weights="random", size="tiny",
                       num_layers=2, num_heads=HEADS, num_prefix_tokens=1 + REGISTERS, grid=GRID,
                       layout=layout)


@pytest.fixture(scope="module")
def planted_pixels():
    # per-image mean pixels far apart, so the images get different attentions and classes
    offsets = torch.tensor([-1.5, 0.0, 0.8, 2.0])[:, None, None, None]
    return torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.1 + offsets


@pytest.mark.parametrize("classes", [None, [2, 0, 1, 2]])
def test_planted_model_matches_the_rule_by_hand(planted_pixels, classes):
    model = _planted_model()
    maps = extract(model, planted_pixels, ["chefer"], classes=classes)
    attentions, grads, target = model.module.by_hand(planted_pixels, classes)
    if classes is None:
        assert len(set(target.tolist())) > 1  # the predicted classes differ between images
    hand = _hand_relevance(attentions, grads)
    assert sorted(maps) == [("chefer", 0), ("chefer", 1)]
    for layer, relevance in enumerate(hand):
        expected = relevance[:, 0, 1 + REGISTERS :].reshape(4, 1, *GRID)  # CLS row, patches only
        assert maps[("chefer", layer)].shape == (4, 1, *GRID)
        np.testing.assert_allclose(maps[("chefer", layer)], expected, rtol=1e-5, atol=1e-6)
    # the rule is not vacuous here: negative products are clamped and layers compound
    assert (np.asarray(grads[0]) * attentions[0] < 0).any()
    assert not np.allclose(hand[1], hand[0])


def test_planted_targets_each_image_separately(planted_pixels):
    """One backward pass for the batch gives each image the gradient of its own logit."""
    model = _planted_model()
    batch = extract(model, planted_pixels, ["chefer"], classes=[0, 1, 2, 0])
    for i, c in enumerate([0, 1, 2, 0]):
        alone = extract(model, planted_pixels[i : i + 1], ["chefer"], classes=[c])
        for key, value in alone.items():
            np.testing.assert_allclose(batch[key][i : i + 1], value, rtol=1e-5, atol=1e-7)


def test_constant_gradient_gives_the_rollout_like_product():
    """∇A ≡ c: R_l = Π_{i≤l} (I + c·mean_h A_i); for c = 1 that is 2^(l+1) times rollout
    (rows of I + mean_h A sum to 2, and rollout renormalises them to 1)."""
    g = torch.Generator().manual_seed(3)
    attentions = [(2 * torch.randn(2, 3, 7, 7, generator=g)).softmax(-1) for _ in range(4)]
    for c in (0.3, 1.0):
        gradients = [torch.full_like(a, c) for a in attentions]
        product = np.broadcast_to(np.eye(7), (2, 7, 7))
        ours = list(chefer_matrices(attentions, gradients))
        for layer, a in enumerate(attentions):
            product = (np.eye(7) + c * a.double().numpy().mean(axis=1)) @ product
            np.testing.assert_allclose(ours[layer].numpy(), product, rtol=1e-5)
    ones = [torch.ones_like(a) for a in attentions]
    pairs = zip(rollout_matrices(attentions), chefer_matrices(attentions, ones), strict=True)
    for layer, (joint, relevance) in enumerate(pairs):
        np.testing.assert_allclose(relevance.numpy(), 2 ** (layer + 1) * joint.numpy(), rtol=1e-5)


def test_relevance_matches_the_hand_rule_on_random_inputs():
    g = torch.Generator().manual_seed(4)
    attentions = [(2 * torch.randn(3, 4, 6, 6, generator=g)).softmax(-1) for _ in range(3)]
    gradients = [torch.randn(3, 4, 6, 6, generator=g) for _ in range(3)]
    hand = _hand_relevance([a.numpy() for a in attentions], [x.numpy() for x in gradients])
    for ours, expected in zip(chefer_matrices(attentions, gradients), hand, strict=True):
        np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="3 attentions but 2 gradients"):
        list(chefer_matrices(attentions, gradients[:2]))


# --- real tiny architectures -----------------------------------------------------------------


def _with_head(model, pixels, classes: int = 4, seed: int = 0):
    with torch.no_grad():
        width = model.spec.arch.features(model.forward(pixels)).shape[-1]
    torch.manual_seed(seed)
    return dataclasses.replace(model, head=nn.Linear(width, classes))


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def headed(pixels):
    return {key: _with_head(load_model(key), pixels) for key in ("clip", "dinov3", "siglip")}


def _independent_gradients(model, pixels, target):
    """The plain HF forward pass (no hook), the attentions, their gradients and, for a probe
    model, the probe's per-head attention and its gradient by the chain rule:
    out = W_o concat_h(Σ_j a_hj V_hj) + b_o, so ∂s/∂a_hj = ((∂s/∂out) W_o)_h · V_hj."""
    seen = {}
    handles = []
    if model.spec.readout == "probe":
        attention = model.module.head.attention
        handles.append(attention.register_forward_hook(
            lambda _m, _i, output: seen.__setitem__("out", output[0])))
    pixels = pixels.clone().requires_grad_(True)
    try:
        output = model.forward(pixels, output_attentions=True)
    finally:
        for handle in handles:
            handle.remove()
    logits = model.head(model.spec.arch.features(output))
    score = logits[torch.arange(len(target)), target].sum()
    inputs = [*output.attentions, *([seen["out"]] if seen else [])]
    grads = torch.autograd.grad(score, inputs)
    attentions = [a.detach().numpy() for a in output.attentions]
    block_grads = [g.numpy() for g in grads[: len(attentions)]]
    if not seen:
        return attentions, block_grads, None
    heads = model.num_heads
    tokens = output.last_hidden_state.detach()
    weights = probe_attention(model.module, tokens).detach().numpy()[:, :, None]  # (B,H,1,T)
    _, _, w_v = attention.in_proj_weight.detach().chunk(3)
    _, _, b_v = attention.in_proj_bias.detach().chunk(3)
    values = (tokens @ w_v.T + b_v).unflatten(-1, (heads, -1)).numpy()  # (B, T, H, d)
    g_heads = (grads[-1] @ attention.out_proj.weight.detach()).unflatten(-1, (heads, -1))
    probe_grad = np.einsum("bqhd,bthd->bhqt", g_heads.numpy(), values)
    return attentions, block_grads, (weights, probe_grad)


@pytest.mark.parametrize("key", ["clip", "dinov3", "siglip"])
def test_real_models_match_an_independent_computation(headed, pixels, key):
    model = headed[key]
    maps = extract(model, pixels, ["chefer"])
    with torch.no_grad():
        target = model.score(pixels).argmax(dim=1)
    attentions, grads, probe = _independent_gradients(model, pixels, target)
    start = model.num_prefix_tokens
    assert start == {"clip": 1, "dinov3": 5, "siglip": 0}[key]  # DINOv3: CLS + 4 registers
    assert sorted(maps) == [("chefer", layer) for layer in range(model.num_layers)]
    for layer, relevance in enumerate(_hand_relevance(attentions, grads)):
        if probe is None:
            row = relevance[:, 0, start:]
        else:
            readout = np.maximum(probe[0] * probe[1], 0).mean(axis=1)  # (B, 1, T)
            row = (readout @ relevance)[:, 0]
        expected = row.reshape(2, 1, *model.grid)
        ours = maps[("chefer", layer)]
        assert ours.dtype == np.float32 and (ours >= 0).all() and ours.max() > 0
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-7 * expected.max())


def test_probe_recomputation_equals_the_pooling_heads_attention(headed):
    attention = headed["siglip"].module.head.attention
    g = torch.Generator().manual_seed(5)
    query = torch.randn(2, 1, attention.embed_dim, generator=g)
    tokens = torch.randn(2, 196, attention.embed_dim, generator=g)
    with torch.no_grad():
        out, weights = multihead_attention(attention, query, tokens, tokens)
        ref_out, ref_weights = attention(query, tokens, tokens, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(weights, ref_weights)


@pytest.mark.parametrize("key", ["clip", "siglip"])
def test_chefer_is_class_sensitive_and_attention_is_not(headed, pixels, key):
    model = headed[key]
    readout = "cls" if key == "clip" else "probe"
    first = extract(model, pixels, [readout, "chefer"], classes=[0, 0])
    second = extract(model, pixels, [readout, "chefer"], classes=[3, 3])
    last = model.num_layers - 1
    difference = np.abs(first[("chefer", last)] - second[("chefer", last)]).max()
    assert difference > 0.1 * first[("chefer", last)].max()
    for layer_key in (k for k in first if k[0] == readout):
        assert np.array_equal(first[layer_key], second[layer_key])


@pytest.mark.parametrize("key", ["clip", "siglip"])
def test_shares_the_attention_methods_forward_and_leaves_their_maps_unchanged(
    headed, pixels, key
):
    model = headed[key]
    readers = [m for m in model.spec.methods if not METHODS[m].explains_class]
    calls = []
    handle = model.module.register_forward_hook(lambda *_: calls.append(1))
    try:
        together = extract(model, pixels, [*readers, "chefer"])
    finally:
        handle.remove()
    assert len(calls) == 1
    alone = extract(model, pixels, readers)
    assert {k for k in together if k[0] != "chefer"} == set(alone)
    for k, value in alone.items():
        assert np.array_equal(together[k], value)  # bit-identical: the same forward numerics


def test_default_target_is_the_predicted_class(headed, pixels):
    model = headed["dinov3"]
    with torch.no_grad():
        predicted = model.score(pixels).argmax(dim=1).tolist()
    default = extract(model, pixels, ["chefer"])
    given = extract(model, pixels, ["chefer"], classes=predicted)
    for k, value in default.items():
        np.testing.assert_array_equal(value, given[k])


def test_works_under_inference_mode_and_leaves_parameters_trainable(headed, pixels):
    model = headed["clip"]
    reference = extract(model, pixels, ["chefer"])
    with torch.inference_mode():
        inside = extract(model, pixels, ["chefer"])
    for k, value in reference.items():
        np.testing.assert_array_equal(inside[k], value)
    assert all(p.requires_grad for p in model.module.parameters())
    assert all(p.requires_grad and p.grad is None for p in model.head.parameters())


def test_a_backbone_without_a_head_has_no_chefer_map(pixels):
    backbone = load_model("siglip")
    assert "chefer" in backbone.spec.methods and not backbone.is_classifier
    assert all(method != "chefer" for method, _ in extract(backbone, pixels))
    with pytest.raises(ValueError, match="no classifier head, so Chefer relevance.*linear_probe"):
        extract(backbone, pixels, ["probe", "chefer"])
    with pytest.raises(ValueError, match="one class per image"):
        extract(_with_head(backbone, pixels), pixels, ["chefer"], classes=[0])
    with pytest.raises(ValueError, match=r"classes \[0, 4\] out of range for 4 logits"):
        extract(_with_head(backbone, pixels), pixels, ["chefer"], classes=[0, 4])


def test_chefer_maps_need_the_probe_for_a_model_without_cls(headed):
    model = headed["siglip"]
    attentions = [torch.rand(1, 4, 196, 196)] * 4
    with pytest.raises(ValueError, match="no CLS token.*probe"):
        chefer_maps(model, attentions, attentions)
