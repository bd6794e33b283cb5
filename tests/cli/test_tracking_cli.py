"""``rtdetr-infer --track/--mot/--slice`` and ``rtdetr-eval --track``: one-line refusals of bad input (exit 2) and a
tracked run on a sequence that writes MOT rows and track ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rtdetr_deploy.cli.eval import main as eval_main
from rtdetr_deploy.cli.infer import main
from rtdetr_deploy.data.tracking import TrackingSequenceConfig, generate_tracking_sequence

DATA_DIR = Path(__file__).parents[1] / "data"

# trackers and supervision without opencv-python, installed for the session if missing (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("track_packages")


def _one_error_line(capsys: pytest.CaptureFixture[str], prog: str = "rtdetr-infer") -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), lines
    return lines[0]


def test_track_on_unrelated_images_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(DATA_DIR), "--track", "bytetrack", "--model", "unused.onnx"]) == 2
    assert "--track needs consecutive frames" in _one_error_line(capsys)


def test_unknown_tracker_lists_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(DATA_DIR / "rocket.jpg"), "--track", "deepsort"]) == 2
    assert "choose from bytetrack, ocsort, botsort, sort" in _one_error_line(capsys)


@pytest.mark.parametrize("overlap", ["1", "-0.5", "1.5"])
def test_overlap_outside_zero_one_is_refused(capsys: pytest.CaptureFixture[str], overlap: str) -> None:
    assert main([str(DATA_DIR / "rocket.jpg"), "--slice", "64,64", "--overlap", overlap]) == 2
    assert "--overlap must lie in [0, 1)" in _one_error_line(capsys)


def test_thresholds_out_of_order_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(DATA_DIR / "rocket.jpg"), "--track", "sort", "--track-thresholds", "0.6,0.2,0.8"]) == 2
    assert "low <= high <= new-track" in _one_error_line(capsys)


def test_mot_without_track_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main([str(DATA_DIR / "rocket.jpg"), "--mot", str(tmp_path / "t.txt")]) == 2
    assert "--mot needs --track" in _one_error_line(capsys)


def test_slice_larger_than_the_image_is_refused(capsys: pytest.CaptureFixture[str], tiny_onnx: Path) -> None:
    pytest.importorskip("supervision", reason="needs the supervision package (the [track] extra)")
    assert main([str(DATA_DIR / "chelsea.png"), "--model", str(tiny_onnx), "--slice", "2000,2000"]) == 2
    assert "is larger than the" in _one_error_line(capsys)


def test_tracked_run_on_a_sequence_writes_mot_rows_and_track_ids(tmp_path: Path, tiny_onnx: Path) -> None:
    pytest.importorskip("trackers", reason="needs the trackers package (the [track] extra)")
    seq = generate_tracking_sequence(tmp_path, "seq", TrackingSequenceConfig(frames=6, objects=2, size_hw=(96, 128)))
    mot, results = tmp_path / "tracks.txt", tmp_path / "results.json"
    args = [str(seq), "--model", str(tiny_onnx), "--track", "sort", "--mot", str(mot), "--json", str(results)]
    # The random-weights test model scores below the measured thresholds: take every box.
    assert main([*args, "--track-thresholds", "0,0,0", "--batch", "4"]) == 0
    rows = np.loadtxt(mot, delimiter=",", ndmin=2)
    entries = json.loads(results.read_text())
    assert len(rows) > 0 and len(entries) == len(rows)
    assert sorted(e["track_id"] for e in entries) == sorted(rows[:, 1].astype(int).tolist())
    assert all(entry["track_id"] >= 1 for entry in entries)
    assert set(rows[:, 0].astype(int)) <= set(range(1, 7))


def test_eval_track_needs_existing_sequences(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    assert eval_main([str(model), "--track", str(tmp_path / "missing")]) == 2
    assert "sequence folder not found" in _one_error_line(capsys, "rtdetr-eval")


def test_eval_track_reports_every_tracker(capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_onnx: Path) -> None:
    pytest.importorskip("trackers", reason="needs the trackers package (the [track] extra)")
    seq = generate_tracking_sequence(tmp_path, "seq", TrackingSequenceConfig(frames=5, objects=2, size_hw=(96, 128)))
    table = tmp_path / "track.md"
    args = [str(tiny_onnx), "--track", str(seq), "--track-thresholds", "0,0,0", "--markdown", str(table)]
    assert eval_main(args) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| seq |")]
    assert [row.split("|")[2].strip() for row in rows] == ["bytetrack", "ocsort", "botsort", "sort"]
    assert table.read_text().count("| seq |") == 4


def test_eval_slice_reports_whole_and_sliced(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_onnx: Path
) -> None:
    pytest.importorskip("supervision", reason="needs the supervision package (the [track] extra)")
    from rtdetr_deploy.data.small_objects import SmallObjectsConfig, generate_small_objects

    # The test model's classes (ids 1, 5, 9) are not the shapes': build a one-image split with its categories.
    root = generate_small_objects(tmp_path / "small", SmallObjectsConfig(num_images=1, image_size=256, objects=(2, 3)))
    coco_file = root / "annotations" / "instances_val.json"
    coco = json.loads(coco_file.read_text())
    coco["categories"] = [{"id": i, "name": n} for i, n in zip((1, 5, 9), ("a", "b", "c"), strict=True)]
    for ann in coco["annotations"]:
        ann["category_id"] = 1
    coco_file.write_text(json.dumps(coco))
    assert eval_main([str(tiny_onnx), "--slice", "128,128", "--data", str(root)]) == 0
    out = capsys.readouterr().out
    assert "| whole image |" in out and "| sliced 128x128, overlap 0.2 |" in out and "| gain |" in out
