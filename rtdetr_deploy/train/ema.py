"""Exponential moving average of the weights: what RT-DETRv2 evaluates, keeps as ``best`` and exports."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """The official ``ModelEMA``: ``ema = d * ema + (1 - d) * model`` after every optimizer step.

    The decay ramps up as ``d = decay * (1 - exp(-updates / warmups))`` so that early, poor weights are
    forgotten quickly. Every floating-point tensor of the state dict is averaged (BatchNorm statistics too).

    Args:
        model: the model being trained (unwrapped from DistributedDataParallel).
        decay: final decay (official: 0.9999).
        warmups: updates over which the decay ramps up (official: 2000).
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.9999, warmups: int = 2000) -> None:
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.decay = decay
        self.warmups = warmups
        self.updates = 0

    def current_decay(self) -> float:
        """Decay of the next update, ramped up by the number of updates so far."""
        return self.decay * (1 - math.exp(-self.updates / self.warmups))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` into the average."""
        self.updates += 1
        d = self.current_decay()
        source = model.state_dict()
        averaged, current = [], []
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                averaged.append(value)
                current.append(source[name].detach())
        # Multiply-then-add, not lerp: buffers holding inf (invalid anchors) must stay inf rather than turn NaN.
        torch._foreach_mul_(averaged, d)
        torch._foreach_add_(averaged, current, alpha=1 - d)

    def state_dict(self) -> dict[str, Any]:
        """``{'module': state_dict, 'updates': n}``: the layout of official checkpoints, which ``load_model`` reads."""
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (also an official release's ``ema`` entry)."""
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
