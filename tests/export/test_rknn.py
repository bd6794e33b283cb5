"""RKNN for real, in rknn-toolkit2's x86 simulator: slow, and only where its interpreter is named by
``RTDETR_RKNN_PYTHON`` (the toolkit pins old onnx/numpy/torch and lives in a venv of its own)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

RKNN_PYTHON = os.environ.get("RTDETR_RKNN_PYTHON", "")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not RKNN_PYTHON, reason="rknn-toolkit2: set RTDETR_RKNN_PYTHON to its interpreter"),
]
WEIGHTS = Path(__file__).parents[2] / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"


def test_rk3588_fp16_of_the_trained_tiny_agrees_with_onnxruntime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporter builds, simulates and judges the file (0.1 score, 4 px); then the same simulator outputs are
    checked here, in plain numpy, against ONNX Runtime on other inputs. The output folder is given relative (the
    toolkit runs in a folder of its own)."""
    pytest.importorskip("torch")
    import onnxruntime as ort

    from rtdetr_deploy.cli.export import main
    from rtdetr_deploy.export.rknn import build_rknn

    monkeypatch.chdir(tmp_path.parent)
    assert main([str(WEIGHTS), "-o", tmp_path.name, "--sampling", "bilinear", "--rknn", "rk3588"]) == 0
    report = json.loads((tmp_path / "tiny_synthetic.verify.json").read_text())["targets"]["rknn-rk3588-fp16"]
    assert report["passed"] and (tmp_path / "tiny_synthetic.rk3588-fp16.rknn").stat().st_size > 0
    rng = np.random.default_rng(1)
    pixels = rng.random((2, 3, 256, 256), dtype=np.float32) * 0.3
    pixels[:, :, 80:160, 60:140] = 0.9  # a bright square on dark noise
    sizes = np.array([[256, 256], [512, 384]], np.int64)
    onnx_file = tmp_path / "tiny_synthetic.onnx"
    simulated, _ = build_rknn(
        onnx_file,
        tmp_path / "again.rknn",
        python=Path(RKNN_PYTHON),
        platform="rk3588",
        precision="fp16",
        input_size=(256, 256),
        verify_inputs=(pixels, sizes),
    )
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    for i in range(2):
        labels, boxes, scores = session.run(None, {"images": pixels[i : i + 1], "orig_target_sizes": sizes[i : i + 1]})
        best = int(np.argmax(scores[0]))
        same = np.flatnonzero(simulated["labels"][i] == labels[0, best])
        error = np.abs(simulated["boxes"][i][same] - boxes[0, best]).max(axis=1)
        match = same[int(error.argmin())]
        assert error.min() <= 4.0
        assert abs(float(simulated["scores"][i][match]) - float(scores[0, best])) <= 0.1
