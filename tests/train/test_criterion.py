"""Loss terms on hand-made cases, and the full loss on real model outputs."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("scipy")

from rtdetr_deploy.models import build_model, get_preset  # noqa: E402
from rtdetr_deploy.models.denoising import DenoisingGroups  # noqa: E402
from rtdetr_deploy.train.criterion import SetCriterion, denoising_indices  # noqa: E402
from rtdetr_deploy.train.matcher import HungarianMatcher  # noqa: E402

TARGETS = [
    {"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.3], [0.7, 0.6, 0.3, 0.2]])},
    {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])},
]


def _outputs(boxes_per_image, labels_per_image, *, queries=4, classes=3, confident=8.0):
    """Queries 0..n-1 predict the given boxes with a confident logit on the given label; the rest background."""
    logits = torch.full((len(boxes_per_image), queries, classes), -confident)
    boxes = torch.full((len(boxes_per_image), queries, 4), 0.05)
    for i, (image_boxes, image_labels) in enumerate(zip(boxes_per_image, labels_per_image, strict=True)):
        boxes[i, : len(image_boxes)] = image_boxes
        logits[i, torch.arange(len(image_labels)), image_labels] = confident
    return {"pred_logits": logits.requires_grad_(), "pred_boxes": boxes.requires_grad_()}


def test_perfect_prediction_gives_near_zero_losses():
    outputs = _outputs([t["boxes"] for t in TARGETS], [t["labels"] for t in TARGETS])
    losses = SetCriterion(HungarianMatcher(), num_classes=3)(outputs, TARGETS)
    assert set(losses) == {"loss_vfl", "loss_bbox", "loss_giou"}
    assert losses["loss_bbox"].item() == pytest.approx(0, abs=1e-6)
    assert losses["loss_giou"].item() == pytest.approx(0, abs=1e-5)
    # Confident and right (IoU 1 as target score): the varifocal loss is tiny.
    assert losses["loss_vfl"].item() < 0.01


def test_box_losses_grow_with_the_error_and_are_weighted():
    criterion = SetCriterion(HungarianMatcher(), num_classes=3, weight_bbox=5.0, weight_giou=2.0)
    shifted = [t["boxes"] + torch.tensor([0.05, 0.0, 0.0, 0.0]) for t in TARGETS]
    losses = criterion(_outputs(shifted, [t["labels"] for t in TARGETS]), TARGETS)
    # Three boxes, each off by 0.05 in one coordinate: mean L1 per box 0.05, times weight 5.
    assert losses["loss_bbox"].item() == pytest.approx(5 * 0.05, rel=1e-4)
    assert 0 < losses["loss_giou"].item() < 2 * 1.0


def test_varifocal_loss_punishes_confident_wrong_classes():
    criterion = SetCriterion(HungarianMatcher(cost_class=0.0), num_classes=3)
    boxes = [t["boxes"] for t in TARGETS]
    right = criterion(_outputs(boxes, [t["labels"] for t in TARGETS]), TARGETS)["loss_vfl"]
    wrong = criterion(_outputs(boxes, [(t["labels"] + 1) % 3 for t in TARGETS]), TARGETS)["loss_vfl"]
    assert wrong.item() > 100 * right.item()


def test_no_objects_gives_finite_losses_with_gradients():
    targets = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]
    outputs = _outputs([torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.int64)])
    losses = SetCriterion(HungarianMatcher(), num_classes=3)(outputs, targets)
    assert losses["loss_bbox"].item() == losses["loss_giou"].item() == 0
    sum(losses.values()).backward()
    assert torch.isfinite(outputs["pred_logits"].grad).all()


def test_denoising_indices_pair_positives_with_their_objects_group_by_group():
    meta = DenoisingGroups(
        content=torch.zeros(0),
        boxes_unact=torch.zeros(0),
        attn_mask=torch.zeros(0),
        positive_idx=[torch.tensor([0, 1, 4, 5]), torch.tensor([0, 4])],
        num_groups=2,
        num_split=[8, 4],
    )
    (q0, t0), (q1, t1) = denoising_indices(meta, TARGETS)
    assert q0.tolist() == [0, 1, 4, 5] and t0.tolist() == [0, 1, 0, 1]
    assert q1.tolist() == [0, 4] and t1.tolist() == [0, 0]


def test_full_model_outputs_give_every_loss_term_and_gradients():
    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), num_classes=3).train()
    outputs = model(torch.rand(2, 3, 64, 64), TARGETS)
    losses = SetCriterion(HungarianMatcher(), num_classes=3)(outputs, TARGETS)
    layers = get_preset("tiny").num_decoder_layers
    expected = {"loss_vfl", "loss_bbox", "loss_giou"}
    expected |= {f"{k}_aux_{i}" for k in ("loss_vfl", "loss_bbox", "loss_giou") for i in range(layers - 1)}
    expected |= {f"{k}_enc_0" for k in ("loss_vfl", "loss_bbox", "loss_giou")}
    expected |= {f"{k}_dn_{i}" for k in ("loss_vfl", "loss_bbox", "loss_giou") for i in range(layers)}
    assert set(losses) == expected
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.decoder.denoising_class_embed.weight.grad.abs().sum() > 0
    assert model.backbone.conv1[0].conv.weight.grad.abs().sum() > 0
