"""Hungarian matching of queries to ground-truth objects, as in RT-DETRv2 (focal-style class cost).

Each image's ground truth gets exactly one query: the assignment of least total cost, where the cost of
pairing query ``i`` with object ``j`` is a weighted sum of a class cost, the L1 distance of the cxcywh boxes
and the negative generalised IoU. Unmatched queries are trained towards "no object".
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou

__all__ = ["HungarianMatcher"]

MatchIndices = list[tuple[torch.Tensor, torch.Tensor]]


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to objects (``scipy.optimize.linear_sum_assignment``).

    Args:
        cost_class: weight of the focal-style classification cost (official: 2).
        cost_bbox: weight of the L1 distance of normalised cxcywh boxes (official: 5).
        cost_giou: weight of the negative generalised IoU (official: 2).
        alpha: focal-loss alpha of the class cost.
        gamma: focal-loss gamma of the class cost.
    """

    def __init__(
        self,
        *,
        cost_class: float = 2.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        alpha: float = 0.25,
        gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if cost_class == cost_bbox == cost_giou == 0:
            raise ValueError("at least one matching cost weight must be non-zero")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.alpha = alpha
        self.gamma = gamma

    @torch.no_grad()
    def forward(self, outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> MatchIndices:
        """Match each image's queries to its objects.

        Args:
            outputs: ``pred_logits [B, Q, C]`` and ``pred_boxes [B, Q, 4]`` cxcywh in [0, 1].
            targets: per image, ``labels [n]`` int64 and ``boxes [n, 4]`` cxcywh in [0, 1].

        Returns:
            Per image ``(query_idx, target_idx)``, both int64 ``[min(Q, n)]`` on the CPU: query
            ``query_idx[k]`` is matched to object ``target_idx[k]``.
        """
        logits = outputs["pred_logits"].float()
        boxes = outputs["pred_boxes"].float()
        indices = []
        for i, target in enumerate(targets):
            if len(target["labels"]) == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty))
                continue
            cost = self.cost_matrix(logits[i], boxes[i], target["labels"], target["boxes"].float())
            query_idx, target_idx = linear_sum_assignment(cost.cpu().numpy())
            indices.append(
                (torch.as_tensor(query_idx, dtype=torch.int64), torch.as_tensor(target_idx, dtype=torch.int64))
            )
        return indices

    def cost_matrix(
        self, logits: torch.Tensor, boxes_cxcywh: torch.Tensor, labels: torch.Tensor, target_cxcywh: torch.Tensor
    ) -> torch.Tensor:
        """``[Q, n]`` matching cost of one image's queries (``[Q, C]`` logits, ``[Q, 4]`` boxes) and ``n`` objects."""
        prob = logits.sigmoid()[:, labels]
        neg_cost = (1 - self.alpha) * prob**self.gamma * -(1 - prob + 1e-8).log()
        pos_cost = self.alpha * (1 - prob) ** self.gamma * -(prob + 1e-8).log()
        cost_class = pos_cost - neg_cost
        cost_bbox = torch.cdist(boxes_cxcywh, target_cxcywh, p=1)
        cost_giou = -generalized_box_iou(
            box_convert(boxes_cxcywh, "cxcywh", "xyxy"), box_convert(target_cxcywh, "cxcywh", "xyxy")
        )
        return self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou
