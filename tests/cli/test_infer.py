"""``python -m rtdetr_deploy.infer`` end to end: video, images, streams, interruption and every bad input."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import video_facts

from rtdetr_deploy.cli.infer import main

DATA_DIR = Path(__file__).parents[1] / "data"
COCO_KEYS = {"image_id", "category_id", "bbox", "score"}


def _write_video(path: Path, *, frames: int, size: tuple[int, int], fps: float, fourcc: str = "mp4v") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, size)
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    for i in range(frames):
        frame = background.copy()
        cv2.circle(frame, (10 + (i * 4) % (size[0] - 20), size[1] // 2), 8, (0, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def _check_coco(path: Path, *, image_ids: set[int], category_ids: set[int]) -> list[dict]:
    results = json.loads(path.read_text())
    assert isinstance(results, list) and results
    for entry in results:
        assert set(entry) == COCO_KEYS
        assert entry["image_id"] in image_ids and entry["category_id"] in category_ids
        x, y, w, h = entry["bbox"]
        assert w >= 0 and h >= 0 and 0 <= entry["score"] <= 1
    return results


def test_video_end_to_end(tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clip = _write_video(tmp_path / "clip.mp4", frames=20, size=(160, 96), fps=15.0)
    out, results = tmp_path / "out", tmp_path / "r.json"
    rc = main([str(clip), "--model", str(tiny_onnx), "--save", str(out), "--json", str(results), "--conf", "0.3"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert video_facts(out / "clip.mp4") == (20, 15.0, (160, 96))
    entries = _check_coco(results, image_ids=set(range(20)), category_ids={1, 5, 9})
    assert {e["image_id"] for e in entries} == set(range(20))
    assert min(e["score"] for e in entries) >= 0.3
    assert "done: 20 frames" in captured.out and "FPS" in captured.out
    for stage in ("decode", "preprocess", "inference", "postprocess", "draw/write"):
        assert stage in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4"]


def test_folder_of_images_with_batches_and_classes(tiny_onnx: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name in ("chelsea.png", "rocket.jpg"):
        shutil.copy(DATA_DIR / name, images / name)
    shutil.copy(DATA_DIR / "rocket.jpg", images / "rocket2.jpg")
    out, results = tmp_path / "out", tmp_path / "r.json"
    args = [str(images), "--model", str(tiny_onnx), "--save", str(out), "--json", str(results), "--batch", "2"]
    assert main([*args, "--classes", "circle", "2", "--conf", "0"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["chelsea.png", "rocket.jpg", "rocket2.jpg"]
    for name in ("chelsea.png", "rocket.jpg"):
        assert cv2.imread(str(out / name)).shape == cv2.imread(str(images / name)).shape
    entries = _check_coco(results, image_ids={0, 1, 2}, category_ids={1, 9})
    assert {e["image_id"] for e in entries} == {0, 1, 2}


def test_skipped_files_warn_and_the_run_goes_on(tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shutil.copy(DATA_DIR / "rocket.jpg", tmp_path / "rocket.jpg")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    results = tmp_path / "out" / "r.json"
    assert main([str(tmp_path), "--model", str(tiny_onnx), "--json", str(results)]) == 0
    err = capsys.readouterr().err
    assert "warning: skipping 1 non-image files" in err and "warning: skipping" in err and "broken.jpg" in err
    assert "Traceback" not in err
    assert json.loads(results.read_text())


def test_video_that_stops_decoding_keeps_its_frames(
    tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    clip = _write_video(tmp_path / "clip.avi", frames=30, size=(96, 64), fps=10.0, fourcc="MJPG")
    clip.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    out, results = tmp_path / "out", tmp_path / "r.json"
    assert main([str(clip), "--model", str(tiny_onnx), "--save", str(out), "--json", str(results)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "decoding stopped at frame" in err
    frames, fps, size = video_facts(out / "clip.mp4")
    assert 0 < frames < 30 and fps == 10.0 and size == (96, 64)
    assert max(e["image_id"] for e in json.loads(results.read_text())) == frames - 1


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base-class signature
        pass


def test_http_stream_on_loopback(tiny_onnx: Path, tmp_path: Path) -> None:
    _write_video(tmp_path / "live.mp4", frames=8, size=(96, 64), fps=8.0)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/live.mp4"
        assert main([url, "--model", str(tiny_onnx), "--save", str(tmp_path / "out")]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert video_facts(tmp_path / "out" / "live.mp4") == (8, 8.0, (96, 64))


def _bad_inputs(tmp_path: Path, tiny_onnx: Path) -> dict[str, tuple[list[str], str]]:
    image = str(DATA_DIR / "rocket.jpg")
    empty = tmp_path / "empty"
    empty.mkdir()
    text_model = tmp_path / "model.txt"
    text_model.write_text("x")
    broken_onnx = tmp_path / "broken.onnx"
    broken_onnx.write_bytes(os.urandom(64))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 64)
    model = ["--model", str(tiny_onnx)]
    return {
        "missing source": ([str(tmp_path / "nope.mp4"), *model], "source not found"),
        "empty folder": ([str(empty), *model], "no images in folder"),
        "corrupt image": ([str(corrupt), *model], "cannot read image"),
        "missing model": ([image, "--model", str(tmp_path / "nope.onnx")], "model not found"),
        "wrong model kind": ([image, "--model", str(text_model)], "cannot tell the backend"),
        "corrupt onnx": ([image, "--model", str(broken_onnx)], "not a valid ONNX model"),
        "no model, offline": ([image], "default model is not available"),
        "bad conf": ([image, *model, "--conf", "3"], "conf must be"),
        "batch too large": ([image, *model, "--batch", "8"], "batch limit 4"),
        "unknown class": ([image, *model, "--classes", "dog"], "unknown class 'dog'"),
        "engine on cpu": ([image, "--model", str(engine), "--device", "cpu"], "CUDA GPUs only"),
        "show without GUI": ([image, *model, "--show"], "--show needs OpenCV with GUI support"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing source",
        "empty folder",
        "corrupt image",
        "missing model",
        "wrong model kind",
        "corrupt onnx",
        "no model, offline",
        "bad conf",
        "batch too large",
        "unknown class",
        "engine on cpu",
        "show without GUI",
    ],
)
def test_bad_input_is_one_line(
    case: str, tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline_default_model(tmp_path, monkeypatch)
    argv, message = _bad_inputs(tmp_path, tiny_onnx)[case]
    if case == "show without GUI" and _has_gui():
        pytest.skip("this OpenCV has GUI support")
    # Bad input is exit 2; a download that fails is a failure during the work (exit 1).
    assert main(argv) == (1 if case == "no model, offline" else 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rtdetr-infer: error: ") and message in err[0], err


def _offline_default_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the default model at a closed loopback port (no network here) and the cache at tmp_path."""
    from rtdetr_deploy import zoo

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = dataclasses.replace(zoo.RTDETRV2_S_COCO, url=f"http://127.0.0.1:{port}/weights.pth")
    monkeypatch.setattr(zoo, "DEFAULT_MODEL", spec)
    monkeypatch.setenv("RTDETR_DEPLOY_CACHE", str(tmp_path / "cache"))


