"""COCO AP of one model with and without sliced inference, on the same images (``rtdetr-eval --slice``).

Both runs use the runtime's ``Detector`` with no score threshold: whole-image inference resizes each image to the
model's input; sliced inference runs ``runtime.slicing.sliced_detect`` (tiles batched, merged across tile borders
only). The default data is the large-image small-object split (``data.small_objects``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..coco import coco_box_metrics
from ..runtime.detector import Detector
from ..runtime.slicing import SliceConfig, sliced_detect
from ..runtime.sources import read_image
from .evaluate import EvalData, check_classes

__all__ = ["SlicedScore", "evaluate_sliced", "sliced_table"]


@dataclass(frozen=True)
class SlicedScore:
    """AP with and without slicing.

    Attributes:
        model: the file evaluated. slice_hw: tile ``(height, width)``. overlap: tile overlap share.
        whole: COCO metrics of whole-image inference (``AP``, ``AP50``, ``APs``, ...).
        sliced: COCO metrics of sliced inference.
    """

    model: Path
    slice_hw: tuple[int, int]
    overlap: float
    whole: dict[str, float]
    sliced: dict[str, float]


def evaluate_sliced(
    model: str | os.PathLike[str],
    data: EvalData,
    config: SliceConfig,
    *,
    backend: str = "auto",
    device: str | None = None,
) -> SlicedScore:
    """COCO metrics of ``model`` on ``data`` with whole-image and with sliced inference.

    Raises:
        FileNotFoundError, ValueError (classes that do not match the data, a slice larger than an image).
    """
    path = Path(model)
    whole, sliced = [], []
    with Detector(path, backend=backend, device=device, conf=0.0) as detector:
        check_classes(detector.metadata, data, path)
        for record in data.coco.images:
            image, reason = read_image(record.path)
            if image is None:
                raise ValueError(f"cannot read image {record.path}: {reason}")
            whole += detector(image).to_coco(record.id)
            sliced += sliced_detect(detector, image, config).to_coco(record.id)
    return SlicedScore(
        model=path,
        slice_hw=config.slice_hw,
        overlap=config.overlap,
        whole=coco_box_metrics(data.coco.coco, whole)[0],
        sliced=coco_box_metrics(data.coco.coco, sliced)[0],
    )


def sliced_table(score: SlicedScore) -> str:
    """A markdown table: AP, AP50, AP_small, AP_medium without and with slicing, and the gain."""
    keys = ("AP", "AP50", "APs", "APm")
    h, w = score.slice_hw
    lines = [
        f"| {score.model.name} | " + " | ".join(keys) + " |",
        "|---|" + "---:|" * len(keys),
        "| whole image | " + " | ".join(f"{score.whole[k]:.3f}" for k in keys) + " |",
        f"| sliced {h}x{w}, overlap {score.overlap:g} | " + " | ".join(f"{score.sliced[k]:.3f}" for k in keys) + " |",
        "| gain | " + " | ".join(f"{score.sliced[k] - score.whole[k]:+.3f}" for k in keys) + " |",
    ]
    return "\n".join(lines) + "\n"
