"""Agreement between two sets of detections: how many of a reference's top detections another model finds again.

Used to verify exports (ONNX Runtime against PyTorch, FP16 and INT8 against FP32, discrete against bilinear
sampling) and by the benchmarks. Numpy only, so that torch-free tools can use it.

Agreement only means something where the ranking is decided. The other model returns its own top ``K``; a
reference detection can drop out of it without any error when its score lies within the two models' error of
the reference's ``K``-th score, where the ranking is a tie. With ``margin`` (the largest score difference the
comparison allows, e.g. 1e-4 between two FP32 runtimes, a few 1e-2 for FP16), only *decided* detections count:
those scoring more than ``2 * margin`` above the reference's ``K``-th score. Untrained weights score everything
alike and leave nothing decided: the result then says so instead of measuring ties.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .contract import OUTPUT_NAMES

__all__ = ["box_iou_xyxy", "compare_detections"]


def box_iou_xyxy(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[A, B]`` of xyxy boxes ``[A, 4]`` and ``[B, 4]`` (float64)."""
    a, b = boxes_a.astype(np.float64), boxes_b.astype(np.float64)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _as_triplet(outputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    if isinstance(outputs, Mapping):
        return tuple(np.asarray(outputs[key]) for key in OUTPUT_NAMES)
    if len(outputs) != 3:
        raise ValueError(f"expected (labels, boxes, scores), got {len(outputs)} arrays")
    return tuple(np.asarray(a) for a in outputs)


def compare_detections(
    ref_outputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    test_outputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    *,
    iou: float = 0.9,
    topn: int = 100,
    margin: float | None = None,
) -> dict[str, object]:
    """Agreement of a model's detections with a reference's, image by image (numpy only).

    Each image's ``topn`` best reference detections are matched greedily, best score first, to an unused test
    detection (any rank) of the same label with IoU >= ``iou`` and the best IoU. With ``margin``, only decided
    reference detections (see the module docstring) are checked.

    Args:
        ref_outputs: reference ``labels [N, K]``, ``boxes [N, K, 4]`` xyxy pixels, ``scores [N, K]``, as a
            mapping with those keys or a sequence in that order (what ONNX Runtime returns).
        test_outputs: the same for the model under test (its K may differ).
        iou: IoU a match needs.
        topn: reference detections checked per image.
        margin: the score difference the two models may have; ``None`` checks every top detection.

    Returns:
        ``matched`` (fraction over all images; ``None`` when nothing was decided), ``min_image_matched``,
        ``per_image_matched``, ``compared`` (reference detections checked), ``candidates`` (top detections
        before the decided filter),
        ``max_score_delta``/``mean_score_delta`` and ``max_box_delta_px`` over the matches, ``mean_iou`` of the
        matches, ``max_sorted_score_delta`` (top-``topn`` scores compared rank by rank).
    """
    ref_labels, ref_boxes, ref_scores = _as_triplet(ref_outputs)
    test_labels, test_boxes, test_scores = _as_triplet(test_outputs)
    if ref_labels.shape[0] != test_labels.shape[0]:
        raise ValueError(f"batch sizes differ: reference {ref_labels.shape[0]}, test {test_labels.shape[0]}")
    per_image, score_deltas, box_deltas, ious = [], [], [], []
    compared = matched_total = candidates = 0
    for i in range(ref_labels.shape[0]):
        order = np.argsort(-ref_scores[i], kind="stable")[:topn]
        candidates += len(order)
        if margin is not None:
            cutoff = float(ref_scores[i].min())
            order = order[ref_scores[i][order] > cutoff + 2 * margin]
        overlaps = box_iou_xyxy(ref_boxes[i][order], test_boxes[i])
        overlaps[ref_labels[i][order][:, None] != test_labels[i][None, :]] = -1.0
        used = np.zeros(test_labels.shape[1], dtype=bool)
        matched = 0
        for row, ref_index in enumerate(order):
            options = np.where(used, -1.0, overlaps[row])
            j = int(options.argmax()) if options.size else -1
            if j < 0 or options[j] < iou:
                continue
            used[j] = True
            matched += 1
            score_deltas.append(abs(float(ref_scores[i][ref_index]) - float(test_scores[i][j])))
            box_deltas.append(float(np.abs(ref_boxes[i][ref_index] - test_boxes[i][j]).max()))
            ious.append(float(options[j]))
        if len(order):
            per_image.append(matched / len(order))
        compared += len(order)
        matched_total += matched
    count = min(topn, ref_scores.shape[1], test_scores.shape[1])
    sorted_delta = np.abs(-np.sort(-ref_scores, axis=1)[:, :count] - -np.sort(-test_scores, axis=1)[:, :count])
    return {
        "matched": matched_total / compared if compared else None,
        "min_image_matched": min(per_image, default=1.0),
        "per_image_matched": per_image,
        "compared": compared,
        "candidates": candidates,
        "max_score_delta": max(score_deltas, default=0.0),
        "mean_score_delta": float(np.mean(score_deltas)) if score_deltas else 0.0,
        "max_box_delta_px": max(box_deltas, default=0.0),
        "mean_iou": float(np.mean(ious)) if ious else 0.0,
        "max_sorted_score_delta": float(sorted_delta.max()) if sorted_delta.size else 0.0,
    }
