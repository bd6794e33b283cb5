"""RT-DETRv2's training loss: varifocal classification, L1 and GIoU box losses on matched queries.

The loss is applied to the final decoder layer, to every earlier decoder layer (``aux_outputs``), to the
encoder's query proposals (``enc_aux_outputs``) and to the denoising queries of every decoder layer
(``dn_aux_outputs``), whose targets are known by construction instead of matched.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torchvision.ops import box_convert, box_iou, generalized_box_iou_loss

from ..models.denoising import DenoisingGroups
from .matcher import HungarianMatcher, MatchIndices

__all__ = ["SetCriterion", "denoising_indices", "MAIN_TERMS"]

MAIN_TERMS = ("loss_vfl", "loss_bbox", "loss_giou")


class SetCriterion(nn.Module):
    """RT-DETRv2 loss (the official ``RTDETRCriterionv2`` with losses ``vfl`` and ``boxes``).

    Args:
        matcher: assigns queries to objects for the final, auxiliary and encoder outputs.
        num_classes: classes of the classification heads.
        weight_vfl: weight of the varifocal loss (official: 1).
        weight_bbox: weight of the L1 box loss (official: 5).
        weight_giou: weight of the GIoU loss (official: 2).
        alpha: varifocal alpha, the weight of negatives (official: 0.75).
        gamma: varifocal gamma (official: 2).
    """

    def __init__(
        self,
        matcher: HungarianMatcher,
        *,
        num_classes: int,
        weight_vfl: float = 1.0,
        weight_bbox: float = 5.0,
        weight_giou: float = 2.0,
        alpha: float = 0.75,
        gamma: float = 2.0,
    ) -> None:
        super().__init__()
        self.matcher = matcher
        self.num_classes = num_classes
        self.weights = {"loss_vfl": weight_vfl, "loss_bbox": weight_bbox, "loss_giou": weight_giou}
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, outputs: dict, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Weighted loss terms; their sum is the training loss.

        Args:
            outputs: the model's training outputs (``pred_logits``, ``pred_boxes``, ``aux_outputs``,
                ``enc_aux_outputs``, optionally ``dn_aux_outputs`` and ``dn_meta``).
            targets: per image, ``labels [n]`` int64 and ``boxes [n, 4]`` cxcywh in [0, 1].

        Returns:
            ``loss_vfl``, ``loss_bbox``, ``loss_giou`` of the final layer, and the same names suffixed
            ``_aux_{i}`` (earlier decoder layers), ``_enc_{i}`` (encoder proposals), ``_dn_{i}`` (denoising).
        """
        num_boxes = self._num_boxes(targets, outputs["pred_logits"].device)
        losses = self._terms(outputs, targets, self.matcher(outputs, targets), num_boxes)
        for prefix, group in (("aux", "aux_outputs"), ("enc", "enc_aux_outputs")):
            for i, layer in enumerate(outputs.get(group, [])):
                terms = self._terms(layer, targets, self.matcher(layer, targets), num_boxes)
                losses.update({f"{k}_{prefix}_{i}": v for k, v in terms.items()})
        meta: DenoisingGroups | None = outputs.get("dn_meta")
        if meta is not None:
            indices = denoising_indices(meta, targets)
            for i, layer in enumerate(outputs["dn_aux_outputs"]):
                terms = self._terms(layer, targets, indices, num_boxes * meta.num_groups)
                losses.update({f"{k}_dn_{i}": v for k, v in terms.items()})
        return losses

    @staticmethod
    def _num_boxes(targets: list[dict[str, torch.Tensor]], device: torch.device) -> float:
        """Objects per process in the batch (averaged over processes under DDP), at least 1."""
        num_boxes = torch.tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(num_boxes)
            num_boxes /= dist.get_world_size()
        return max(num_boxes.item(), 1.0)

    def _terms(
        self, outputs: dict[str, torch.Tensor], targets: list[dict], indices: MatchIndices, num_boxes: float
    ) -> dict[str, torch.Tensor]:
        logits = outputs["pred_logits"].float()
        boxes = outputs["pred_boxes"].float()
        batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)]).to(logits.device)
        query_idx = torch.cat([src for src, _ in indices]).to(logits.device)
        matched_cxcywh = boxes[batch_idx, query_idx]
        target_cxcywh = torch.cat(
            [t["boxes"][dst.to(t["boxes"].device)] for t, (_, dst) in zip(targets, indices, strict=True)]
        )
        target_labels = torch.cat(
            [t["labels"][dst.to(t["labels"].device)] for t, (_, dst) in zip(targets, indices, strict=True)]
        )
        matched_xyxy = box_convert(matched_cxcywh, "cxcywh", "xyxy")
        target_xyxy = box_convert(target_cxcywh.float(), "cxcywh", "xyxy")
        ious = torch.diag(box_iou(matched_xyxy, target_xyxy)).detach()
        losses = {
            "loss_vfl": self.varifocal_loss(logits, batch_idx, query_idx, target_labels, ious, num_boxes),
            "loss_bbox": F.l1_loss(matched_cxcywh, target_cxcywh.float(), reduction="sum") / num_boxes,
            "loss_giou": generalized_box_iou_loss(matched_xyxy, target_xyxy, reduction="sum") / num_boxes,
        }
        return {k: v * self.weights[k] for k, v in losses.items()}

    def varifocal_loss(
        self,
        logits: torch.Tensor,
        batch_idx: torch.Tensor,
        query_idx: torch.Tensor,
        labels: torch.Tensor,
        ious: torch.Tensor,
        num_boxes: float,
    ) -> torch.Tensor:
        """Varifocal loss: matched queries learn their box's IoU as the score of the true class.

        Args:
            logits: ``[B, Q, C]``.
            batch_idx, query_idx: ``[M]`` matched (image, query) pairs.
            labels: ``[M]`` their objects' classes.
            ious: ``[M]`` IoU of each matched box with its object (the soft target).
        """
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        target_classes[batch_idx, query_idx] = labels.to(logits.device)
        one_hot = F.one_hot(target_classes, num_classes=self.num_classes + 1)[..., :-1].to(logits.dtype)
        score = torch.zeros(logits.shape[:2], dtype=logits.dtype, device=logits.device)
        score[batch_idx, query_idx] = ious.to(logits.dtype)
        target_score = score.unsqueeze(-1) * one_hot
        pred_score = logits.sigmoid().detach()
        weight = self.alpha * pred_score.pow(self.gamma) * (1 - one_hot) + target_score
        loss = F.binary_cross_entropy_with_logits(logits, target_score, weight=weight, reduction="sum")
        return loss / num_boxes


def denoising_indices(meta: DenoisingGroups, targets: list[dict[str, torch.Tensor]]) -> MatchIndices:
    """Per image, the positive denoising queries and the objects they were made from (group by group)."""
    indices = []
    for positive, target in zip(meta.positive_idx, targets, strict=True):
        num_gt = len(target["labels"])
        object_idx = torch.arange(num_gt, dtype=torch.int64).tile(meta.num_groups if num_gt else 0)
        assert len(positive) == len(object_idx), f"{len(positive)} denoising positives for {len(object_idx)} objects"
        indices.append((positive.cpu(), object_idx))
    return indices
