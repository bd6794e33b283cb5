"""RTDETR: backbone, hybrid encoder and decoder assembled from a preset, with one builder per official size."""

from __future__ import annotations

import torch
from torch import nn

from ..contract import check_sampling
from .backbone import PResNet, build_backbone
from .decoder import RTDETRTransformerv2, build_decoder
from .deformable_attention import MSDeformableAttention
from .hybrid_encoder import HybridEncoder, RepVggBlock, build_hybrid_encoder
from .presets import ModelConfig, get_preset

__all__ = [
    "RTDETR",
    "build_model",
    "rtdetrv2_r18vd",
    "rtdetrv2_r34vd",
    "rtdetrv2_r50vd_m",
    "rtdetrv2_r50vd",
    "rtdetrv2_r101vd",
    "rtdetrv2_tiny",
]


class RTDETR(nn.Module):
    """The RT-DETRv2 detector.

    ``model(images)`` takes ``[B, 3, H, W]`` float RGB in [0, 1] (H and W multiples of 32) and returns
    ``pred_logits [B, Q, C]`` and ``pred_boxes [B, Q, 4]`` cxcywh in [0, 1]. In training, pass targets
    (per image ``labels`` and cxcywh ``boxes``) to get the auxiliary and denoising outputs as well.
    """

    def __init__(
        self, backbone: PResNet, encoder: HybridEncoder, decoder: RTDETRTransformerv2, *, config: ModelConfig
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.encoder = encoder
        self.decoder = decoder
        self.config = config

    @property
    def num_classes(self) -> int:
        return self.decoder.num_classes

    @property
    def sampling(self) -> str:
        """Sampling method of the decoder's deformable attention, ``"bilinear"`` or ``"discrete"``."""
        methods = {m.sampling for m in self.modules() if isinstance(m, MSDeformableAttention)}
        assert len(methods) == 1, f"decoder layers disagree on sampling: {methods}"
        return methods.pop()

    def set_sampling(self, method: str) -> RTDETR:
        """Switch every decoder layer to ``method``; weights are untouched. Returns ``self``."""
        check_sampling(method)
        for module in self.modules():
            if isinstance(module, MSDeformableAttention):
                module.sampling = method
        return self

    def set_eval_size(self, size: tuple[int, int]) -> RTDETR:
        """Precompute anchors and position embedding for ``(height, width)`` (multiples of 32). Returns ``self``.

        Inference at other sizes works without this (they are computed per call); this makes them constants
        of an exported graph and drops the per-call work.
        """
        self.config = self.config.with_eval_size(size)
        self.encoder.set_eval_size(self.config.eval_size)
        self.decoder.set_eval_size(self.config.eval_size)
        return self

    def deploy(self) -> RTDETR:
        """Eval mode with the RepVGG branches fused into single convolutions (inference only). Returns ``self``."""
        self.eval()
        for module in self.modules():
            if isinstance(module, RepVggBlock) and not hasattr(module, "conv"):
                module.fuse()
        return self

    def forward(
        self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor]:
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            check_images(images)
        return self.decoder(self.encoder(self.backbone(images)), targets)


def check_images(images: object) -> None:
    """Raise ``ValueError`` unless ``images`` is a float ``[B, 3, H, W]`` tensor with H, W multiples of 32."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise ValueError(f"images must be a float tensor (RGB in [0, 1]), got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape [B, 3, H, W], got {list(images.shape)}")
    height, width = images.shape[2:]
    if height % 32 or width % 32 or height == 0 or width == 0:
        raise ValueError(f"image height and width must be positive multiples of 32, got {height}x{width}")


def build_model(config: ModelConfig, *, num_classes: int = 80, sampling: str = "bilinear") -> RTDETR:
    """Build an RT-DETRv2 with freshly initialised weights from a preset."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    check_sampling(sampling)
    backbone = build_backbone(depth=config.depth, width=config.backbone_width, freeze_norm=config.freeze_norm)
    encoder = build_hybrid_encoder(
        in_channels=config.backbone_channels,
        hidden_dim=config.hidden_dim,
        dim_feedforward=config.encoder_ffn_dim,
        expansion=config.expansion,
        depth_mult=config.depth_mult,
        nhead=config.num_heads,
        eval_size=config.eval_size,
    )
    decoder = build_decoder(
        num_classes=num_classes,
        hidden_dim=config.decoder_hidden_dim,
        feat_channels=(config.hidden_dim,) * config.num_levels,
        num_queries=config.num_queries,
        num_points=config.num_points,
        num_layers=config.num_decoder_layers,
        eval_idx=config.eval_idx,
        dim_feedforward=config.decoder_ffn_dim,
        num_denoising=config.num_denoising,
        nhead=config.num_heads,
        eval_size=config.eval_size,
        sampling=sampling,
    )
    return RTDETR(backbone, encoder, decoder, config=config)


def rtdetrv2_r18vd(*, num_classes: int = 80, sampling: str = "bilinear") -> RTDETR:
    return build_model(get_preset("r18vd"), num_classes=num_classes, sampling=sampling)


def rtdetrv2_r34vd(*, num_classes: int = 80, sampling: str = "bilinear") -> RTDETR:
    return build_model(get_preset("r34vd"), num_classes=num_classes, sampling=sampling)


def rtdetrv2_r50vd_m(*, num_classes: int = 80, sampling: str = "bilinear") -> RTDETR:
    return build_model(get_preset("r50vd_m"), num_classes=num_classes, sampling=sampling)


def rtdetrv2_r50vd(*, num_classes: int = 80, sampling: str = "bilinear") -> RTDETR:
    return build_model(get_preset("r50vd"), num_classes=num_classes, sampling=sampling)


def rtdetrv2_r101vd(*, num_classes: int = 80, sampling: str = "bilinear") -> RTDETR:
    return build_model(get_preset("r101vd"), num_classes=num_classes, sampling=sampling)


def rtdetrv2_tiny(*, num_classes: int = 80, sampling: str = "bilinear") -> RTDETR:
    """Not an official size: a small model for CPU tests and the embedded demo."""
    return build_model(get_preset("tiny"), num_classes=num_classes, sampling=sampling)
