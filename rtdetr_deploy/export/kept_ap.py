"""Kept AP: how much of a reference model's detection quality another model keeps, without labelled data.

The reference's confident detections (score >= ``confidence``) become pseudo ground truth, and the other model's
detections are scored against them with the COCO protocol (AP over IoU 0.50:0.95, 100 detections per image).
The reference scores 1.0 against itself; a variant that finds the same objects with a few pixels of box jitter
loses a little (at the strict IoU thresholds only), one that misses objects, invents others or misplaces boxes
loses in proportion. Unlike a count of detections matched at one IoU, the measure is smooth: jitter that costs
no accuracy costs little here, and a real loss costs much (see ``docs/precision-acceptance.md`` for the
calibration on variants whose labelled AP loss is known).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..agreement import box_iou_xyxy
from ..coco import coco_box_map
from .acceptance import KeptAP

__all__ = ["DUPLICATE_IOU", "NOISE_LEVELS", "duplicate_share", "kept_ap", "perturbed", "pseudo_ground_truth"]

MAX_DETECTIONS = 100
# Two confident detections overlapping this much (of any class) are duplicates: a trained NMS-free detector (one
# query per object, one class per query) makes next to none, untrained weights make them everywhere.
DUPLICATE_IOU = 0.7
# Input noise of the noise floor: uniform integer grey levels in [-NOISE_LEVELS, NOISE_LEVELS] (invisible; less
# than what JPEG compression changes).
NOISE_LEVELS = 2


def perturbed(images_bgr: Sequence[np.ndarray], *, levels: int = NOISE_LEVELS, seed: int = 0) -> list[np.ndarray]:
    """The images with uniform integer noise in ``[-levels, levels]`` added to every pixel (clipped to uint8), the
    same noise for the same ``seed``.

    The *noise floor* of a reference model is the kept AP of its own detections on these images: how reproducible
    its confident detections are under a change that costs no accuracy. A model whose detections sit near its
    decision boundaries (e.g. weights trained with bilinear sampling, run with discrete sampling) has a low floor,
    and any lossy variant of it moves as much.
    """
    rng = np.random.default_rng(seed)
    return [
        np.clip(image.astype(np.int16) + rng.integers(-levels, levels + 1, image.shape), 0, 255).astype(np.uint8)
        for image in images_bgr
    ]


def _triplet(outputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(outputs, Mapping):
        outputs = [outputs[key] for key in ("labels", "boxes", "scores")]
    labels, boxes, scores = (np.asarray(a) for a in outputs)
    return labels, boxes, scores


def _xywh(box_xyxy: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return [x1, y1, max(x2 - x1, 0.0), max(y2 - y1, 0.0)]


def pseudo_ground_truth(
    reference: Mapping[str, np.ndarray] | Sequence[np.ndarray], *, confidence: float
) -> dict[str, list[dict]]:
    """A COCO annotation dict of the reference's detections scoring at least ``confidence``.

    Args:
        reference: ``labels [N, K]`` int, ``boxes [N, K, 4]`` xyxy pixels, ``scores [N, K]`` in [0, 1] (a mapping
            with those keys or a sequence in that order).
        confidence: lowest score of a pseudo object.

    Returns:
        ``images`` (ids 0..N-1), ``annotations`` (``bbox`` x, y, w, h pixels; ``category_id`` = label + 1) and
        ``categories`` (every label of the reference, + 1).
    """
    labels, boxes, scores = _triplet(reference)
    annotations = []
    for image in range(labels.shape[0]):
        for k in np.flatnonzero(scores[image] >= confidence):
            bbox = _xywh(boxes[image, k])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image,
                    "category_id": int(labels[image, k]) + 1,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
    categories = sorted({int(label) + 1 for label in np.unique(labels)})
    return {
        "images": [{"id": image} for image in range(labels.shape[0])],
        "annotations": annotations,
        "categories": [{"id": c, "name": str(c - 1)} for c in categories],
    }


def duplicate_share(
    reference: Mapping[str, np.ndarray] | Sequence[np.ndarray], *, confidence: float, iou: float = DUPLICATE_IOU
) -> float:
    """Share of the reference's confident detections that overlap a better-scoring confident detection (of any
    class) in the same image with IoU >= ``iou`` (0 when there is none).

    A reference full of duplicates is no pseudo ground truth (each object would count several times, and a
    box moved by a pixel swaps its matches): its kept AP says nothing about the variant.
    """
    labels, boxes, scores = _triplet(reference)
    duplicates = total = 0
    for image in range(labels.shape[0]):
        keep = np.flatnonzero(scores[image] >= confidence)
        keep = keep[np.argsort(-scores[image][keep], kind="stable")]
        overlaps = box_iou_xyxy(boxes[image][keep], boxes[image][keep])
        earlier = np.tril(np.ones(overlaps.shape, dtype=bool), k=-1)
        duplicates += int(((overlaps >= iou) & earlier).any(axis=1).sum())
        total += len(keep)
    return duplicates / total if total else 0.0


def kept_ap(
    reference: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    candidate: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    *,
    confidence: float = 0.5,
) -> KeptAP:
    """COCO AP of ``candidate``'s detections against ``reference``'s confident detections (pseudo ground truth).

    Args:
        reference: the reference model's ``labels [N, K]``, ``boxes [N, K, 4]`` xyxy pixels, ``scores [N, K]``.
        candidate: the same for the model under test, on the same images (its K may differ); its 100 best
            detections per image are scored.
        confidence: lowest reference score of a pseudo object.

    Returns:
        ``confidence``, ``pseudo_objects`` (their count), ``ap`` (IoU 0.50:0.95) and ``ap50``, each in [0, 1]
        (``None`` when the reference has no confident detection).
    """
    ground_truth = pseudo_ground_truth(reference, confidence=confidence)
    count = len(ground_truth["annotations"])
    if not count:
        return KeptAP(confidence=confidence, pseudo_objects=0, ap=None, ap50=None)
    known = {c["id"] for c in ground_truth["categories"]}
    labels, boxes, scores = _triplet(candidate)
    results = []
    for image in range(labels.shape[0]):
        for k in np.argsort(-scores[image], kind="stable")[:MAX_DETECTIONS]:
            category = int(labels[image, k]) + 1
            if category in known:
                results.append(
                    {
                        "image_id": image,
                        "category_id": category,
                        "bbox": _xywh(boxes[image, k]),
                        "score": float(scores[image, k]),
                    }
                )
    metrics = coco_box_map(ground_truth, results)
    return KeptAP(confidence=confidence, pseudo_objects=count, ap=metrics["AP"], ap50=metrics["AP50"])
