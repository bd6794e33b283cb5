"""NMS-free post-processing in numpy: top-k against a full sort and against the torch implementation."""

from __future__ import annotations

import numpy as np
import pytest

from rtdetr_deploy.errors import BackendError
from rtdetr_deploy.runtime.detections import Detections
from rtdetr_deploy.runtime.postprocess import select_detections, topk_detections


def _random_outputs(seed: int = 0, batch: int = 2, queries: int = 30, classes: int = 4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, queries, classes)).astype(np.float32) * 3
    boxes = np.concatenate(
        [rng.uniform(0.2, 0.8, (batch, queries, 2)), rng.uniform(0.05, 0.3, (batch, queries, 2))], -1
    )
    sizes = np.array([[640, 480], [320, 200]][:batch], np.int64)
    return logits, boxes.astype(np.float32), sizes


def test_topk_matches_a_full_sort() -> None:
    logits, boxes, sizes = _random_outputs()
    labels, boxes_xyxy, scores = topk_detections(logits, boxes, sizes, topk=10)
    assert labels.shape == (2, 10) and boxes_xyxy.shape == (2, 10, 4) and scores.shape == (2, 10)
    assert labels.dtype == np.int64 and boxes_xyxy.dtype == np.float32 and scores.dtype == np.float32
    for b in range(2):
        flat = logits[b].reshape(-1)
        order = np.argsort(-flat, kind="stable")[:10]
        np.testing.assert_array_equal(labels[b], order % 4)
        np.testing.assert_allclose(scores[b], 1 / (1 + np.exp(-flat[order])), rtol=1e-6)
        cx, cy, w, h = boxes[b, order // 4].T
        expected = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * np.tile(sizes[b], 2)
        np.testing.assert_allclose(boxes_xyxy[b], expected, rtol=1e-6)
        assert (np.diff(scores[b]) <= 0).all()


def test_topk_is_capped_at_queries_times_classes() -> None:
    logits, boxes, sizes = _random_outputs(queries=3, classes=2)
    labels, _, scores = topk_detections(logits, boxes, sizes, topk=300)
    assert labels.shape == (2, 6)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_topk_matches_torch_postprocess() -> None:
    torch = pytest.importorskip("torch")
    from rtdetr_deploy.models.postprocess import postprocess

    logits, boxes, sizes = _random_outputs(seed=3, queries=50, classes=5)
    labels, boxes_xyxy, scores = topk_detections(logits, boxes, sizes, topk=40)
    ref = postprocess(torch.from_numpy(logits), torch.from_numpy(boxes), torch.from_numpy(sizes), topk=40)
    np.testing.assert_array_equal(labels, ref[0].numpy())
    np.testing.assert_allclose(boxes_xyxy, ref[1].numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(scores, ref[2].numpy(), rtol=1e-6)


def test_select_thresholds_filters_classes_and_maps_ids() -> None:
    labels = np.array([[2, 0, 1, 2]])
    boxes = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    scores = np.array([[0.9, 0.6, 0.3, 0.1]], np.float32)
    names, ids = ("person", "car", "dog"), (1, 3, 18)
    (all_kept,) = select_detections(labels, boxes, scores, conf=0.25, class_names=names, category_ids=ids)
    assert len(all_kept) == 3
    assert all_kept.class_names == ("dog", "person", "car")
    np.testing.assert_array_equal(all_kept.category_ids, [18, 1, 3])
    np.testing.assert_array_equal(all_kept.boxes_xyxy, boxes[0, :3])
    (dogs,) = select_detections(
        labels, boxes, scores, conf=0.0, class_names=names, category_ids=ids, keep_classes=np.array([2])
    )
    assert dogs.class_names == ("dog", "dog")
    (none,) = select_detections(labels, boxes, scores, conf=0.95, class_names=names, category_ids=ids)
    assert len(none) == 0 and none.boxes_xyxy.shape == (0, 4)


def test_unknown_class_index_is_a_backend_error() -> None:
    with pytest.raises(BackendError, match="class index 7"):
        select_detections(
            np.array([[7]]), np.zeros((1, 1, 4), np.float32), np.ones((1, 1), np.float32), conf=0.5,
            class_names=("a", "b"), category_ids=(1, 2),
        )  # fmt: skip


def test_coco_entries() -> None:
    det = Detections(
        boxes_xyxy=np.array([[10, 20, 50, 80]], np.float32),
        scores=np.array([0.87654321], np.float32),
        class_ids=np.array([1]),
        class_names=("car",),
        category_ids=np.array([3]),
    )
    assert det.to_coco(42) == [{"image_id": 42, "category_id": 3, "bbox": [10.0, 20.0, 40.0, 60.0], "score": 0.87654}]
    assert Detections.empty().to_coco(1) == []
