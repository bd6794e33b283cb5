"""COCO box metrics against known answers: the ground truth itself, and shifted boxes scored by pycocotools."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest

pytest.importorskip("faster_coco_eval")

from rtdetr_deploy.coco import coco_box_map, coco_box_metrics  # noqa: E402

CATEGORIES = [{"id": 3, "name": "circle"}, {"id": 7, "name": "square"}, {"id": 12, "name": "triangle"}]


def _ground_truth(seed: int = 0, images: int = 6) -> dict:
    """A small COCO set: several boxes of three categories per image, of every area range."""
    rng = np.random.default_rng(seed)
    gt = {"images": [], "annotations": [], "categories": CATEGORIES}
    for image_id in range(1, images + 1):
        gt["images"].append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id}.jpg"})
        for _ in range(int(rng.integers(2, 6))):
            w, h = (float(v) for v in rng.uniform(8, 200, 2))
            x, y = float(rng.uniform(0, 640 - w)), float(rng.uniform(0, 480 - h))
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.choice([3, 7, 12])),
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    return gt


def _as_detections(gt: dict, *, shift: float = 0.0) -> list[dict]:
    rng = np.random.default_rng(1)
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": [a["bbox"][0] + shift, a["bbox"][1] + shift / 2, a["bbox"][2], a["bbox"][3]],
            "score": float(rng.uniform(0.5, 1.0)),
        }
        for a in gt["annotations"]
    ]


def _pycocotools_stats(gt: dict, detections: list[dict]) -> np.ndarray:
    pycocotools = pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    del pycocotools
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(detections))
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def test_ground_truth_fed_back_scores_ap_one() -> None:
    gt = _ground_truth()
    metrics, per_class = coco_box_metrics(gt, _as_detections(gt))
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AP50"] == pytest.approx(1.0)
    assert per_class == pytest.approx({3: 1.0, 7: 1.0, 12: 1.0})


def test_no_detections_score_zero() -> None:
    assert coco_box_map(_ground_truth(), [])["AP"] == pytest.approx(0.0)


@pytest.mark.parametrize("shift", [2.0, 6.0, 15.0])
def test_shifted_boxes_score_what_pycocotools_scores(shift: float) -> None:
    """Boxes moved by a known amount lose IoU by a known amount; pycocotools (written apart) is the reference."""
    gt = _ground_truth(seed=2)
    detections = _as_detections(gt, shift=shift)
    stats = _pycocotools_stats(gt, detections)
    ours = coco_box_map(gt, detections)
    assert 0.0 < ours["AP"] < 1.0
    for name, index in (("AP", 0), ("AP50", 1), ("AP75", 2), ("APs", 3), ("APm", 4), ("APl", 5), ("AR100", 8)):
        assert ours[name] == pytest.approx(stats[index], abs=1e-6), name


def test_a_missed_category_costs_its_share_of_ap() -> None:
    gt = _ground_truth(seed=3)
    kept = [d for d in _as_detections(gt) if d["category_id"] != 7]
    metrics, per_class = coco_box_metrics(gt, kept)
    assert per_class[7] == pytest.approx(0.0) and per_class[3] == pytest.approx(1.0)
    assert metrics["AP"] == pytest.approx(2 / 3)
