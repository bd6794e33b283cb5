"""HybridEncoder: AIFI (one transformer layer on the coarsest map) and CCFF (cross-scale CNN fusion).

Attribute names follow the official implementation so that release checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from .attention import Attention
from .layers import ConvNormLayer, activation

__all__ = ["HybridEncoder", "build_hybrid_encoder", "sincos_position_embedding"]


class RepVggBlock(nn.Module):
    """3x3 conv-BN plus 1x1 conv-BN, summed, then activated; ``deploy()`` fuses both into one 3x3 conv."""

    def __init__(self, ch_in: int, ch_out: int, *, act: str = "silu") -> None:
        super().__init__()
        self.conv1 = ConvNormLayer(ch_in, ch_out, 3, 1, padding=1)
        self.conv2 = ConvNormLayer(ch_in, ch_out, 1, 1, padding=0)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "conv"):
            return self.act(self.conv(x))
        return self.act(self.conv1(x) + self.conv2(x))

    @torch.no_grad()
    def fuse(self) -> None:
        """Replace the two branches by one equivalent 3x3 convolution with bias (inference only)."""
        weight3, bias3 = _fold_batch_norm(self.conv1)
        weight1, bias1 = _fold_batch_norm(self.conv2)
        conv = nn.Conv2d(self.conv1.conv.in_channels, self.conv1.conv.out_channels, 3, 1, padding=1)
        conv.weight.copy_(weight3 + F.pad(weight1, [1, 1, 1, 1]))
        conv.bias.copy_(bias3 + bias1)
        self.conv = conv
        del self.conv1, self.conv2


def _fold_batch_norm(layer: ConvNormLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of the convolution that equals ``layer``'s conv followed by its eval-mode BatchNorm."""
    norm = layer.norm
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return layer.conv.weight * scale.reshape(-1, 1, 1, 1), norm.bias - norm.running_mean * scale


class CSPRepLayer(nn.Module):
    """CSP block of the CCFF fusion: a RepVGG branch and a 1x1 branch, summed, then projected."""

    def __init__(
        self, in_channels: int, out_channels: int, *, num_blocks: int = 3, expansion: float = 1.0, act: str = "silu"
    ) -> None:
        super().__init__()
        hidden_channels = int(out_channels * expansion)
        self.conv1 = ConvNormLayer(in_channels, hidden_channels, 1, 1, act=act)
        self.conv2 = ConvNormLayer(in_channels, hidden_channels, 1, 1, act=act)
        self.bottlenecks = nn.Sequential(
            *[RepVggBlock(hidden_channels, hidden_channels, act=act) for _ in range(num_blocks)]
        )
        if hidden_channels != out_channels:
            self.conv3 = ConvNormLayer(hidden_channels, out_channels, 1, 1, act=act)
        else:
            self.conv3 = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


