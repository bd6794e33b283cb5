"""Model presets: one frozen dataclass instance per official RT-DETRv2 size, plus a small test preset.

The official values come from the RT-DETRv2 release configs (``configs/rtdetrv2/*.yml``). A preset holds
architecture and the facts that travel with it (evaluation size, scale-adaptive backbone learning rate);
the class count is a separate argument because it belongs to the data, not to the architecture.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace

__all__ = ["ModelConfig", "PRESETS", "get_preset"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one RT-DETRv2 variant.

    Attributes:
        name: preset name, e.g. ``"r18vd"``.
        depth: PResNet depth (18, 34, 50 or 101), variant d.
        freeze_norm: backbone BatchNorms are frozen (``FrozenBatchNorm2d``) as in the official config; this
            decides whether ``num_batches_tracked`` keys exist in the state dict.
        backbone_width: channels of the first residual stage (64 for every official size).
        hidden_dim: width of the hybrid encoder (and of the maps the decoder reads).
        decoder_hidden_dim: width of the decoder (256 in every official size, r101vd included).
        encoder_ffn_dim: feed-forward width of the AIFI layer.
        expansion: hidden-channel ratio of the CCFF ``CSPRepLayer`` blocks.
        depth_mult: multiplier of the number of RepVGG blocks (3) per CCFF block.
        num_heads: attention heads in encoder and decoder.
        num_decoder_layers: decoder layers holding weights.
        eval_idx: decoder layer whose output is used at inference (-1: the last).
        num_queries: object queries (and detections before top-k).
        num_points: deformable-attention sampling points per feature level (selective multi-scale sampling).
        decoder_ffn_dim: feed-forward width of the decoder layers.
        num_denoising: denoising queries in training (0 disables contrastive denoising).
        eval_size: ``(height, width)`` the anchors and position embedding are precomputed for.
        backbone_lr: scale-adaptive learning rate of the backbone in the official recipe.
        official: whether the preset is one of the released sizes.
    """

    name: str
    depth: int
    freeze_norm: bool
    expansion: float
    num_decoder_layers: int
    backbone_lr: float
    backbone_width: int = 64
    hidden_dim: int = 256
    decoder_hidden_dim: int = 256
    encoder_ffn_dim: int = 1024
    depth_mult: float = 1.0
    num_heads: int = 8
    eval_idx: int = -1
    num_queries: int = 300
    num_points: tuple[int, ...] = (4, 4, 4)
    decoder_ffn_dim: int = 1024
    num_denoising: int = 100
    eval_size: tuple[int, int] = (640, 640)
    official: bool = True
    feat_strides: tuple[int, ...] = field(default=(8, 16, 32), repr=False)

    def __post_init__(self) -> None:
        if self.depth not in (18, 34, 50, 101):
            raise ValueError(f"depth must be one of 18, 34, 50, 101, got {self.depth}")
        if len(self.num_points) != len(self.feat_strides):
            raise ValueError(f"num_points needs one entry per level ({len(self.feat_strides)}), got {self.num_points}")
        for dim in (self.hidden_dim, self.decoder_hidden_dim):
            if dim % self.num_heads or dim % 4:
                raise ValueError(f"hidden width {dim} must divide by num_heads {self.num_heads} and by 4")
        if not -self.num_decoder_layers <= self.eval_idx < self.num_decoder_layers:
            raise ValueError(f"eval_idx {self.eval_idx} out of range for {self.num_decoder_layers} decoder layers")
        check_input_size(self.eval_size)

    @property
    def backbone_channels(self) -> tuple[int, int, int]:
        """Channels of the three backbone levels fed to the encoder (strides 8, 16, 32)."""
        expansion = 4 if self.depth >= 50 else 1
        return tuple(self.backbone_width * expansion * m for m in (2, 4, 8))

    @property
    def num_levels(self) -> int:
        return len(self.feat_strides)

    def with_eval_size(self, eval_size: tuple[int, int]) -> ModelConfig:
        """Same architecture, anchors and position embedding precomputed for another input size."""
        return replace(self, eval_size=check_input_size(eval_size))


def check_input_size(size: tuple[int, int]) -> tuple[int, int]:
    """Validate an ``(height, width)`` input size: two positive multiples of 32."""
    if len(size) != 2 or any(int(s) != s or s <= 0 or s % 32 for s in size):
        raise ValueError(f"input size must be (height, width), positive multiples of 32, got {tuple(size)}")
    return int(size[0]), int(size[1])


PRESETS: dict[str, ModelConfig] = {
    cfg.name: cfg
    for cfg in (
        ModelConfig(name="r18vd", depth=18, freeze_norm=False, expansion=0.5, num_decoder_layers=3, backbone_lr=1e-4),
        ModelConfig(name="r34vd", depth=34, freeze_norm=False, expansion=0.5, num_decoder_layers=4, backbone_lr=5e-5),
        ModelConfig(
            name="r50vd_m",
            depth=50,
            freeze_norm=True,
            expansion=0.5,
            num_decoder_layers=6,
            eval_idx=2,
            backbone_lr=1e-5,
        ),
        ModelConfig(name="r50vd", depth=50, freeze_norm=True, expansion=1.0, num_decoder_layers=6, backbone_lr=1e-5),
        ModelConfig(
            name="r101vd",
            depth=101,
            freeze_norm=True,
            expansion=1.0,
            num_decoder_layers=6,
            hidden_dim=384,
            encoder_ffn_dim=2048,
            backbone_lr=1e-6,
        ),
        # Not an official size: the same architecture shrunk for CPU tests and the embedded demo. Its levels use
        # different point counts on purpose, so the selective multi-scale path is always exercised.
        ModelConfig(
            name="tiny",
            depth=18,
            freeze_norm=False,
            expansion=0.5,
            num_decoder_layers=2,
            backbone_lr=1e-4,
            backbone_width=16,
            hidden_dim=64,
            decoder_hidden_dim=64,
            encoder_ffn_dim=128,
            depth_mult=0.34,
            num_queries=50,
            num_points=(4, 2, 2),
            decoder_ffn_dim=128,
            num_denoising=20,
            eval_size=(320, 320),
            official=False,
        ),
    )
}


def get_preset(name: str) -> ModelConfig:
    """Look up a preset by name; unknown names raise ``ValueError`` listing the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        hint = difflib.get_close_matches(str(name), PRESETS, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"unknown preset {name!r}{suggestion}; choose from {', '.join(PRESETS)}") from None
