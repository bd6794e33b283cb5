"""Multi-head self-attention that can be traced batch-first, for converters that mislay sequence-first graphs.

``nn.MultiheadAttention(batch_first=True)`` traces into a sequence-first graph: its inputs are transposed to
``[L, B, D]`` (a ``Transpose`` with ``perm [1, 0, 2]``), projected, and reshaped per head from there. onnx2tf
(ONNX -> LiteRT) guesses each tensor's layout and gets that pattern wrong, so the converted model runs and answers
wrongly. ``Attention`` is the same module (same parameters, same state dict keys) with a second way to compute the
same function: ``explicit = True`` projects batch-first and reshapes to ``[B, heads, L, d]``, with plain
``MatMul`` and ``Softmax``. The export traces that form; training and the PyTorch reference keep PyTorch's own.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Attention", "set_explicit_attention"]


class Attention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` (batch-first, no dropout at inference) with an explicit batch-first form.

    Only what the detector uses is supported in the explicit form: self-attention without a key padding mask,
    an optional boolean or additive ``attn_mask``, no attention weights returned.
    """

    explicit: bool = False

    def forward(  # type: ignore[override]
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.explicit or self.training or need_weights:
            return super().forward(query, key, value, attn_mask=attn_mask, need_weights=need_weights)
        return _explicit(self, query, key, value, attn_mask), None


def _explicit(
    module: nn.MultiheadAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Scaled dot-product attention over ``[B, L, D]`` tensors, computed batch-first from ``module``'s weights."""
    batch, length, dim = query.shape
    heads = module.num_heads
    head_dim = dim // heads
    w_q, w_k, w_v = module.in_proj_weight.chunk(3)
    b_q, b_k, b_v = module.in_proj_bias.chunk(3)
    q = nn.functional.linear(query, w_q, b_q).reshape(batch, length, heads, head_dim).transpose(1, 2)
    k = nn.functional.linear(key, w_k, b_k).reshape(batch, key.shape[1], heads, head_dim).permute(0, 2, 3, 1)
    v = nn.functional.linear(value, w_v, b_v).reshape(batch, value.shape[1], heads, head_dim).transpose(1, 2)
    scores = (q * head_dim**-0.5) @ k
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    attended = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, length, dim)
    return module.out_proj(attended)


def set_explicit_attention(model: nn.Module, explicit: bool) -> nn.Module:
    """Compute every ``Attention`` of ``model`` in the explicit batch-first form (or PyTorch's); returns ``model``."""
    for module in model.modules():
        if isinstance(module, Attention):
            module.explicit = explicit
    return model