def _has_gui() -> bool:
    return "GUI:                           NONE" not in cv2.getBuildInformation()


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture) -> None:
    assert main([]) == 2
    assert main(["x.jpg", "--batch", "two"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("rtdetr-infer: error: ") for line in lines), lines
    assert main(["--help"]) == 0


def test_ctrl_c_leaves_a_playable_video_and_the_json_so_far(tiny_onnx: Path, tmp_path: Path) -> None:
    clip = _write_video(tmp_path / "long.mp4", frames=400, size=(128, 96), fps=25.0)
    out, results = tmp_path / "out", tmp_path / "r.json"
    cmd = [sys.executable, "-m", "rtdetr_deploy.infer", str(clip), "--model", str(tiny_onnx)]
    proc = subprocess.Popen(
        [*cmd, "--save", str(out), "--json", str(results)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().startswith("model "), "the run did not start"
        # Wait for the event, frames on disk (the video being encoded grows), not for a time.
        while proc.poll() is None and not any(p.stat().st_size > 0 for p in out.glob(".long.mp4.*")):
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted after" in stdout
    frames, fps, size = video_facts(out / "long.mp4")
    assert 0 < frames < 400 and fps == 25.0 and size == (128, 96)
    ids = {e["image_id"] for e in json.loads(results.read_text())}
    assert ids and max(ids) < frames
    assert sorted(p.name for p in out.iterdir()) == ["long.mp4"]


def test_module_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rtdetr_deploy.infer", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "SOURCE" in proc.stdout.upper()
