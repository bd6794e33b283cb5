"""Decision points: where the network picks one discrete outcome by comparing floats.

At inference RT-DETRv2 decides discretely in two places: the query selection (top-k of the encoder's class
scores) and, with discrete sampling, the pixel index of every sampling location (the integer part of
``loc * W + 0.5``, clamped). Two faithful implementations of the same weights, PyTorch and ONNX Runtime say,
compute the floats in front of a decision to within rounding; where two scores tie or a location lies on a
pixel boundary they may decide differently, and from there on their outputs differ for a reason that is no
error. Untrained weights put every decision on such a tie (near-zero sampling offsets land exactly on pixel
boundaries; equal scores everywhere).

``DecisionLog`` makes this checkable. Recording (``with DecisionLog() as log: model(images)``) keeps the inputs
and outcomes of every decision in execution order, also while tracing, so an exporter can return them as extra
graph outputs. Replaying (``DecisionLog(replay=...)``) makes a forward pass take the other implementation's
outcome wherever the two differ at a tie, and counts every other difference as a disagreement: a real fault.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Decision", "DecisionLog", "round_index", "select_top"]

_ACTIVE: contextvars.ContextVar[DecisionLog | None] = contextvars.ContextVar("rtdetr_decision_log", default=None)
_EPS32 = float(np.finfo(np.float32).eps)


@dataclass
class Decision:
    """One decision of a forward pass.

    Attributes:
        kind: ``"selection"`` (top-k of scores) or ``"index"`` (a rounded, clamped pixel coordinate).
        where: which one, e.g. ``"query selection"`` or ``"decoder layer 0, level 1, x"``.
        values: what was compared: selection scores ``[B, N]``, or the coordinates before rounding.
        outcome: what was decided: selected positions ``[B, K]`` (int64), or the integer coordinates (whole
            numbers in float).
        ties: outcomes taken from the replayed implementation because the two differ at a tie.
        disagreements: outcomes that differ away from any tie (with replay only).
        example: the first disagreement, described.
    """

    kind: str
    where: str
    values: torch.Tensor
    outcome: torch.Tensor
    ties: int = 0
    disagreements: int = 0
    example: str = ""


class DecisionLog:
    """Records every decision of the forward passes run inside ``with log:``; optionally replays another's.

    Args:
        replay: the other implementation's ``(values, outcome)`` per decision, in execution order (arrays of any
            shape holding the same elements, e.g. ``[B, -1]`` graph outputs).
        index_tie_ulps: two coordinates tie when both lie within this many float32 ULPs of the pixel boundary
            between their integer parts.
        selection_tol: a selection of the other implementation ties when every score it picked lies within this
            (times ``max(1, |score|)``) of the k-th best score here and its order is descending to within it.
    """

    def __init__(
        self,
        replay: Sequence[tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]] | None = None,
        *,
        index_tie_ulps: float = 64.0,
        selection_tol: float = 1e-4,
    ) -> None:
        self.decisions: list[Decision] = []
        self.replay = list(replay) if replay is not None else None
        self.index_tie_ulps = index_tie_ulps
        self.selection_tol = selection_tol
        self._token: contextvars.Token | None = None

    def __enter__(self) -> DecisionLog:
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.reset(self._token)
        if self.replay is not None and exc[0] is None and len(self.decisions) != len(self.replay):
            raise ValueError(f"replay holds {len(self.replay)} decisions, the model made {len(self.decisions)}")

    @property
    def ties(self) -> int:
        return sum(d.ties for d in self.decisions)

    @property
    def disagreements(self) -> int:
        return sum(d.disagreements for d in self.decisions)

    def _other(self, like: torch.Tensor, values_like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.replay is None:
            return None
        index = len(self.decisions)
        if index >= len(self.replay):
            raise ValueError(f"replay holds {len(self.replay)} decisions, the model makes more")
        values, outcome = (torch.as_tensor(np.asarray(a)) for a in self.replay[index])
        if outcome.numel() != like.numel() or values.numel() != values_like.numel():
            raise ValueError(
                f"replayed decision {index} has {outcome.numel()} outcomes, the model decides {like.numel()}"
            )
        return values.reshape(values_like.shape).to(values_like), outcome.reshape(like.shape).to(like)

    def _index(self, where: str, values: torch.Tensor, high: int, own: torch.Tensor) -> torch.Tensor:
        other = self._other(own, values)
        decision = Decision("index", where, values, own)
        self.decisions.append(decision)
        if other is None:
            return own
        other_values, other_outcome = other
        differ = own != other_outcome
        if not bool(differ.any()):
            return own
        boundary = torch.maximum(own, other_outcome).to(values.dtype)
        tol = self.index_tie_ulps * _EPS32 * boundary.abs().clamp(min=1.0)
        tie = (
            differ
            & ((own - other_outcome).abs() == 1)
            & ((values - boundary).abs() <= tol)
            & ((other_values - boundary).abs() <= tol)
        )
        decision.ties = int(tie.sum())
        wrong = differ & ~tie
        decision.disagreements = int(wrong.sum())
        if decision.disagreements:
            first = tuple(int(i) for i in wrong.nonzero()[0])
            decision.example = (
                f"{where}: {int(own[first])} here (from {float(values[first]):.6g}), {int(other_outcome[first])} "
                f"there (from {float(other_values[first]):.6g})"
            )
        decision.outcome = torch.where(tie, other_outcome, own)
        return decision.outcome

    def _selection(self, where: str, scores: torch.Tensor, k: int, own: torch.Tensor) -> torch.Tensor:
        other = self._other(own, scores)
        decision = Decision("selection", where, scores, own)
        self.decisions.append(decision)
        if other is None or bool((own == other[1]).all()):
            return own
        other_outcome = other[1]
        kth = scores.gather(1, own[:, -1:])
        picked = scores.gather(1, other_outcome)
        tol = self.selection_tol * kth.abs().clamp(min=1.0)
        too_low = picked < kth - tol
        out_of_order = torch.zeros_like(too_low)
        out_of_order[:, 1:] = picked[:, 1:] > picked[:, :-1] + tol[:, :1]
        wrong = too_low | out_of_order
        decision.ties = int(((own != other_outcome) & ~wrong).sum())
        decision.disagreements = int(wrong.sum())
        if decision.disagreements:
            image, rank = (int(i) for i in wrong.nonzero()[0])
            decision.example = (
                f"{where}: image {image}, rank {rank} picks score {float(picked[image, rank]):.6g} there, while the "
                f"k-th best here is {float(kth[image, 0]):.6g}"
            )
        decision.outcome = other_outcome
        return other_outcome


def round_index(values: torch.Tensor, high: int, *, where: str = "") -> torch.Tensor:
    """The discrete operator's integer coordinate: the integer part (toward zero) of ``values``, clamped to
    ``[0, high]``, as a whole number in the dtype of ``values``; recorded (and replayed) by an active
    ``DecisionLog``.

    Clamping first makes every coordinate non-negative, where the floor is the integer part; bounds and result
    stay float, so an exported graph casts whole numbers only (``deformable_attention.discrete_indices``).
    """
    own = values.clamp(0.0, float(high)).floor()
    log = _ACTIVE.get()
    return own if log is None else log._index(where, values, high, own)


def select_top(scores: torch.Tensor, k: int, *, where: str = "") -> torch.Tensor:
    """Positions ``[B, k]`` of the ``k`` best ``scores [B, N]``, best first; recorded (and replayed) by an active
    ``DecisionLog``."""
    _, own = torch.topk(scores, k, dim=-1)
    log = _ACTIVE.get()
    return own if log is None else log._selection(where, scores, k, own)
