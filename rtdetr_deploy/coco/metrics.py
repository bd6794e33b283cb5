"""COCO box mAP with faster-coco-eval (the pycocotools protocol: crowd regions ignored, area ranges, 100 dets)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["METRIC_NAMES", "coco_box_map", "coco_box_metrics"]

# Our names for faster-coco-eval's summary statistics.
METRIC_NAMES = {
    "AP": "AP_all",
    "AP50": "AP_50",
    "AP75": "AP_75",
    "APs": "AP_small",
    "APm": "AP_medium",
    "APl": "AP_large",
    "AR100": "AR_third",
}


def coco_box_metrics(
    ground_truth: dict[str, Any], results: list[dict[str, Any]], *, print_summary: bool = False
) -> tuple[dict[str, float], dict[int, float]]:
    """COCO box metrics of ``results`` against ``ground_truth``, overall and per category.

    Args:
        ground_truth: a parsed COCO detection annotation file.
        results: COCO results entries (``image_id``, original ``category_id``, ``bbox`` x, y, w, h in pixels,
            ``score``); may be empty.
        print_summary: print the standard 12-line COCO summary.

    Returns:
        ``AP`` (IoU 0.50:0.95), ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl``, ``AR100``, each in [0, 1] (-1 where
        the ground truth has no object of that kind); and AP (IoU 0.50:0.95, all areas, 100 detections) per
        category id (-1 for a category without ground truth).
    """
    from faster_coco_eval import COCO, COCOeval_faster

    def quiet(*args: object, **kwargs: object) -> None:
        pass

    gt = COCO(ground_truth, print_function=quiet)
    dt = gt.loadRes([dict(r) for r in results])
    evaluator = COCOeval_faster(gt, dt, iouType="bbox", print_function=print if print_summary else quiet)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    stats = evaluator.stats_as_dict
    summary = {ours: float(stats[theirs]) for ours, theirs in METRIC_NAMES.items()}
    # precision [IoU thresholds, recall points, categories, area ranges, max detections]; -1 marks no ground truth.
    precision = np.asarray(evaluator.eval["precision"])[:, :, :, 0, -1]
    per_class = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k]
        values = values[values > -1]
        per_class[int(category_id)] = float(values.mean()) if values.size else -1.0
    return summary, per_class


def coco_box_map(
    ground_truth: dict[str, Any], results: list[dict[str, Any]], *, print_summary: bool = False
) -> dict[str, float]:
    """The overall metrics of ``coco_box_metrics``."""
    return coco_box_metrics(ground_truth, results, print_summary=print_summary)[0]
