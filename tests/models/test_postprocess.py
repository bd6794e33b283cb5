"""NMS-free post-processing: sigmoid + top-k over queries x classes, boxes to original pixels."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from rtdetr_deploy.models.postprocess import DeployModel, PostProcessor, postprocess  # noqa: E402


def test_topk_runs_over_queries_times_classes_and_scales_boxes_by_width_height():
    logits = torch.full((1, 3, 2), -10.0)
    logits[0, 2, 1] = 3.0  # query 2, class 1: best
    logits[0, 0, 0] = 1.0  # query 0, class 0: second
    logits[0, 0, 1] = 0.5  # the same query again with another class: third (no NMS, no per-query max)
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1], [0.25, 0.75, 0.5, 0.5]]])
    sizes = torch.tensor([[200, 100]])  # width, height
    labels, boxes_xyxy, scores = postprocess(logits, boxes, sizes, topk=3)
    assert labels.tolist() == [[1, 0, 1]]
    torch.testing.assert_close(scores, torch.sigmoid(torch.tensor([[3.0, 1.0, 0.5]])))
    expected = torch.tensor([[[0.0, 50.0, 100.0, 100.0], [80.0, 30.0, 120.0, 70.0], [80.0, 30.0, 120.0, 70.0]]])
    torch.testing.assert_close(boxes_xyxy, expected)
    assert labels.dtype == torch.int64


def test_topk_is_capped_by_the_number_of_pairs():
    labels, boxes, scores = postprocess(
        torch.zeros(2, 4, 3), torch.rand(2, 4, 4), torch.tensor([[10, 10]] * 2), topk=300
    )
    assert labels.shape == scores.shape == (2, 12)
    assert boxes.shape == (2, 12, 4)


def test_deploy_model_returns_the_official_deploy_tuple():
    class Fixed(torch.nn.Module):
        def forward(self, images):
            n = images.shape[0]
            return {"pred_logits": torch.zeros(n, 5, 2), "pred_boxes": torch.full((n, 5, 4), 0.5)}

    labels, boxes, scores = DeployModel(Fixed(), PostProcessor(topk=4))(
        torch.rand(2, 3, 32, 32), torch.tensor([[4, 2]] * 2)
    )
    assert labels.shape == (2, 4)
    assert boxes[0, 0].tolist() == [1.0, 0.5, 3.0, 1.5]
    assert torch.allclose(scores, torch.tensor(0.5))


def test_topk_must_be_positive():
    with pytest.raises(ValueError, match="topk must be positive"):
        PostProcessor(topk=0)
