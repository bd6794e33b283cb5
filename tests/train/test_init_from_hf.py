"""``rtdetr-train --init FOLDER``: fine-tuning starts from a transformers ``save_pretrained`` folder.

The run's preset must hold the folder's architecture (the trainer builds the model from ``--preset``), so the
folder here is transformers' r18vd, the smallest official size, trained for two steps at 64 px. Its weights must
be what ``--init`` starts from: every tensor but the class heads (the folder has 80 classes, the data 5) equals
transformers' own, renamed (``hf_reference.official_to_hf_state_dict`` maps them back independently).
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hf_folders import official_hf_config, tiny_hf_config  # noqa: E402
from transformers import RTDetrV2ForObjectDetection  # noqa: E402

from benchmarks.hf_reference import official_to_hf_state_dict  # noqa: E402
from rtdetr_deploy import load_model  # noqa: E402
from rtdetr_deploy.cli.train import main  # noqa: E402
from rtdetr_deploy.models import build_model, get_preset  # noqa: E402
from rtdetr_deploy.train.checkpoint import load_init_weights  # noqa: E402


@pytest.fixture(scope="module")
def r18vd_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """transformers' r18vd (80 classes, transformers' random initialisation), saved; and its in-memory weights."""
    torch.manual_seed(0)
    model = RTDetrV2ForObjectDetection(official_hf_config("r18vd"))
    folder = tmp_path_factory.mktemp("hf") / "rtdetr_v2_r18vd"
    model.save_pretrained(folder)
    return folder, model.state_dict()


def test_init_loads_every_tensor_but_the_class_heads(r18vd_folder) -> None:
    folder, hf_weights = r18vd_folder
    model = build_model(get_preset("r18vd").with_eval_size((128, 128)), num_classes=5)
    summary = load_init_weights(model, folder)
    assert "class heads re-initialised (80 -> 5 classes)" in summary
    loaded = official_to_hf_state_dict(model.state_dict())
    class_dependent = ("class_embed", "enc_score_head", "denoising_class_embed")
    compared = [k for k in hf_weights if not any(c in k for c in class_dependent)]
    assert len(compared) > 400 and set(compared) <= set(loaded)
    different = [k for k in compared if not torch.equal(loaded[k], hf_weights[k])]
    assert not different, different[:5]


def test_rtdetr_train_init_fine_tunes_from_a_folder(r18vd_folder, tiny_data: Path, tmp_path: Path, capsys) -> None:
    folder, _ = r18vd_folder
    out = tmp_path / "run"
    args = ["--data", str(tiny_data), "--preset", "r18vd", "--init", str(folder), "--imgsz", "128", "--epochs", "1"]
    args += ["--batch", "4", "--workers", "0", "--threads", "1", "--device", "cpu", "--out", str(out)]
    args += ["--warmup-steps", "2", "--ema-warmups", "2", "--no-multiscale", "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err
    out_text = capsys.readouterr().out
    assert f"tensors from {folder}; class heads re-initialised (80 -> 5 classes)" in out_text, out_text
    trained = load_model(out / "last.pth")
    assert trained.config.name == "r18vd" and trained.num_classes == 5
    start = build_model(get_preset("r18vd").with_eval_size((128, 128)), num_classes=5)
    load_init_weights(start, folder)
    # the backbone started from the folder and moved with training (two steps of AdamW)
    key = "backbone.conv1.conv1_1.conv.weight"
    initial, after = start.state_dict()[key], trained.state_dict()[key]
    assert 0 < (initial - after).abs().max() < 0.01


def test_init_from_a_folder_of_another_architecture_is_one_line(tiny_data: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "small"
    RTDetrV2ForObjectDetection(tiny_hf_config()).save_pretrained(folder)
    capsys.readouterr()  # transformers' progress bar
    args = ["--data", str(tiny_data), "--preset", "r18vd", "--init", str(folder), "--imgsz", "128", "--epochs", "1"]
    args += ["--workers", "0", "--device", "cpu", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rtdetr-train: error: "), "\n".join(err)
    assert "weights do not fit preset 'r18vd'" in err[0] and "they look like preset 'custom-r18vd'" in err[0]
    (tmp_path / "empty").mkdir()
    assert main([*args[:5], str(tmp_path / "empty"), *args[6:]]) == 2
    assert "has no config.json" in capsys.readouterr().err
