"""Hungarian matching on hand-made cases."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("scipy")

from rtdetr_deploy.train.matcher import HungarianMatcher  # noqa: E402


def _logits(probs: list[list[float]]) -> torch.Tensor:
    p = torch.tensor(probs).clamp(1e-4, 1 - 1e-4)
    return torch.log(p / (1 - p))


def test_matcher_assigns_the_obvious_pairs():
    # Query 0 sits on object 1, query 2 on object 0, query 1 is elsewhere.
    boxes = torch.tensor([[[0.7, 0.7, 0.2, 0.2], [0.1, 0.9, 0.05, 0.05], [0.3, 0.3, 0.2, 0.3]]])
    logits = _logits([[0.1, 0.9], [0.5, 0.5], [0.9, 0.1]]).unsqueeze(0)
    targets = [{"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.3], [0.7, 0.7, 0.2, 0.2]])}]
    [(query_idx, target_idx)] = HungarianMatcher()({"pred_logits": logits, "pred_boxes": boxes}, targets)
    assert dict(zip(target_idx.tolist(), query_idx.tolist(), strict=True)) == {0: 2, 1: 0}


def test_class_cost_decides_between_equal_boxes():
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]]])
    logits = _logits([[0.9, 0.05], [0.05, 0.9]]).unsqueeze(0)
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    [(query_idx, _)] = HungarianMatcher()({"pred_logits": logits, "pred_boxes": boxes}, targets)
    assert query_idx.tolist() == [1]


def test_images_without_objects_and_batches_match_independently():
    torch.manual_seed(0)
    outputs = {"pred_logits": torch.randn(2, 5, 3), "pred_boxes": torch.rand(2, 5, 4) * 0.5 + 0.25}
    targets = [
        {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
        {"labels": torch.tensor([2, 0, 1]), "boxes": torch.rand(3, 4) * 0.5 + 0.25},
    ]
    (q0, t0), (q1, t1) = HungarianMatcher()(outputs, targets)
    assert len(q0) == len(t0) == 0
    assert sorted(t1.tolist()) == [0, 1, 2] and len(set(q1.tolist())) == 3


def test_cost_matrix_weights_follow_the_official_formula():
    matcher = HungarianMatcher(cost_class=0.0, cost_bbox=1.0, cost_giou=0.0)
    cost = matcher.cost_matrix(
        torch.zeros(1, 2), torch.tensor([[0.5, 0.5, 0.2, 0.2]]), torch.tensor([0]), torch.tensor([[0.6, 0.5, 0.2, 0.4]])
    )
    assert cost.item() == pytest.approx(0.1 + 0.2)
    with pytest.raises(ValueError, match="non-zero"):
        HungarianMatcher(cost_class=0, cost_bbox=0, cost_giou=0)
