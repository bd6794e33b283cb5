"""AdamW with RT-DETRv2's parameter groups, linear warm-up, and the dsp recipe's frozen sampling offsets."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["build_optimizer", "build_warmup", "freeze_sampling_offsets", "freeze_stem"]


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    backbone_lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters in four groups: backbone or not, times decayed or not.

    The backbone gets its scale-adaptive learning rate (official: r18 1e-4, r34 5e-5, r50 1e-5, r101 1e-6);
    norm layers and biases (every parameter of at most one dimension) get no weight decay, as in the
    official configs. Parameters with ``requires_grad=False`` are left out.
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((name.startswith("backbone."), param.ndim > 1), []).append(param)
    param_groups = [
        {
            "params": params,
            "lr": backbone_lr if is_backbone else lr,
            "weight_decay": weight_decay if decays else 0.0,
        }
        for (is_backbone, decays), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=lr, betas=betas, weight_decay=weight_decay)


def build_warmup(optimizer: torch.optim.Optimizer, *, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: the official ``LinearWarmup`` (factor ``min(1, (step + 1) / warmup_steps)``), then constant.

    Its ``last_epoch`` counts optimizer steps, which makes it the run's global step counter.
    """

    # A plain function, not a callable object: LambdaLR would save an object's attributes in its state and
    # restore them on resume, overriding the configured warm-up.
    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def freeze_sampling_offsets(model: nn.Module) -> int:
    """Stop training every ``cross_attn.sampling_offsets`` parameter (discrete-sampling fine-tuning).

    The discrete operator rounds sampling locations to pixels, so it gives the offsets no useful gradient;
    the official dsp recipe freezes them. Returns the number of tensors frozen.
    """
    frozen = 0
    for name, param in model.named_parameters():
        if "cross_attn.sampling_offsets" in name:
            param.requires_grad_(False)
            frozen += 1
    return frozen


def freeze_stem(model: nn.Module) -> int:
    """Stop training the backbone stem (``backbone.conv1``), as the official r50/r101 configs do (``freeze_at: 0``).

    Those are the presets with frozen BatchNorms; r18 and r34 train everything. Returns the tensors frozen.
    """
    frozen = 0
    for name, param in model.named_parameters():
        if name.startswith("backbone.conv1."):
            param.requires_grad_(False)
            frozen += 1
    return frozen
