"""COCO box mAP with faster-coco-eval (the pycocotools protocol: crowd regions ignored, area ranges, 100 dets)."""

from __future__ import annotations

from typing import Any

__all__ = ["METRIC_NAMES", "coco_box_map"]

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


def coco_box_map(
    ground_truth: dict[str, Any], results: list[dict[str, Any]], *, print_summary: bool = False
) -> dict[str, float]:
    """COCO box metrics of ``results`` against ``ground_truth``.

    Args:
        ground_truth: a parsed COCO detection annotation file.
        results: COCO results entries (``image_id``, original ``category_id``, ``bbox`` x, y, w, h in pixels,
            ``score``); may be empty.
        print_summary: print the standard 12-line COCO summary.

    Returns:
        ``AP`` (IoU 0.50:0.95), ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl``, ``AR100``, each in [0, 1];
        -1 where the ground truth has no object of that kind.
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
    return {ours: float(stats[theirs]) for ours, theirs in METRIC_NAMES.items()}