class TransformerEncoderLayer(nn.Module):
    """Post-norm transformer layer; the position embedding is added to queries and keys only."""

    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int, *, dropout: float = 0.0, act: str = "gelu"
    ) -> None:
        super().__init__()
        self.self_attn = Attention(d_model, nhead, dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = activation(act)

    def forward(self, src: torch.Tensor, pos_embed: torch.Tensor) -> torch.Tensor:
        """``[B, L, C]`` tokens and ``[1, L, C]`` position embedding to ``[B, L, C]``."""
        q = k = src + pos_embed
        attended, _ = self.self_attn(q, k, value=src, need_weights=False)
        src = self.norm1(src + self.dropout1(attended))
        ffn = self.linear2(self.dropout(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout2(ffn))


class TransformerEncoder(nn.Module):
    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(encoder_layer) for _ in range(num_layers))

    def forward(self, src: torch.Tensor, pos_embed: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            src = layer(src, pos_embed)
        return src


def sincos_position_embedding(width: int, height: int, embed_dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """2-D sine-cosine position embedding ``[1, width * height, embed_dim]``.

    The official model enumerates positions with ``meshgrid(w, h, indexing='ij')``, i.e. the w index varies
    slowest, while the tokens it is added to are flattened row-major (h slowest). Trained weights depend on
    that pairing, so it is kept as is.
    """
    grid_w, grid_h = torch.meshgrid(
        torch.arange(int(width), dtype=torch.float32), torch.arange(int(height), dtype=torch.float32), indexing="ij"
    )
    pos_dim = embed_dim // 4
    omega = 1.0 / (temperature ** (torch.arange(pos_dim, dtype=torch.float32) / pos_dim))
    out_w = grid_w.flatten()[:, None] @ omega[None]
    out_h = grid_h.flatten()[:, None] @ omega[None]
    return torch.concat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)[None]


class HybridEncoder(nn.Module):
    """Projects the backbone maps to ``hidden_dim``, runs AIFI on the stride-32 map, fuses top-down then bottom-up.

    Args:
        in_channels: channels of the backbone maps, strides 8, 16, 32.
        hidden_dim: output channels of every level.
        eval_size: ``(height, width)`` for which the position embedding is precomputed; other sizes that are
            multiples of 32 compute it on the fly.
    """

    def __init__(
        self,
        in_channels: tuple[int, ...],
        *,
        feat_strides: tuple[int, ...] = (8, 16, 32),
        hidden_dim: int = 256,
        nhead: int = 8,
        dim_feedforward: int = 1024,
        expansion: float = 1.0,
        depth_mult: float = 1.0,
        eval_size: tuple[int, int] | None = None,
        use_encoder_idx: tuple[int, ...] = (2,),
        num_encoder_layers: int = 1,
        pe_temperature: float = 10000.0,
    ) -> None:
        super().__init__()
        self.in_channels = tuple(in_channels)
        self.feat_strides = tuple(feat_strides)
        self.hidden_dim = hidden_dim
        self.use_encoder_idx = tuple(use_encoder_idx)
        self.pe_temperature = pe_temperature
        self.input_proj = nn.ModuleList(
            nn.Sequential(
                OrderedDict(
                    [
                        ("conv", nn.Conv2d(c, hidden_dim, kernel_size=1, bias=False)),
                        ("norm", nn.BatchNorm2d(hidden_dim)),
                    ]
                )
            )
            for c in in_channels
        )
        layer = TransformerEncoderLayer(hidden_dim, nhead, dim_feedforward, act="gelu")
        self.encoder = nn.ModuleList(TransformerEncoder(layer, num_encoder_layers) for _ in use_encoder_idx)
        num_blocks = round(3 * depth_mult)
        self.lateral_convs = nn.ModuleList()
        self.fpn_blocks = nn.ModuleList()
        self.downsample_convs = nn.ModuleList()
        self.pan_blocks = nn.ModuleList()
        for _ in range(len(in_channels) - 1):
            self.lateral_convs.append(ConvNormLayer(hidden_dim, hidden_dim, 1, 1, act="silu"))
            self.fpn_blocks.append(CSPRepLayer(2 * hidden_dim, hidden_dim, num_blocks=num_blocks, expansion=expansion))
            self.downsample_convs.append(ConvNormLayer(hidden_dim, hidden_dim, 3, 2, act="silu"))
            self.pan_blocks.append(CSPRepLayer(2 * hidden_dim, hidden_dim, num_blocks=num_blocks, expansion=expansion))
        # Plain attributes, not buffers: official checkpoints do not store them.
        self.eval_pos_embeds: dict[tuple[int, int, int], torch.Tensor] = {}
        if eval_size is not None:
            self.set_eval_size(eval_size)

    def set_eval_size(self, eval_size: tuple[int, int]) -> None:
        """Precompute the position embedding for inputs of ``(height, width)``."""
        self.eval_pos_embeds = {}
        self._pos_embed_copies: dict[tuple, torch.Tensor] = {}
        for idx in self.use_encoder_idx:
            h, w = eval_size[0] // self.feat_strides[idx], eval_size[1] // self.feat_strides[idx]
            self.eval_pos_embeds[idx, h, w] = sincos_position_embedding(w, h, self.hidden_dim, self.pe_temperature)

    def _position_embedding(self, level: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """The precomputed embedding when the map has the eval size, else one computed for this size."""
        pos_embed = self.eval_pos_embeds.get((level, height, width))
        if pos_embed is None or self.training:
            pos_embed = sincos_position_embedding(width, height, self.hidden_dim, self.pe_temperature)
            return pos_embed.to(device=like.device, dtype=like.dtype)
        # A copy per device and dtype, so that inference copies nothing from the host (CUDA-graph capture).
        copy_key = (level, height, width, like.device, like.dtype)
        if copy_key not in self._pos_embed_copies:
            self._pos_embed_copies[copy_key] = pos_embed.to(device=like.device, dtype=like.dtype)
        return self._pos_embed_copies[copy_key]

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Three ``[B, C_i, H_i, W_i]`` maps to three ``[B, hidden_dim, H_i, W_i]`` maps."""
        proj_feats = [proj(feat) for proj, feat in zip(self.input_proj, feats, strict=False)]
        for encoder, idx in zip(self.encoder, self.use_encoder_idx, strict=False):
            _, _, h, w = proj_feats[idx].shape
            tokens = proj_feats[idx].flatten(2).permute(0, 2, 1)
            memory = encoder(tokens, self._position_embedding(idx, h, w, tokens))
            proj_feats[idx] = memory.permute(0, 2, 1).reshape(-1, self.hidden_dim, h, w).contiguous()

        num_levels = len(self.in_channels)
        inner_outs = [proj_feats[-1]]
        for step, idx in enumerate(range(num_levels - 1, 0, -1)):
            feat_high = self.lateral_convs[step](inner_outs[0])
            inner_outs[0] = feat_high
            upsampled = F.interpolate(feat_high, scale_factor=2.0, mode="nearest")
            inner_outs.insert(0, self.fpn_blocks[step](torch.concat([upsampled, proj_feats[idx - 1]], dim=1)))

        outs = [inner_outs[0]]
        for idx in range(num_levels - 1):
            downsampled = self.downsample_convs[idx](outs[-1])
            outs.append(self.pan_blocks[idx](torch.concat([downsampled, inner_outs[idx + 1]], dim=1)))
        return outs


def build_hybrid_encoder(
    *,
    in_channels: tuple[int, ...],
    hidden_dim: int,
    dim_feedforward: int,
    expansion: float,
    depth_mult: float,
    nhead: int = 8,
    eval_size: tuple[int, int] | None = None,
) -> HybridEncoder:
    return HybridEncoder(
        in_channels,
        hidden_dim=hidden_dim,
        nhead=nhead,
        dim_feedforward=dim_feedforward,
        expansion=expansion,
        depth_mult=depth_mult,
        eval_size=eval_size,
    )
