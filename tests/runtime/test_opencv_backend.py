"""The OpenCV DNN backend against ONNX Runtime on the default export: OpenCV 5 (the project's own) in process, and
OpenCV 4 for real in a throwaway environment of its own (``opencv-python-headless<5`` installed once into the
pytest cache, or the interpreter named by ``RTDETR_OPENCV4_PYTHON``). The comparison is plain numpy: each of
ONNX Runtime's top-20 detections per image must have an OpenCV detection of the same class with the score within
1e-3 and every box coordinate within 1 px."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_top_detections_agree

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

from rtdetr_deploy.data.scenes import cluttered_scenes  # noqa: E402
from rtdetr_deploy.errors import BackendError  # noqa: E402
from rtdetr_deploy.export.config import ExportConfig  # noqa: E402
from rtdetr_deploy.export.pipeline import export  # noqa: E402
from rtdetr_deploy.runtime import Detector  # noqa: E402
from rtdetr_deploy.runtime.opencv_backend import OpenCvBackend  # noqa: E402

REPO = Path(__file__).parents[2]
WEIGHTS = REPO / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"
TOP = 20
SCORE_TOL = 1e-3
BOX_TOL_PX = 1.0

# Runs in the OpenCV 4 interpreter: our Detector on the opencv backend; the top detections go out as JSON.
_OPENCV4_SCRIPT = """
import json, sys
import cv2
from rtdetr_deploy.data.scenes import cluttered_scenes
from rtdetr_deploy.runtime import Detector
model, count, seed, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with Detector(model, backend="opencv", conf=0.0) as detector:
    results = detector(cluttered_scenes(count, seed=seed))
print(json.dumps({"version": cv2.__version__, "detections": [
    [d.boxes_xyxy[:top].tolist(), d.scores[:top].tolist(), d.class_ids[:top].tolist()] for d in results]}))
"""


def _top(results: list) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [(d.boxes_xyxy[: TOP + 5], d.scores[: TOP + 5], d.class_ids[: TOP + 5]) for d in results]


def _assert_agree(reference: list, other: list) -> None:
    """Every top-20 reference detection has a counterpart (same class, score within 1e-3, box within 1 px)."""
    assert_top_detections_agree(reference, other, top=TOP, score_tol=SCORE_TOL, box_px=BOX_TOL_PX)


def _export(weights: Path, out: Path, **options: object) -> Path:
    return export(ExportConfig(weights=weights, out_dir=out, **options), verbose=False).onnx


@pytest.fixture(scope="module")
def tiny_trained_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(WEIGHTS, tmp_path_factory.mktemp("opencv-tiny"))


@pytest.fixture(scope="module")
def tiny_trained_raw_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(WEIGHTS, tmp_path_factory.mktemp("opencv-tiny-raw"), outputs="raw")


@pytest.fixture(scope="session")
def opencv4_python(request: pytest.FixtureRequest) -> Path:
    """An interpreter with OpenCV 4.x, numpy and onnx (and nothing of ours installed): ``RTDETR_OPENCV4_PYTHON``,
    or a venv created once in the pytest cache with ``pip install 'opencv-python-headless<5' numpy onnx``."""
    named = os.environ.get("RTDETR_OPENCV4_PYTHON")
    if named:
        return Path(named)
    folder = Path(request.config.cache.mkdir("opencv4-venv"))
    python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    ready = folder / "installed"
    if not ready.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(folder)
        pip = [str(python), "-m", "pip", "install", "-q", "opencv-python-headless<5", "numpy", "onnx"]
        done = subprocess.run(pip, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"pip could not install opencv-python-headless<5 (no package registry?): {done.stderr[-300:]}")
        ready.write_text("opencv-python-headless<5 numpy onnx\n")
    return python


def _run_opencv4(python: Path, model: Path, *, count: int, seed: int) -> dict:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [str(python), "-c", _OPENCV4_SCRIPT, str(model), str(count), str(seed), str(TOP + 5)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=environment, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("graph", ["detections", "raw"])
def test_opencv5_agrees_with_onnxruntime(graph: str, tiny_trained_onnx: Path, tiny_trained_raw_onnx: Path) -> None:
    model = tiny_trained_onnx if graph == "detections" else tiny_trained_raw_onnx
    images = cluttered_scenes(3, seed=11)
    with (
        Detector(model, backend="onnxruntime", conf=0.0) as reference,
        Detector(model, backend="opencv", conf=0.0) as opencv,
    ):
        assert opencv.backend.description.startswith(f"OpenCV {cv2.__version__}")
        _assert_agree(_top(reference(images)), _top(opencv(images)))


def test_opencv4_agrees_with_onnxruntime(opencv4_python: Path, tiny_trained_onnx: Path) -> None:
    result = _run_opencv4(opencv4_python, tiny_trained_onnx, count=3, seed=11)
    assert result["version"].startswith("4."), result["version"]
    with Detector(tiny_trained_onnx, backend="onnxruntime", conf=0.0) as reference:
        _assert_agree(_top(reference(cluttered_scenes(3, seed=11))), result["detections"])


@pytest.mark.slow
def test_random_r18_on_opencv4_and_opencv5(opencv4_python: Path, tmp_path: Path) -> None:
    """A random-weight official-layout R18 (preset r18vd, 640 px, random heads so scores differ)."""
    import torch
    from helpers import randomize_heads

    from rtdetr_deploy.models import build_model, get_preset, save_model

    torch.manual_seed(0)
    model = build_model(get_preset("r18vd"), num_classes=80)
    randomize_heads(model, std=0.02)
    weights = save_model(
        model, tmp_path / "r18.pth", class_names=[f"c{i}" for i in range(80)], category_ids=list(range(80))
    )
    onnx_path = _export(weights, tmp_path / "out")
    images = cluttered_scenes(2, seed=5)
    with Detector(onnx_path, backend="onnxruntime", conf=0.0) as reference:
        expected = _top(reference(images))
    with Detector(onnx_path, backend="opencv", conf=0.0) as opencv:
        _assert_agree(expected, _top(opencv(images)))
    _assert_agree(expected, _run_opencv4(opencv4_python, onnx_path, count=2, seed=5)["detections"])


def test_bad_inputs_are_one_line_errors(tiny_trained_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"runs ONNX files written by rtdetr-export, not tiny_synthetic\.pth"):
        OpenCvBackend.from_path(WEIGHTS)
    with pytest.raises(ValueError, match="CPU only"):
        OpenCvBackend.from_path(tiny_trained_onnx, device="cuda:0")
    monkeypatch.setattr(cv2, "__version__", "3.4.16")
    with pytest.raises(BackendError, match=r"needs OpenCV 4\.\d+ or newer, found 3\.4\.16: pip install -U"):
        OpenCvBackend.from_path(tiny_trained_onnx)
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(BackendError, match="needs OpenCV: pip install opencv-python-headless"):
        OpenCvBackend.from_path(tiny_trained_onnx)


def test_cli_wrong_file_is_one_line(tmp_path: Path) -> None:
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_text("not a model")
    image = tmp_path / "image.png"
    cv2.imwrite(str(image), cluttered_scenes(1, seed=0)[0])
    done = subprocess.run(
        [sys.executable, "-m", "rtdetr_deploy.infer", str(image), "--model", str(not_onnx), "--backend", "opencv"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("rtdetr-infer: error: "), done.stderr
    assert "not a valid ONNX model" in lines[0]
