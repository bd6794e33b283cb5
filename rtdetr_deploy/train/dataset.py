"""The training and evaluation dataset over a validated COCO set, with per-sample reproducible augmentation.

Each sample's augmentation is drawn from its own seed ``(seed, epoch, index)``, never from the global
generator: the same epoch yields the same images whatever the number of loader workers or processes, and a
resumed run sees exactly what the interrupted one would have.
"""

from __future__ import annotations

import cv2
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from .coco import CocoSet
from .transforms import build_transforms

__all__ = ["CocoDetection", "collate"]

Target = dict[str, torch.Tensor]


class CocoDetection(Dataset):
    """Images and targets of a ``CocoSet``.

    Args:
        coco: the validated annotations.
        size: ``(height, width)`` the images are resized to.
        train: augment (strong ops on until ``set_epoch(..., strong=False)``); otherwise only resize.
        seed: base seed of the augmentation.

    A sample is ``(image, target)``: image float32 ``[3, H, W]`` RGB in [0, 1]; target ``labels [n]`` int64,
    ``boxes [n, 4]`` cxcywh in [0, 1], ``image_id`` int64 scalar and ``orig_size`` int64 ``[2]``
    (width, height) of the file.
    """

    def __init__(self, coco: CocoSet, *, size: tuple[int, int], train: bool, seed: int = 0) -> None:
        self.coco = coco
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
        image = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)
        height, width = image.shape[-2:]
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


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A distinct 63-bit seed per ``(seed, epoch, index)``."""
    return ((seed * 1_000_003 + epoch) * 998_244_353 + index) % (2**63 - 1)


def collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    """Stack images of equal size into ``[B, 3, H, W]``; targets stay a list."""
    images, targets = zip(*batch, strict=True)
    return torch.stack(images), list(targets)
