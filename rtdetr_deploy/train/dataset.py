"""The training and evaluation dataset over a validated COCO set, with per-sample reproducible augmentation.

Each sample's augmentation is drawn from its own seed ``(seed, epoch, index)``, never from the global
generator: the same epoch yields the same images whatever the number of loader workers or processes, and a
resumed run sees exactly what the interrupted one would have.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.ops import box_convert

from ..coco import CocoSet
from ..metadata import Preprocessing
from ..runtime.preprocess import preprocess
from .transforms import build_transforms

__all__ = ["CocoDetection", "collate"]

Target = dict[str, torch.Tensor]


class CocoDetection(Dataset):
    """Images and targets of a ``CocoSet``.

    Args:
        coco: the validated annotations.
        size: ``(height, width)`` the images are resized to.
        train: augment (strong ops on until ``set_epoch(..., strong=False)``); otherwise the runtime's
            preprocessing, and targets without boxes (evaluation reads the annotation file).
        seed: base seed of the augmentation.

    A sample is ``(image, target)``: image float32 ``[3, H, W]`` RGB in [0, 1]; target ``labels [n]`` int64,
    ``boxes [n, 4]`` cxcywh in [0, 1], ``image_id`` int64 scalar and ``orig_size`` int64 ``[2]``
    (width, height) of the file.
    """

    def __init__(self, coco: CocoSet, *, size: tuple[int, int], train: bool, seed: int = 0) -> None:
        self.coco = coco
        self.size = size
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.strong = train
        self._strong = build_transforms(size, train=train, strong=True)
        self._plain = build_transforms(size, train=train, strong=False)

    def set_epoch(self, epoch: int, *, strong: bool) -> None:
        """Select the epoch's augmentation seeds and whether the strong ops run (dynamic augmentation)."""
        self.epoch = epoch
        self.strong = strong

    def __len__(self) -> int:
        return len(self.coco.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        record = self.coco.images[index]
        # OpenCV decodes grayscale, RGBA and 16-bit files to 8-bit BGR, as the runtime does.
        bgr = cv2.imread(str(record.path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot decode image {record.path}")
        height, width = bgr.shape[:2]
        if not self.train:
            # Evaluation sees what deployment sees: the runtime's own preprocessing (OpenCV resize), so the AP
            # the trainer reports is the AP of the exported model.
            pixels, _ = preprocess([bgr], input_size=self.size, preprocessing=Preprocessing())
            labels, boxes_cxcywh = _clean_targets(record.boxes_xyxy, record.labels, width=width, height=height)
            return torch.from_numpy(pixels[0]), {
                "labels": labels,
                "boxes": boxes_cxcywh,
                "image_id": torch.tensor(record.id, dtype=torch.int64),
                "orig_size": torch.tensor([width, height], dtype=torch.int64),
            }
        image = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)
        target = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.from_numpy(record.boxes_xyxy), format="XYXY", canvas_size=(height, width)
            ),
            "labels": torch.from_numpy(record.labels),
        }
        transform = self._strong if self.strong else self._plain
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, self.epoch, index))
            image, target = transform(tv_tensors.Image(image), target)
        return image.as_subclass(torch.Tensor), {
            "labels": target["labels"],
            "boxes": target["boxes"],
            "image_id": torch.tensor(record.id, dtype=torch.int64),
            "orig_size": torch.tensor([width, height], dtype=torch.int64),
        }


def _clean_targets(
    boxes_xyxy: np.ndarray, labels: np.ndarray, *, width: int, height: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the training pipeline's clean-up makes of a record's boxes, without augmentation: clamped into the
    image, those under 1 px wide or high dropped, then ``[n, 4]`` cxcywh normalised to [0, 1]."""
    boxes = torch.from_numpy(boxes_xyxy).clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    return torch.from_numpy(labels)[keep], box_convert(boxes[keep], "xyxy", "cxcywh") / scale


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A distinct 63-bit seed per ``(seed, epoch, index)``."""
    return ((seed * 1_000_003 + epoch) * 998_244_353 + index) % (2**63 - 1)


def collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    """Stack images of equal size into ``[B, 3, H, W]``; targets stay a list."""
    images, targets = zip(*batch, strict=True)
    return torch.stack(images), list(targets)
