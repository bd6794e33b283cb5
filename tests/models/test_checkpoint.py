"""Checkpoint loading: official release layout, bare and own formats, preset inference, every bad input."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from rtdetr_deploy import load_model  # noqa: E402
from rtdetr_deploy.errors import CheckpointError  # noqa: E402
from rtdetr_deploy.models import PRESETS, build_model, get_preset, infer_config, save_model  # noqa: E402


@pytest.fixture(scope="module")
def tiny_weights():
    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), num_classes=7).eval()
    return model, model.state_dict()


def _outputs_equal(a, b, size=(64, 64)) -> bool:
    images = torch.rand(1, 3, *size)
    with torch.no_grad():
        return torch.equal(a(images)["pred_logits"], b(images)["pred_logits"])


def test_official_release_layout_prefers_ema_module(tmp_path, tiny_weights):
    model, sd = tiny_weights
    other = build_model(get_preset("tiny"), num_classes=7).state_dict()
    path = tmp_path / "release.pth"
    # Release files also carry training state, including a Counter of LR milestones.
    torch.save(
        {
            "ema": {"module": sd, "updates": 10},
            "model": other,
            "last_epoch": 3,
            "date": "2024-07-01",
            "milestones": collections.Counter([1000]),
        },
        path,
    )
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.info.config.name == "tiny"
    assert loaded.info.num_classes == 7
    assert _outputs_equal(loaded, model)


def test_model_key_and_bare_state_dicts_load(tmp_path, tiny_weights):
    model, sd = tiny_weights
    torch.save({"model": sd}, tmp_path / "model.pth")
    torch.save(sd, tmp_path / "bare.pth")
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "ddp.pth")
    for name in ("model.pth", "bare.pth", "ddp.pth"):
        assert _outputs_equal(load_model(tmp_path / name), model), name


def test_own_checkpoint_carries_classes_ids_and_input_size(tmp_path, tiny_weights):
    model, _ = tiny_weights
    names = [f"c{i}" for i in range(7)]
    path = save_model(model, tmp_path / "own.pth", class_names=names, category_ids=[2, 4, 6, 8, 10, 12, 14])
    loaded = load_model(path)
    assert loaded.info.class_names == tuple(names)
    assert loaded.info.category_ids == (2, 4, 6, 8, 10, 12, 14)
    assert loaded.info.input_size == (320, 320)
    assert _outputs_equal(loaded, model)


def test_sampling_argument_overrides_the_trained_sampling(tmp_path, tiny_weights):
    model, sd = tiny_weights
    torch.save(sd, tmp_path / "bare.pth")
    loaded = load_model(tmp_path / "bare.pth", sampling="discrete")
    assert loaded.sampling == "discrete"
    assert loaded.info.sampling == "bilinear"


@pytest.mark.parametrize("name", ["r18vd", "r34vd", "r50vd_m", "r50vd", "r101vd", "tiny"])
def test_preset_is_inferred_from_tensor_shapes(name):
    sd = build_model(PRESETS[name], num_classes=80).state_dict()
    assert infer_config(sd).name == name


def test_r50vd_m_and_r50vd_are_told_apart_and_eval_idx_comes_from_the_preset():
    cfg = infer_config(build_model(PRESETS["r50vd_m"]).state_dict())
    assert (cfg.name, cfg.eval_idx, cfg.expansion) == ("r50vd_m", 2, 0.5)


def test_eval_size_is_read_from_stored_anchors():
    model = build_model(get_preset("tiny")).set_eval_size((416, 416))
    assert infer_config(model.state_dict()).eval_size == (416, 416)


def test_official_checkpoint_loads_strictly_with_explicit_preset(tmp_path):
    model = build_model(PRESETS["r18vd"], num_classes=80)
    torch.save({"ema": {"module": model.state_dict()}}, tmp_path / "r18.pth")
    loaded = load_model(tmp_path / "r18.pth", preset="r18vd", num_classes=80)
    assert loaded.info.config.name == "r18vd"


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_model(tmp_path / "nope.pth")


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint|unreadable or truncated"):
        load_model(path)


def test_truncated_file_is_reported(tmp_path, tiny_weights):
    _, sd = tiny_weights
    full = tmp_path / "full.pth"
    torch.save(sd, full)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(full.read_bytes()[: os.path.getsize(full) // 2])
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        load_model(truncated)


class _Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": _Payload()}, path)
    with pytest.raises(CheckpointError, match="refused to load.*weights_only=True"):
        load_model(path)


def test_dict_without_weights_lists_its_keys(tmp_path):
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, path)
    with pytest.raises(CheckpointError, match="no model weights found.*top-level keys: epoch, optimizer"):
        load_model(path)


def test_other_architecture_names_expected_preset_and_first_keys(tmp_path, tiny_weights):
    _, sd = tiny_weights
    torch.save(sd, tmp_path / "tiny.pth")
    with pytest.raises(CheckpointError, match=r"do not fit preset 'r50vd': missing \(\d+\): .*unexpected \(\d+\)"):
        load_model(tmp_path / "tiny.pth", preset="r50vd")


def test_shape_mismatch_against_preset_is_listed(tmp_path):
    sd = build_model(PRESETS["r18vd"]).state_dict()
    torch.save(sd, tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match="do not fit preset 'r34vd'.*missing"):
        load_model(tmp_path / "r18.pth", preset="r34vd")


def test_non_rtdetr_state_dict_is_rejected(tmp_path):
    torch.save(torch.nn.Linear(3, 4).state_dict(), tmp_path / "linear.pth")
    with pytest.raises(CheckpointError, match="not an RT-DETRv2 state dict"):
        load_model(tmp_path / "linear.pth")


def test_num_classes_contradicting_the_head(tmp_path, tiny_weights):
    _, sd = tiny_weights
    torch.save(sd, tmp_path / "tiny.pth")
    with pytest.raises(CheckpointError, match=r"num_classes=80 contradicts the classification head \(7\)"):
        load_model(tmp_path / "tiny.pth", num_classes=80)


def test_unknown_preset_and_sampling_are_value_errors(tmp_path, tiny_weights):
    _, sd = tiny_weights
    torch.save(sd, tmp_path / "tiny.pth")
    with pytest.raises(ValueError, match="unknown preset"):
        load_model(tmp_path / "tiny.pth", preset="r19vd")
    with pytest.raises(ValueError, match="unknown sampling method"):
        load_model(tmp_path / "tiny.pth", sampling="nearest")


def test_save_is_atomic_when_writing_fails(tmp_path, tiny_weights, monkeypatch):
    model, _ = tiny_weights
    path = tmp_path / "ckpt.pth"
    path.write_bytes(b"previous good file")

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, path)
    assert path.read_bytes() == b"previous good file"
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["ckpt.pth"]
