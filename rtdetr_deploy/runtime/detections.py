"""``Detections``: the result for one image, as plain numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Detections"]


@dataclass(frozen=True, eq=False)
class Detections:
    """Detections of one image, sorted by descending score.

    Attributes:
        boxes_xyxy: ``[N, 4]`` float32 ``x1, y1, x2, y2`` in pixels of the original image (not clipped to it,
            exactly as the model predicts them).
        scores: ``[N]`` float32 sigmoid scores in [0, 1], descending.
        class_ids: ``[N]`` int64 contiguous class indices in ``[0, num_classes)``.
        class_names: ``N`` class names, one per detection.
        category_ids: ``[N]`` int64 original dataset category ids (COCO: 1..90 with gaps).
        track_ids: ``[N]`` int64 track identities (positive) when a tracker assigned them, else ``None``.
    """

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: tuple[str, ...]
    category_ids: np.ndarray
    track_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.scores)
        shapes_ok = self.boxes_xyxy.shape == (n, 4) and self.class_ids.shape == (n,) and self.category_ids.shape == (n,)
        shapes_ok = shapes_ok and (self.track_ids is None or self.track_ids.shape == (n,))
        assert shapes_ok and len(self.class_names) == n, "Detections arrays disagree in length"

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        """No detections."""
        return cls(
            boxes_xyxy=np.zeros((0, 4), np.float32),
            scores=np.zeros(0, np.float32),
            class_ids=np.zeros(0, np.int64),
            class_names=(),
            category_ids=np.zeros(0, np.int64),
        )

    def to_coco(self, image_id: int) -> list[dict[str, Any]]:
        """COCO results entries: ``image_id``, original ``category_id``, ``bbox`` ``[x, y, w, h]`` pixels, ``score``
        (and ``track_id`` when tracked)."""
        x1, y1, x2, y2 = (self.boxes_xyxy[:, i].astype(np.float64) for i in range(4))
        entries = [
            {
                "image_id": int(image_id),
                "category_id": int(cat),
                "bbox": [round(float(a), 3), round(float(b), 3), round(float(w), 3), round(float(h), 3)],
                "score": round(float(s), 5),
            }
            for a, b, w, h, s, cat in zip(x1, y1, x2 - x1, y2 - y1, self.scores, self.category_ids, strict=True)
        ]
        if self.track_ids is not None:
            for entry, track_id in zip(entries, self.track_ids, strict=True):
                entry["track_id"] = int(track_id)
        return entries
