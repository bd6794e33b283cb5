"""Presets: the official hyperparameters, validation and lookup."""

from __future__ import annotations

import pytest

from rtdetr_deploy.models.presets import PRESETS, ModelConfig, get_preset


@pytest.mark.parametrize(
    ("name", "depth", "channels", "hidden", "ffn", "expansion", "layers", "eval_idx", "backbone_lr"),
    [
        ("r18vd", 18, (128, 256, 512), 256, 1024, 0.5, 3, -1, 1e-4),
        ("r34vd", 34, (128, 256, 512), 256, 1024, 0.5, 4, -1, 5e-5),
        ("r50vd_m", 50, (512, 1024, 2048), 256, 1024, 0.5, 6, 2, 1e-5),
        ("r50vd", 50, (512, 1024, 2048), 256, 1024, 1.0, 6, -1, 1e-5),
        ("r101vd", 101, (512, 1024, 2048), 384, 2048, 1.0, 6, -1, 1e-6),
    ],
)
def test_official_presets_match_the_release_configs(
    name, depth, channels, hidden, ffn, expansion, layers, eval_idx, backbone_lr
):
    cfg = get_preset(name)
    assert (cfg.depth, cfg.backbone_channels, cfg.hidden_dim, cfg.encoder_ffn_dim) == (depth, channels, hidden, ffn)
    assert (cfg.expansion, cfg.num_decoder_layers, cfg.eval_idx, cfg.backbone_lr) == (
        expansion,
        layers,
        eval_idx,
        backbone_lr,
    )
    assert cfg.decoder_hidden_dim == 256
    assert cfg.num_queries == 300
    assert cfg.num_points == (4, 4, 4)
    assert cfg.eval_size == (640, 640)
    assert cfg.freeze_norm == (depth >= 50)
    assert cfg.official


def test_tiny_is_marked_unofficial_and_uses_different_points_per_level():
    tiny = get_preset("tiny")
    assert not tiny.official
    assert len(set(tiny.num_points)) > 1


def test_unknown_preset_suggests_the_closest_name():
    with pytest.raises(ValueError, match=r"unknown preset 'r18' \(did you mean 'r18vd'\?\); choose from r18vd"):
        get_preset("r18")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"depth": 26}, "depth must be one of"),
        ({"num_points": (4, 4)}, "num_points needs one entry per level"),
        ({"eval_size": (640, 600)}, "multiples of 32"),
        ({"eval_idx": 3}, "eval_idx 3 out of range"),
        ({"hidden_dim": 100}, "must divide by num_heads"),
    ],
)
def test_invalid_configs_are_rejected(changes, message):
    base = {"name": "x", "depth": 18, "freeze_norm": False, "expansion": 0.5, "num_decoder_layers": 3}
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**base, "backbone_lr": 1e-4, **changes})


def test_with_eval_size_keeps_architecture():
    cfg = PRESETS["r18vd"].with_eval_size((384, 640))
    assert cfg.eval_size == (384, 640)
    assert cfg.depth == 18
