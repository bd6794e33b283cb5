"""Contrastive denoising groups: query counts, positive indices and the attention mask."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from rtdetr_deploy.models.denoising import contrastive_denoising_groups  # noqa: E402


def _targets():
    return [
        {"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.2, 0.3, 0.1, 0.2]])},
        {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.6, 0.4, 0.3, 0.3]])},
    ]


def test_groups_queries_and_mask():
    torch.manual_seed(0)
    embed = torch.nn.Embedding(4, 8, padding_idx=3)
    groups = contrastive_denoising_groups(_targets(), num_classes=3, num_queries=5, class_embed=embed, num_denoising=6)
    assert groups.num_groups == 3  # 6 // max 2 objects
    num_dn = 2 * 2 * 3
    assert groups.num_split == [num_dn, 5]
    assert groups.content.shape == (2, num_dn, 8)
    assert groups.boxes_unact.shape == (2, num_dn, 4)
    # Positives: the first max_gt slots of each group of 2 * max_gt, real objects only.
    assert groups.positive_idx[0].tolist() == [0, 1, 4, 5, 8, 9]
    assert groups.positive_idx[1].tolist() == [0, 4, 8]
    mask = groups.attn_mask
    assert mask.shape == (num_dn + 5, num_dn + 5)
    assert mask[num_dn:, :num_dn].all()  # matching queries never see denoising queries
    assert not mask[:, num_dn:].any()  # everyone sees the matching queries
    for g in range(3):
        rows = slice(4 * g, 4 * (g + 1))
        assert not mask[rows, rows].any()  # a group sees itself
        others = torch.ones(num_dn, dtype=torch.bool)
        others[rows] = False
        assert mask[rows][:, :num_dn][:, others].all()  # and no other group


def test_no_objects_means_no_denoising():
    embed = torch.nn.Embedding(4, 8)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]
    assert contrastive_denoising_groups(empty, num_classes=3, num_queries=5, class_embed=embed) is None


def test_negative_queries_are_noised_further_than_positives():
    torch.manual_seed(0)
    embed = torch.nn.Embedding(2, 8)
    targets = [{"labels": torch.zeros(1, dtype=torch.int64), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    groups = contrastive_denoising_groups(
        targets, num_classes=1, num_queries=1, class_embed=embed, num_denoising=200, label_noise_ratio=0.0
    )
    boxes = torch.sigmoid(groups.boxes_unact[0])
    shift = (boxes[:, :2] - 0.5).abs().max(-1).values
    positives, negatives = shift[0::2], shift[1::2]
    assert positives.max() <= 0.1 + 1e-6  # at most one half-size (0.1) per coordinate
    assert negatives.mean() > positives.mean()
