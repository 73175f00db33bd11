"""AttnLRP and LeGrad: against torchcam, a hand computation, conservation, and sanity."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn
from torchcam.methods import LeGrad
from torchvision.models.vision_transformer import VisionTransformer

from sightline import attribution, saliency
from sightline.config import ModelChoice
from sightline.models import load_choice, load_model

KEYS = ("dinov2_reg", "clip", "siglip", "dinov3")


def _headed(key: str, classes: int = 4, seed: int = 0):
    model = load_model(key)
    size = model.spec.geometry.size
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        width = model.score(pixels).shape[-1]
    torch.manual_seed(seed)
    return dataclasses.replace(model, head=nn.Linear(width, classes)), pixels


@pytest.fixture(scope="module")
def headed():
    return {key: _headed(key) for key in KEYS}


@pytest.fixture(scope="module")
def timm_vit():
    """A timm ImageNet classifier (its own head; queries and keys through q_norm / k_norm)."""
    model = load_choice(ModelChoice(key="tvit", source="timm", name="vit_tiny_patch16_224",
                                    weights="random"))
    return model, torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def _zero_biases(module: nn.Module) -> None:
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()


@pytest.mark.parametrize("key", [*KEYS, "timm"])
def test_attnlrp_relevance_is_conserved_through_every_layer(headed, timm_vit, key):
    """With zero biases the patched network is linear in each layer's tokens (constants: the
    LayerNorm spread, the attention weights, the activations' out / in ratios), so each
    layer's relevance sums to the explained logit; without the rules it does not."""
    model, pixels = timm_vit if key == "timm" else headed[key]
    model = dataclasses.replace(model, module=_copy(model.module), head=_copy(model.head))
    for module in (model.module, model.head):
        if module is not None:
            _zero_biases(module)
    relevance, logits = attribution.attnlrp_relevance(model, pixels, [1, 2])
    target = logits[[0, 1], [1, 2]].double()
    assert len(relevance) == model.num_layers
    for layer in relevance:
        torch.testing.assert_close(layer.double().sum(dim=1), target, rtol=1e-4, atol=1e-5)
    plain = _plain_input_times_gradient(model, pixels, [1, 2])
    assert not torch.allclose(plain.double().sum(dim=1), target, rtol=1e-2, atol=1e-3)


def _copy(module):
    import copy

    return copy.deepcopy(module)


def _plain_input_times_gradient(model, pixels, classes):
    """Input x gradient at block 0 of the unpatched model (a control that must not conserve)."""
    block = model.spec.arch.blocks(model.module, model.num_layers)[0]
    seen = []
    handle = block.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append(args[0] if args else kwargs["hidden_states"]),
        with_kwargs=True)
    try:
        logits = model.score(pixels.clone().requires_grad_(True))
        (gradient,) = torch.autograd.grad(logits[[0, 1], classes].sum(), seen)
    finally:
        handle.remove()
    return (seen[0] * gradient).sum(dim=-1).detach()


class _PlantedBlock(nn.Module):
    """x -> x + MHA(LN(x)) -> x + W2 GELU(W1 LN(x)), tokens (1, 3, 2)."""

    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(2)
        self.attention = nn.MultiheadAttention(2, 1, batch_first=True)
        self.norm2 = nn.LayerNorm(2)
        self.fc1, self.act, self.fc2 = nn.Linear(2, 3), nn.GELU(), nn.Linear(3, 2)

    def forward(self, x):
        y = self.norm1(x)
        x = x + self.attention(y, y, y, need_weights=False)[0]
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


