"""Hybrid encoder: the official position-embedding layout and RepVGG fusion."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from rtdetr_deploy.models.hybrid_encoder import HybridEncoder, RepVggBlock, sincos_position_embedding  # noqa: E402


def test_position_embedding_enumerates_width_slowest_like_the_official_model():
    width, height, dim = 3, 2, 8
    embed = sincos_position_embedding(width, height, dim)
    assert embed.shape == (1, width * height, dim)
    omega = 1.0 / (10000.0 ** (torch.arange(2, dtype=torch.float32) / 2))
    # Token t gets w-index t // height and h-index t % height.
    for t in range(width * height):
        w_idx, h_idx = t // height, t % height
        expected = torch.cat(
            [(w_idx * omega).sin(), (w_idx * omega).cos(), (h_idx * omega).sin(), (h_idx * omega).cos()]
        )
        torch.testing.assert_close(embed[0, t], expected)


def test_repvgg_fusion_matches_the_two_branches():
    torch.manual_seed(0)
    block = RepVggBlock(6, 6).eval()
    with torch.no_grad():
        for norm in (block.conv1.norm, block.conv2.norm):
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 6, 9, 7)
    with torch.no_grad():
        expected = block(x)
        block.fuse()
        fused = block(x)
    assert not hasattr(block, "conv1")
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=1e-5)


def test_encoder_keeps_level_shapes_and_uses_the_cached_embedding_only_at_its_size():
    torch.manual_seed(0)
    encoder = HybridEncoder((16, 32, 64), hidden_dim=32, dim_feedforward=64, expansion=0.5, eval_size=(64, 64)).eval()
    assert list(encoder.eval_pos_embeds) == [(2, 2, 2)]
    feats = [torch.randn(1, 16, 8, 12), torch.randn(1, 32, 4, 6), torch.randn(1, 64, 2, 3)]
    outs = encoder(feats)
    assert [tuple(o.shape) for o in outs] == [(1, 32, 8, 12), (1, 32, 4, 6), (1, 32, 2, 3)]
