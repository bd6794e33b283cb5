"""Small building blocks shared by the backbone, the hybrid encoder and the decoder."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..metadata import GELU_FORMS

__all__ = ["GELU", "ConvNormLayer", "MLP", "activation", "inverse_sigmoid", "set_gelu_form"]


# Abramowitz & Stegun 7.1.26: erf(z) = 1 - (a1 t + ... + a5 t^5) exp(-z^2), t = 1 / (1 + p z), for z >= 0,
# absolute error below 1.5e-7.
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


class GELU(nn.Module):
    """GELU ``x * Phi(x)`` in one of ``GELU_FORMS``; the form is a plain attribute and changes no weight.

    The ``"poly"`` form uses ``x * erf(x / sqrt 2) = |x| * erf(|x| / sqrt 2)`` and A&S 7.1.26 for ``erf`` of a
    non-negative argument: ``0.5 * (x + |x| * (1 - poly(t) * exp(-x^2 / 2)))``, only Abs, Mul, Add, Div and Exp.
    """

    def __init__(self, form: str = "erf") -> None:
        super().__init__()
        self.form = form

    @property
    def form(self) -> str:
        return self._form

    @form.setter
    def form(self, form: str) -> None:
        if form not in GELU_FORMS:
            raise ValueError(f"unknown GELU form {form!r}; choose from {', '.join(GELU_FORMS)}")
        self._form = form

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "erf":
            return nn.functional.gelu(x)
        if self.form == "tanh":
            return nn.functional.gelu(x, approximate="tanh")
        magnitude = x.abs()
        t = 1.0 / (1.0 + (_AS_P / math.sqrt(2.0)) * magnitude)
        a1, a2, a3, a4, a5 = _AS_A
        poly = t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5))))
        erf = 1.0 - poly * torch.exp(-0.5 * x * x)
        return 0.5 * (x + magnitude * erf)

    def extra_repr(self) -> str:
        return f"form={self.form!r}"


def set_gelu_form(model: nn.Module, form: str) -> nn.Module:
    """Compute every ``GELU`` of ``model`` in ``form`` (one of ``GELU_FORMS``); returns ``model``."""
    if form not in GELU_FORMS:
        raise ValueError(f"unknown GELU form {form!r}; choose from {', '.join(GELU_FORMS)}")
    for module in model.modules():
        if isinstance(module, GELU):
            module.form = form
    return model


_ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": GELU}


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
