"""NMS-free post-processing (sigmoid + top-k) and the module that export and the torch backend run.

RT-DETRv2 matches queries one-to-one with objects in training, so a query never duplicates another and the
detections are simply the ``k`` best (query, class) pairs.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import box_convert

__all__ = ["PostProcessor", "DeployModel", "postprocess"]


def postprocess(
    logits: torch.Tensor, boxes_cxcywh: torch.Tensor, orig_sizes_wh: torch.Tensor, *, topk: int = 300
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k detections over all (query, class) pairs.

    Args:
        logits: ``[B, Q, C]`` class logits.
        boxes_cxcywh: ``[B, Q, 4]`` normalised to [0, 1].
        orig_sizes_wh: ``[B, 2]`` original image ``(width, height)``, any numeric dtype.
        topk: detections kept per image (at most ``Q * C``).

    Returns:
        labels ``[B, K]`` int64 (contiguous class indices), boxes ``[B, K, 4]`` xyxy in original pixels,
        scores ``[B, K]`` sigmoid probabilities in descending order.
    """
    num_classes = logits.shape[-1]
    boxes_xyxy = box_convert(boxes_cxcywh, in_fmt="cxcywh", out_fmt="xyxy")
    boxes_xyxy = boxes_xyxy * orig_sizes_wh.to(boxes_xyxy.dtype).repeat(1, 2).unsqueeze(1)
    scores, index = torch.topk(torch.sigmoid(logits).flatten(1), min(topk, logits.shape[1] * num_classes), dim=-1)
    labels = index % num_classes
    query = index // num_classes
    boxes_xyxy = boxes_xyxy.gather(dim=1, index=query.unsqueeze(-1).repeat(1, 1, 4))
    return labels, boxes_xyxy, scores


class PostProcessor(nn.Module):
    """Module form of ``postprocess`` with a fixed ``topk``."""

    def __init__(self, *, topk: int = 300) -> None:
        super().__init__()
        if topk < 1:
            raise ValueError(f"topk must be positive, got {topk}")
        self.topk = topk

    def forward(
        self, outputs: dict[str, torch.Tensor], orig_sizes_wh: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return postprocess(outputs["pred_logits"], outputs["pred_boxes"], orig_sizes_wh, topk=self.topk)


class DeployModel(nn.Module):
    """Detector plus post-processing with the official deploy I/O.

    ``forward(images [B, 3, H, W] float RGB in [0, 1], orig_target_sizes [B, 2] (width, height))`` returns
    ``labels [B, K] int64, boxes [B, K, 4] xyxy pixels, scores [B, K] float32``.
    """

    def __init__(self, model: nn.Module, postprocessor: PostProcessor) -> None:
        super().__init__()
        self.model = model
        self.postprocessor = postprocessor

    def forward(
        self, images: torch.Tensor, orig_target_sizes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.postprocessor(self.model(images), orig_target_sizes)
