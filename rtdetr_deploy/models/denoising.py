"""Contrastive denoising groups (training only).

Ground-truth boxes are copied into groups of noised positive queries (small jitter, some labels flipped)
and negative queries (jitter between one and two half-sizes); the decoder must reconstruct the positives
and reject the negatives. An attention mask keeps groups from seeing each other and the matching queries
from seeing any of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.ops import box_convert

from .layers import inverse_sigmoid

__all__ = ["DenoisingGroups", "contrastive_denoising_groups"]


@dataclass
class DenoisingGroups:
    """Denoising queries prepended to the matching queries.

    Attributes:
        content: ``[B, N_dn, D]`` label embeddings of the noised labels.
        boxes_unact: ``[B, N_dn, 4]`` inverse-sigmoid of the noised cxcywh boxes.
        attn_mask: ``[N_dn + Q, N_dn + Q]`` bool, True where attention is blocked.
        positive_idx: per image, the indices (within ``N_dn``) of its positive queries, group by group.
        num_groups: number of denoising groups.
        num_split: ``[N_dn, Q]``, to split the decoder outputs back.
    """

    content: torch.Tensor
    boxes_unact: torch.Tensor
    attn_mask: torch.Tensor
    positive_idx: list[torch.Tensor]
    num_groups: int
    num_split: list[int]


def contrastive_denoising_groups(
    targets: list[dict[str, torch.Tensor]],
    *,
    num_classes: int,
    num_queries: int,
    class_embed: nn.Embedding,
    num_denoising: int = 100,
    label_noise_ratio: float = 0.5,
    box_noise_scale: float = 1.0,
) -> DenoisingGroups | None:
    """Build the denoising queries for a batch; ``None`` when there is nothing to denoise.

    Args:
        targets: per image, ``labels`` ``[n]`` int64 and ``boxes`` ``[n, 4]`` cxcywh in [0, 1].
        class_embed: embedding of ``num_classes + 1`` entries; the last one pads images with fewer objects.
    """
    num_gts = [len(t["labels"]) for t in targets]
    max_gt = max(num_gts, default=0)
    if num_denoising <= 0 or max_gt == 0:
        return None
    device = targets[0]["labels"].device
    num_groups = max(num_denoising // max_gt, 1)
    batch = len(targets)

    labels = torch.full([batch, max_gt], num_classes, dtype=torch.int64, device=device)
    boxes = torch.zeros([batch, max_gt, 4], device=device)
    is_real = torch.zeros([batch, max_gt], dtype=torch.bool, device=device)
    for i, (target, n) in enumerate(zip(targets, num_gts, strict=False)):
        labels[i, :n] = target["labels"]
        boxes[i, :n] = target["boxes"]
        is_real[i, :n] = True

    # Each group holds max_gt positive then max_gt negative copies.
    labels = labels.tile([1, 2 * num_groups])
    boxes = boxes.tile([1, 2 * num_groups, 1])
    is_real = is_real.tile([1, 2 * num_groups])
    is_negative = torch.zeros([batch, 2 * max_gt, 1], device=device)
    is_negative[:, max_gt:] = 1
    is_negative = is_negative.tile([1, num_groups, 1])
    positive = (1 - is_negative.squeeze(-1)) * is_real
    positive_idx = list(torch.nonzero(positive)[:, 1].split([n * num_groups for n in num_gts]))

    if label_noise_ratio > 0:
        flip = torch.rand(labels.shape, device=device) < label_noise_ratio * 0.5
        random_labels = torch.randint_like(labels, 0, num_classes)
        labels = torch.where(flip & is_real, random_labels, labels)

    if box_noise_scale > 0:
        boxes_xyxy = box_convert(boxes, "cxcywh", "xyxy")
        half_size = boxes[..., 2:].tile([1, 1, 2]) * 0.5 * box_noise_scale
        sign = torch.randint_like(boxes, 0, 2) * 2.0 - 1.0
        magnitude = torch.rand_like(boxes)
        magnitude = (magnitude + 1.0) * is_negative + magnitude * (1 - is_negative)
        boxes_xyxy = (boxes_xyxy + sign * magnitude * half_size).clip(min=0.0, max=1.0)
        boxes = box_convert(boxes_xyxy, "xyxy", "cxcywh")

    num_dn = 2 * max_gt * num_groups
    size = num_dn + num_queries
    attn_mask = torch.zeros([size, size], dtype=torch.bool, device=device)
    attn_mask[num_dn:, :num_dn] = True
    group_size = 2 * max_gt
    for g in range(num_groups):
        rows = slice(g * group_size, (g + 1) * group_size)
        attn_mask[rows, : g * group_size] = True
        attn_mask[rows, (g + 1) * group_size : num_dn] = True

    return DenoisingGroups(
        content=class_embed(labels),
        boxes_unact=inverse_sigmoid(boxes),
        attn_mask=attn_mask,
        positive_idx=positive_idx,
        num_groups=num_groups,
        num_split=[num_dn, num_queries],
    )