def test_attnlrp_rules_equal_a_hand_computation_on_a_planted_block():
    """The relevance of the block's input tokens for the sum of token 0's outputs, by hand:
    every rule makes the block linear in x with frozen coefficients, so R = x ⊙ Jᵀ c."""
    torch.manual_seed(3)
    block = _PlantedBlock().eval()
    x = torch.randn(1, 3, 2, dtype=torch.float64)
    block = block.double()
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.normal_()
    with attribution.attnlrp_rules(block):
        xs = x.clone().requires_grad_(True)
        out = block(xs)
        (gradient,) = torch.autograd.grad(out[0, 0].sum(), xs)
    relevance = (x * gradient)[0].numpy()

    xn = x[0].numpy()
    w_in, b_in = block.attention.in_proj_weight.detach().numpy(), block.attention.in_proj_bias
    b_in = b_in.detach().numpy()
    w_o, b_o = block.attention.out_proj.weight.detach().numpy(), block.attention.out_proj.bias
    b_o = b_o.detach().numpy()

    def norm_frozen(v, norm):
        centred = v - v.mean(axis=1, keepdims=True)
        std = np.sqrt((centred**2).mean(axis=1, keepdims=True) + norm.eps)
        w, b = norm.weight.detach().numpy(), norm.bias.detach().numpy()
        return centred / std * w + b, std, w

    y, std1, g1 = norm_frozen(xn, block.norm1)
    q, k = y @ w_in[:2].T + b_in[:2], y @ w_in[2:4].T + b_in[2:4]
    logits = q @ k.T / np.sqrt(2)
    a = np.exp(logits - logits.max(axis=1, keepdims=True))
    a /= a.sum(axis=1, keepdims=True)
    # token 0's output after attention: x0 + W_o Σ_j a_0j (W_v y_j + b_v) + b_o
    h = xn + (a @ (y @ w_in[4:].T + b_in[4:])) @ w_o.T + b_o
    z, std2, g2 = norm_frozen(h, block.norm2)
    pre = z @ block.fc1.weight.detach().numpy().T + block.fc1.bias.detach().numpy()
    ratio = torch.nn.functional.gelu(torch.from_numpy(pre)).numpy() / (pre + 1e-10)
    # the linearised map from h_0 to the summed output of token 0:
    # out_0 = h_0 + W2 (ratio ⊙ (W1 LN'(h_0) + b1)) + b2, LN'(v) = (v - mean v) / std2 ⊙ g2
    centre = np.eye(2) - 1 / 2
    w1, w2 = block.fc1.weight.detach().numpy(), block.fc2.weight.detach().numpy()
    d_out_d_h0 = np.eye(2) + w2 @ np.diag(ratio[0]) @ w1 @ np.diag(g2 / std2[0]) @ centre
    c = d_out_d_h0.T @ np.ones(2)  # gradient of the summed output w.r.t. h_0
    # h_0 = x_0 + W_o Σ_j a_0j W_v LN'(x_j) + const: x_j's gradient
    grad = np.zeros((3, 2))
    grad[0] += c
    for j in range(3):
        ln_j = np.diag(g1 / std1[j]) @ centre
        grad[j] += a[0, j] * (w_o @ w_in[4:] @ ln_j).T @ c
    np.testing.assert_allclose(relevance, xn * grad, rtol=1e-10, atol=1e-12)


def test_legrad_layers_equal_torchcam_on_a_torchvision_vit():
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2,
                            hidden_dim=16, mlp_dim=32, num_classes=5).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with LeGrad(vit, list(vit.encoder.layers)) as extractor:
        scores = vit(pixels)
        classes = [1, 3]
        per_layer = [s.gather(1, torch.tensor(classes)[:, None])[:, 0] for s in extractor.hook_a]
        gradients = [torch.autograd.grad(s.sum(), a, retain_graph=True)[0]
                     for s, a in zip(per_layer, extractor.hook_attn, strict=True)]
        ours = attribution.legrad_heads(gradients, 1)
        (cam,) = extractor(classes, scores)
    assert ours.shape == (2, 3, 2, 16)
    mean = ours.mean(dim=(1, 2)).reshape(2, 4, 4)
    low = mean.amin(dim=(1, 2), keepdim=True)
    expected = (mean - low) / ((mean - low).amax(dim=(1, 2), keepdim=True) + 1e-8)
    torch.testing.assert_close(cam, expected)


@pytest.mark.parametrize("key", [*KEYS, "timm"])
def test_legrad_scores_each_block_with_the_models_own_tail(headed, timm_vit, key):
    """The last block's stacked slice is the model's forward: same logits as model.score."""
    model, pixels = timm_vit if key == "timm" else headed[key]
    maps, logits = attribution.legrad_maps(model, pixels)
    with torch.no_grad():
        torch.testing.assert_close(logits, model.score(pixels), rtol=1e-4, atol=1e-5)
    assert sorted(maps) == [("legrad", layer) for layer in range(model.num_layers)]
    last = maps[("legrad", model.num_layers - 1)]
    assert last.shape == (2, model.num_heads + 1, *model.grid) and (last >= 0).all()
    assert last.any()
    np.testing.assert_allclose(last[:, -1], last[:, :-1].mean(axis=1), rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("method", ["attnlrp", "legrad"])
def test_two_classes_give_two_maps(headed, method):
    model, pixels = headed["dinov2_reg"]
    first = saliency.extract(model, pixels, [method], classes=[0, 0])
    second = saliency.extract(model, pixels, [method], classes=[3, 3])
    for key in first:
        assert not np.allclose(first[key], second[key]), key


@pytest.mark.parametrize("method", ["attnlrp", "legrad"])
def test_maps_change_when_the_weights_do(headed, method):
    model, pixels = headed["clip"]
    before = saliency.extract(model, pixels, [method], classes=[1, 2])
    shuffled = _copy(model.module)
    torch.manual_seed(9)
    for block in model.spec.arch.blocks(shuffled, model.num_layers):
        for module in block.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()
    after = saliency.extract(dataclasses.replace(model, module=shuffled), pixels, [method],
                             classes=[1, 2])
    for key in before:
        assert not np.allclose(before[key], after[key], rtol=1e-2), key


def test_a_backbone_without_a_classifier_has_no_class_to_explain():
    backbone = load_model("clip")
    pixels = torch.randn(1, 3, 224, 224)
    assert "attnlrp" in backbone.methods and "legrad" in backbone.methods
    with pytest.raises(ValueError, match="no classifier head"):
        saliency.extract(backbone, pixels, ["attnlrp"])
