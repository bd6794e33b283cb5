"""Data augmentation with ``torchvision.transforms.v2`` and ``tv_tensors``: the official RT-DETRv2 pipeline.

Training: photometric distortion, zoom-out and IoU crop (the *strong* ops, switched off from ``stop_epoch``:
RT-DETRv2's dynamic augmentation), horizontal flip, resize, sanitize. Every pipeline ends with boxes as
plain ``[n, 4]`` cxcywh tensors normalised by the image size, which is what the model and the loss take.
Multi-scale training resizes whole batches (``resize_batch``), as the official collate function does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["ToNormalizedCxcywh", "build_transforms", "resize_batch"]


class ToNormalizedCxcywh(v2.Transform):
    """Boxes to a plain ``[n, 4]`` float tensor, cxcywh divided by the canvas ``(w, h, w, h)``, in [0, 1]."""

    _transformed_types = (tv_tensors.BoundingBoxes,)

    def transform(self, inpt: Any, params: dict[str, Any]) -> torch.Tensor:
        """``tv_tensors.BoundingBoxes`` ``[n, 4]`` in pixels to a plain tensor ``[n, 4]`` cxcywh in [0, 1]."""
        boxes = v2.functional.convert_bounding_box_format(inpt, new_format=tv_tensors.BoundingBoxFormat.CXCYWH)
        height, width = inpt.canvas_size
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        return boxes.as_subclass(torch.Tensor).float() / scale


def build_transforms(size: tuple[int, int], *, train: bool, strong: bool = True) -> v2.Compose:
    """Transforms of ``(image, target)`` pairs.

    Args:
        size: ``(height, width)`` output size (plain resize, no letterbox, as at inference).
        train: add augmentation; without it only resize and conversion (evaluation).
        strong: with ``train``, add the strong ops (official probabilities: photometric 0.5, zoom-out 0.5,
            IoU crop 0.8).

    The input image is a ``tv_tensors.Image`` uint8 ``[3, H, W]``; the target a dict with ``boxes`` as
    ``tv_tensors.BoundingBoxes`` (any format) and ``labels`` ``[n]``. The output image is float32 in [0, 1].
    """
    # Load-time cleanup of the official pipeline: clamp into the image, drop boxes left without area.
    ops: list[v2.Transform] = [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1)]
    if train and strong:
        ops += [
            v2.RandomPhotometricDistort(p=0.5),
            v2.RandomZoomOut(fill=0),
            v2.RandomApply([v2.RandomIoUCrop()], p=0.8),
            v2.SanitizeBoundingBoxes(min_size=1),
        ]
    if train:
        ops.append(v2.RandomHorizontalFlip())
    ops.append(v2.Resize(size))
    if train:
        ops.append(v2.SanitizeBoundingBoxes(min_size=1))
    ops += [v2.ToDtype(torch.float32, scale=True), ToNormalizedCxcywh()]
    return v2.Compose(ops)


def resize_batch(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a ``[B, 3, H, W]`` batch to ``size`` ``(height, width)``; normalised boxes need no change."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)
