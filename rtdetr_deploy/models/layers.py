"""Small building blocks shared by the backbone, the hybrid encoder and the decoder."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvNormLayer", "MLP", "activation", "inverse_sigmoid"]

_ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}


def activation(name: str | None) -> nn.Module:
    """An activation module by name; ``None`` gives the identity."""
    if name is None:
        return nn.Identity()
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


class ConvNormLayer(nn.Module):
    """Conv2d without bias, BatchNorm2d, activation; padding keeps the size for odd kernels at stride 1."""

    def __init__(
        self,
        ch_in: int,
        ch_out: int,
        kernel_size: int,
        stride: int,
        *,
        padding: int | None = None,
        act: str | None = None,
    ) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2 if padding is None else padding
        self.conv = nn.Conv2d(ch_in, ch_out, kernel_size, stride, padding=padding, bias=False)
        self.norm = nn.BatchNorm2d(ch_out)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class MLP(nn.Module):
    """``num_layers`` linear layers with an activation between them (none after the last)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int, *, act: str = "relu") -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip(dims_in, dims_out, strict=False))
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Logit of ``x`` clipped into [0, 1], with both odds terms floored at ``eps`` so the result stays finite."""
    x = x.clip(min=0.0, max=1.0)
    return torch.log(x.clip(min=eps) / (1 - x).clip(min=eps))
