"""Kept AP on hand-computed cases: COCO AP (101 recall points, IoU 0.50:0.95) against pseudo ground truth."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faster_coco_eval")

from rtdetr_deploy.export.kept_ap import duplicate_share, kept_ap, pseudo_ground_truth  # noqa: E402


def _outputs(rows: list[tuple[int, list[float], float]]) -> dict[str, np.ndarray]:
    """One image: ``(label, xyxy, score)`` rows -> ``labels [1, K]``, ``boxes [1, K, 4]``, ``scores [1, K]``."""
    return {
        "labels": np.array([[r[0] for r in rows]], np.int64),
        "boxes": np.array([[r[1] for r in rows]], np.float32),
        "scores": np.array([[r[2] for r in rows]], np.float32),
    }


REFERENCE = _outputs([(0, [0, 0, 100, 100], 0.9), (1, [200, 200, 300, 260], 0.8), (2, [50, 50, 60, 60], 0.2)])


def test_only_confident_detections_become_pseudo_objects() -> None:
    truth = pseudo_ground_truth(REFERENCE, confidence=0.5)
    assert [(a["category_id"], a["bbox"]) for a in truth["annotations"]] == [
        (1, [0, 0, 100, 100]),
        (2, [200, 200, 100, 60]),
    ]


def test_the_reference_keeps_everything() -> None:
    result = kept_ap(REFERENCE, REFERENCE, confidence=0.5)
    assert result.pseudo_objects == 2
    assert result.ap == pytest.approx(1.0)


def test_a_missed_object_costs_its_class() -> None:
    """COCO averages AP over classes: the found class scores 1, the missed one 0 (the unconfident class has no
    pseudo object and does not count)."""
    candidate = _outputs([(0, [0, 0, 100, 100], 0.9), (2, [50, 50, 60, 60], 0.3)])
    assert kept_ap(REFERENCE, candidate, confidence=0.5).ap == pytest.approx(0.5)


def test_a_shifted_box_counts_at_the_loose_thresholds_only() -> None:
    """Both boxes shifted by 10 px along x: IoU 90/110 = 0.818 passes 7 of the 10 thresholds 0.50..0.95."""
    candidate = _outputs([(0, [10, 0, 110, 100], 0.9), (1, [210, 200, 310, 260], 0.8)])
    result = kept_ap(REFERENCE, candidate, confidence=0.5)
    assert result.ap == pytest.approx(0.7)
    assert result.ap50 == pytest.approx(1.0)


def test_a_wrong_label_is_a_miss_and_a_false_positive() -> None:
    """Class 0: its object first, then a false positive (precision 1 up to recall 1: AP 1); class 1: missed."""
    candidate = _outputs([(0, [0, 0, 100, 100], 0.9), (0, [200, 200, 300, 260], 0.8)])
    assert kept_ap(REFERENCE, candidate, confidence=0.5).ap == pytest.approx(0.5)


def test_a_false_positive_ranked_first_costs_precision() -> None:
    """One class, two objects; a false positive outranks both: precision 1/2 at recall 1/2, 2/3 at recall 1, so
    the interpolated precision is 2/3 at all 101 recall points."""
    reference = _outputs([(0, [0, 0, 100, 100], 0.9), (0, [200, 200, 300, 260], 0.8)])
    candidate = _outputs([(0, [400, 400, 450, 450], 0.95), (0, [0, 0, 100, 100], 0.9), (0, [200, 200, 300, 260], 0.8)])
    assert kept_ap(reference, candidate, confidence=0.5).ap == pytest.approx(2 / 3)


def test_nothing_confident_is_not_decisive() -> None:
    result = kept_ap(REFERENCE, REFERENCE, confidence=0.95)
    assert result.pseudo_objects == 0 and result.ap is None


def test_duplicates_are_confident_boxes_over_a_better_one_of_any_class() -> None:
    """Untrained weights put several classes on one box; a trained NMS-free detector does not. IoU of the second
    box with the first: 9500 / 10000 = 0.95."""
    assert duplicate_share(REFERENCE, confidence=0.5) == 0.0
    stacked = _outputs([(0, [0, 0, 100, 100], 0.9), (1, [0, 0, 100, 95], 0.8), (2, [200, 200, 300, 260], 0.7)])
    assert duplicate_share(stacked, confidence=0.5) == pytest.approx(1 / 3)
    assert duplicate_share(stacked, confidence=0.85) == 0.0
