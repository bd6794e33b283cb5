"""rtdetr-train's command line: every bad input ends in one line and exit status 2, and no checkpoint is touched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from rtdetr_deploy.cli.train import main, parse_args  # noqa: E402

FAST = [
    *("--preset", "tiny", "--imgsz", "64", "--batch", "4"),
    *("--workers", "0", "--threads", "1", "--device", "cpu", "--no-progress"),
]


@pytest.fixture(scope="module")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output folder holding last.pth and best.pth of a one-epoch run."""
    out = tmp_path_factory.mktemp("trained")
    torch.set_num_threads(1)
    assert main(["--data", str(tiny_data), "--epochs", "1", "--out", str(out), *FAST]) == 0
    return out


@pytest.fixture
def data_copy(tiny_data: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_data, tmp_path / "data"))


def _run_failing(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rtdetr-train: error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    return err


def _edit_train_json(data: Path, edit) -> None:
    path = data / "annotations" / "instances_train.json"
    coco = json.loads(path.read_text())
    edit(coco)
    path.write_text(json.dumps(coco))


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: shutil.rmtree(d / "images" / "train"), "8 image(s) it lists are not in"),
        (lambda d: shutil.rmtree(d / "images"), "images folder for train not found"),
        (lambda d: (d / "annotations" / "instances_val.json").unlink(), "no val annotations"),
        (lambda d: (d / "annotations" / "instances_train.json").write_text('{"images": [1,'), "invalid JSON"),
        (lambda d: next((d / "images" / "train").glob("*.jpg")).unlink(), "are not in"),
        (lambda d: _edit_train_json(d, lambda c: c["annotations"][0].update(category_id=4)), "category_id 4"),
        (lambda d: _edit_train_json(d, lambda c: c["annotations"][0].update(image_id=999)), "image_id 999"),
        (lambda d: _edit_train_json(d, lambda c: c.update(images=[], annotations=[])), "empty (no images)"),
        (lambda d: _edit_train_json(d, lambda c: c.update(categories=c["categories"][1:])), "not in 'categories'"),
    ],
)
def test_bad_datasets_fail_in_one_line_and_leave_checkpoints_alone(capsys, data_copy, trained, breakage, message):
    before = (trained / "last.pth").read_bytes()
    breakage(data_copy)
    err = _run_failing(capsys, ["--data", str(data_copy), "--out", str(trained), "--overwrite", *FAST])
    assert message in err
    assert (trained / "last.pth").read_bytes() == before


def test_unwritable_output_folder(capsys, tiny_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = _run_failing(capsys, ["--data", str(tiny_data), "--out", str(blocker / "run"), *FAST])
    assert "is not writable" in err


def test_a_new_run_never_replaces_checkpoints_without_overwrite(capsys, tiny_data, trained):
    before = (trained / "last.pth").read_bytes()
    err = _run_failing(capsys, ["--data", str(tiny_data), "--out", str(trained), *FAST])
    assert "already holds" in err and "--resume" in err
    assert (trained / "last.pth").read_bytes() == before


def _altered_checkpoint(trained: Path, tmp_path: Path, edit) -> Path:
    state = torch.load(trained / "last.pth", map_location="cpu", weights_only=True)
    edit(state)
    path = tmp_path / "altered.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["config"].update(name="r18vd"), "checkpoint of preset 'r18vd', but this run trains 'tiny'"),
        (lambda s: s.update(category_ids=[1, 2, 3, 4, 5]), "checkpoint trained on classes [1:circle"),
        (lambda s: s.update(sampling="discrete"), "use --init to fine-tune with another sampling"),
        (lambda s: s.pop("optimizer"), "holds no training state"),
    ],
)
def test_resume_refuses_checkpoints_of_another_run(capsys, tiny_data, trained, tmp_path, edit, message):
    before = (trained / "last.pth").read_bytes()
    altered = _altered_checkpoint(trained, tmp_path, edit)
    argv = ["--data", str(tiny_data), "--out", str(trained), "--epochs", "3", "--resume", str(altered), *FAST]
    assert message in _run_failing(capsys, argv)
    assert (trained / "last.pth").read_bytes() == before


def test_resume_bare_continues_the_last_checkpoint_and_stops_when_done(capsys, tiny_data, trained, tmp_path):
    out = Path(shutil.copytree(trained, tmp_path / "copy"))
    err = _run_failing(capsys, ["--data", str(tiny_data), "--out", str(out), "--epochs", "1", "--resume", *FAST])
    assert "already trained 1 of 1 epochs" in err
    assert main(["--data", str(tiny_data), "--out", str(out), "--epochs", "2", "--resume", *FAST]) == 0
    assert "resuming" in capsys.readouterr().out
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    missing = tmp_path / "nowhere"
    err = _run_failing(capsys, ["--data", str(tiny_data), "--out", str(missing), "--resume", *FAST])
    assert "checkpoint not found" in err


def test_bad_flags_are_rejected(capsys, tiny_data, tmp_path):
    err = _run_failing(capsys, ["--data", str(tiny_data), "--out", str(tmp_path), "--epochs", "0", *FAST])
    assert "epochs must be at least 1" in err
    with pytest.raises(SystemExit):
        parse_args(["--imgsz", "big"])
    assert parse_args(["--imgsz", "384,640"]).imgsz == (384, 640)
    assert parse_args(["--resume"]).resume == ""


def test_an_undecodable_image_fails_in_one_line_from_a_loader_worker(capsys, data_copy, tmp_path):
    next((data_copy / "images" / "train").glob("*.jpg")).write_bytes(b"not a jpeg")
    argv = ["--data", str(data_copy), "--out", str(tmp_path / "out"), "--epochs", "1", *FAST, "--workers", "1"]
    assert "cannot decode image" in _run_failing(capsys, argv)
