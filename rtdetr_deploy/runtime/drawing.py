"""Annotate an image with its detections (boxes and ``name score`` labels), one colour per class."""

from __future__ import annotations

import cv2
import numpy as np

from .detections import Detections

__all__ = ["draw_detections", "class_color"]

# A fixed 20-colour palette (BGR) so a class keeps its colour across frames and runs.
_PALETTE = np.array(
    [
        (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
        (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0),
        (168, 153, 44), (255, 194, 0), (147, 69, 52), (255, 115, 100), (236, 24, 0),
        (255, 56, 132), (133, 0, 82), (255, 56, 203), (200, 149, 255), (199, 55, 255),
    ],
    dtype=np.uint8,
)  # fmt: skip


def class_color(class_id: int) -> tuple[int, int, int]:
    """BGR colour of a contiguous class index."""
    b, g, r = _PALETTE[int(class_id) % len(_PALETTE)]
    return int(b), int(g), int(r)


def draw_detections(image: np.ndarray, detections: Detections) -> np.ndarray:
    """A copy of ``image`` with every detection drawn.

    Args:
        image: ``[H, W, 3]`` BGR uint8.
        detections: boxes in this image's pixels.

    Returns:
        ``[H, W, 3]`` BGR uint8, same size as ``image``.
    """
    canvas = image.copy()
    height, width = canvas.shape[:2]
    thickness = max(1, round(min(height, width) / 320))
    font_scale = max(0.4, min(height, width) / 1000)
    boxes = np.round(detections.boxes_xyxy).astype(np.int64)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height - 1)
    # Lowest scores first so the strongest boxes end up on top.
    for i in reversed(range(len(detections))):
        x1, y1, x2, y2 = (int(v) for v in boxes[i])
        color = class_color(int(detections.class_ids[i]))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness, lineType=cv2.LINE_AA)
        label = f"{detections.class_names[i]} {float(detections.scores[i]):.2f}"
        if detections.track_ids is not None:
            label = f"#{int(detections.track_ids[i])} {label}"
        (tw, th), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(1, thickness - 1))
        top = y1 - th - baseline - 2 if y1 - th - baseline - 2 >= 0 else y1
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 2, top + th + baseline + 2), color, -1)
        cv2.putText(
            canvas,
            label,
            (x1 + 1, top + th + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (255, 255, 255),
            max(1, thickness - 1),
            lineType=cv2.LINE_AA,
        )
    return canvas
