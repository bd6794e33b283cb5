"""NMS-free post-processing in numpy: top-k for graphs without it, then the score/class filter.

RT-DETRv2 is matched one-to-one in training, so its detections are simply the ``k`` best (query, class) pairs:
no NMS. Exported graphs usually contain this step (outputs ``labels``/``boxes``/``scores``); graphs that stop
at ``pred_logits``/``pred_boxes`` get the same computation here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import BackendError
from .detections import Detections

__all__ = ["topk_detections", "select_detections"]


def topk_detections(
    logits: np.ndarray, boxes_cxcywh: np.ndarray, orig_sizes_wh: np.ndarray, *, topk: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``topk`` best (query, class) pairs per image, as the exported graph computes them.

    Args:
        logits: ``[B, Q, C]`` class logits.
        boxes_cxcywh: ``[B, Q, 4]`` normalised to [0, 1].
        orig_sizes_wh: ``[B, 2]`` original ``(width, height)``.
        topk: detections per image (capped at ``Q * C``).

    Returns:
        labels ``[B, K]`` int64, boxes ``[B, K, 4]`` float32 xyxy in original pixels, scores ``[B, K]`` float32
        sigmoid probabilities in descending order.
    """
    batch, queries, num_classes = logits.shape
    flat = logits.reshape(batch, queries * num_classes).astype(np.float32, copy=False)
    k = min(int(topk), flat.shape[1])
    # Sigmoid is monotonic: select on the logits and apply it to the k winners only.
    index = np.argpartition(-flat, k - 1, axis=1)[:, :k] if k < flat.shape[1] else np.tile(np.arange(k), (batch, 1))
    top_logits = np.take_along_axis(flat, index, axis=1)
    order = np.argsort(-top_logits, axis=1, kind="stable")
    index = np.take_along_axis(index, order, axis=1)
    scores = 1.0 / (1.0 + np.exp(-np.take_along_axis(flat, index, axis=1).astype(np.float64)))
    labels = (index % num_classes).astype(np.int64)
    query = index // num_classes
    cx, cy, w, h = np.moveaxis(boxes_cxcywh.astype(np.float32, copy=False), -1, 0)
    boxes_xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    boxes_xyxy = boxes_xyxy * np.tile(orig_sizes_wh.astype(np.float32), 2)[:, None, :]
    boxes_xyxy = np.take_along_axis(boxes_xyxy, query[..., None], axis=1)
    return labels, boxes_xyxy.astype(np.float32), scores.astype(np.float32)


def select_detections(
    labels: np.ndarray,
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    *,
    conf: float,
    class_names: Sequence[str],
    category_ids: Sequence[int],
    keep_classes: np.ndarray | None = None,
) -> list[Detections]:
    """Threshold the top-k of each image and attach class names and original category ids.

    Args:
        labels: ``[B, K]`` contiguous class indices.
        boxes_xyxy: ``[B, K, 4]`` pixels.
        scores: ``[B, K]`` in [0, 1].
        conf: keep scores ``>= conf``.
        class_names: one name per contiguous class.
        category_ids: original category id per contiguous class.
        keep_classes: contiguous class indices to keep; ``None`` keeps all.

    Returns:
        One ``Detections`` per image, in descending score order.

    Raises:
        BackendError: the model returned a class index its metadata does not know.
    """
    num_classes = len(class_names)
    names = np.asarray(class_names, dtype=object)
    categories = np.asarray(category_ids, dtype=np.int64)
    results = []
    for image_labels, image_boxes, image_scores in zip(labels, boxes_xyxy, scores, strict=True):
        image_labels = image_labels.astype(np.int64, copy=False)
        keep = image_scores >= conf
        if keep_classes is not None:
            keep &= np.isin(image_labels, keep_classes)
        kept_labels = image_labels[keep]
        if kept_labels.size and (kept_labels.min() < 0 or kept_labels.max() >= num_classes):
            bad = int(kept_labels.max() if kept_labels.max() >= num_classes else kept_labels.min())
            raise BackendError(f"model returned class index {bad}, but its metadata lists {num_classes} classes")
        kept_scores = image_scores[keep].astype(np.float32, copy=False)
        order = np.argsort(-kept_scores, kind="stable")
        kept_labels = kept_labels[order]
        results.append(
            Detections(
                boxes_xyxy=image_boxes[keep][order].astype(np.float32, copy=False),
                scores=kept_scores[order],
                class_ids=kept_labels,
                class_names=tuple(names[kept_labels].tolist()),
                category_ids=categories[kept_labels],
            )
        )
    return results
