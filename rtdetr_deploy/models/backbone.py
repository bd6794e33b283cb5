"""PResNet, variant d: the ResNet-vd backbone of RT-DETRv2 (deep stem, average-pool shortcuts).

Attribute names follow the official implementation so that release checkpoints load with ``strict=True``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import FrozenBatchNorm2d

from .layers import ConvNormLayer, activation

__all__ = ["PResNet", "build_backbone"]

BLOCKS_PER_STAGE = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def _shortcut(ch_in: int, ch_out: int, stride: int) -> nn.Module:
    """Projection shortcut; variant d downsamples with an average pool so the 1x1 conv sees every pixel."""
    if stride == 2:
        return nn.Sequential(
            OrderedDict([("pool", nn.AvgPool2d(2, 2, 0, ceil_mode=True)), ("conv", ConvNormLayer(ch_in, ch_out, 1, 1))])
        )
    return ConvNormLayer(ch_in, ch_out, 1, stride)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, ch_in: int, ch_out: int, stride: int, shortcut: bool) -> None:
        super().__init__()
        self.shortcut = shortcut
        if not shortcut:
            self.short = _shortcut(ch_in, ch_out, stride)
        self.branch2a = ConvNormLayer(ch_in, ch_out, 3, stride, act="relu")
        self.branch2b = ConvNormLayer(ch_out, ch_out, 3, 1)
        self.act = activation("relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch2b(self.branch2a(x))
        return self.act(out + (x if self.shortcut else self.short(x)))


class BottleNeck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride in variant d), 1x1 expand by 4, residual (ResNet-50/101)."""

    expansion = 4

    def __init__(self, ch_in: int, ch_out: int, stride: int, shortcut: bool) -> None:
        super().__init__()
        self.branch2a = ConvNormLayer(ch_in, ch_out, 1, 1, act="relu")
        self.branch2b = ConvNormLayer(ch_out, ch_out, 3, stride, act="relu")
        self.branch2c = ConvNormLayer(ch_out, ch_out * self.expansion, 1, 1)
        self.shortcut = shortcut
        if not shortcut:
            self.short = _shortcut(ch_in, ch_out * self.expansion, stride)
        self.act = activation("relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch2c(self.branch2b(self.branch2a(x)))
        return self.act(out + (x if self.shortcut else self.short(x)))


class Blocks(nn.Module):
    """One residual stage; its first block changes channels (and stride, except in the first stage)."""

    def __init__(self, block: type[BasicBlock | BottleNeck], ch_in: int, ch_out: int, count: int, stride: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        for i in range(count):
            self.blocks.append(block(ch_in, ch_out, stride=stride if i == 0 else 1, shortcut=i > 0))
            ch_in = ch_out * block.expansion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class PResNet(nn.Module):
    """ResNet-vd returning the stride-8, 16 and 32 feature maps.

    Args:
        depth: 18, 34, 50 or 101.
        width: channels of the first stage (64 in every official size); later stages double it.
        freeze_norm: replace every BatchNorm2d with ``FrozenBatchNorm2d`` (the official r50/r101 setting).
    """

    def __init__(self, depth: int, *, width: int = 64, freeze_norm: bool = False) -> None:
        super().__init__()
        block = BottleNeck if depth >= 50 else BasicBlock
        stem = [
            (3, width // 2, 2, "conv1_1"),
            (width // 2, width // 2, 1, "conv1_2"),
            (width // 2, width, 1, "conv1_3"),
        ]
        self.conv1 = nn.Sequential(
            OrderedDict((name, ConvNormLayer(c_in, c_out, 3, s, act="relu")) for c_in, c_out, s, name in stem)
        )
        stage_widths = [width * 2**i for i in range(4)]
        self.res_layers = nn.ModuleList()
        ch_in = width
        for i, (stage_width, count) in enumerate(zip(stage_widths, BLOCKS_PER_STAGE[depth], strict=False)):
            self.res_layers.append(Blocks(block, ch_in, stage_width, count, stride=1 if i == 0 else 2))
            ch_in = stage_width * block.expansion
        self.out_channels = [w * block.expansion for w in stage_widths[1:]]
        self.out_strides = [8, 16, 32]
        if freeze_norm:
            _freeze_batch_norms(self)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``[B, 3, H, W]`` images to three maps of strides 8, 16 and 32."""
        x = F.max_pool2d(self.conv1(images), kernel_size=3, stride=2, padding=1)
        features = []
        for i, stage in enumerate(self.res_layers):
            x = stage(x)
            if i > 0:
                features.append(x)
        return features


def _freeze_batch_norms(module: nn.Module) -> None:
    """Swap every BatchNorm2d below ``module`` for a FrozenBatchNorm2d holding the same statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            _freeze_batch_norms(child)


def build_backbone(*, depth: int, width: int = 64, freeze_norm: bool = False) -> PResNet:
    return PResNet(depth, width=width, freeze_norm=freeze_norm)
