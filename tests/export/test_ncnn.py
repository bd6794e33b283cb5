"""ncnn for real, converted by pnnx: slow, and only where pnnx's interpreter is named by ``RTDETR_NCNN_PYTHON``
(pnnx pins its own torch and lives in a venv of its own)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_top_detections_agree, detections_of

NCNN_PYTHON = os.environ.get("RTDETR_NCNN_PYTHON", "")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not NCNN_PYTHON, reason="pnnx: set RTDETR_NCNN_PYTHON to its interpreter"),
]
WEIGHTS = Path(__file__).parents[2] / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"


def test_ncnn_folder_of_the_trained_tiny_agrees_with_onnxruntime(tmp_path: Path) -> None:
    """The exporter converts, runs and judges the folder (FP32 rules: 1e-3, 1 px); then the folder is run again
    here through the ``Detector`` on other scenes and checked in plain numpy against ONNX Runtime's detections."""
    pytest.importorskip("torch")
    pytest.importorskip("ncnn")
    from rtdetr_deploy.cli.export import main
    from rtdetr_deploy.data.scenes import cluttered_scenes

    assert main([str(WEIGHTS), "-o", str(tmp_path), "--sampling", "bilinear", "--ncnn"]) == 0
    report = json.loads((tmp_path / "tiny_synthetic.verify.json").read_text())["targets"]["ncnn"]
    assert report["passed"] and report["decided"] >= 10 and report["matched"] == 1.0
    folder = tmp_path / "tiny_synthetic.ncnn"
    assert sorted(p.name for p in folder.iterdir()) == [
        "anchors.npy",
        "decoder.ncnn.bin",
        "decoder.ncnn.param",
        "encoder.ncnn.bin",
        "encoder.ncnn.param",
        "model.json",
    ]
    assert np.load(folder / "anchors.npy").dtype == np.float32
    images = cluttered_scenes(3, seed=11)
    reference = detections_of(tmp_path / "tiny_synthetic.onnx", "onnxruntime", images)
    got = detections_of(folder, "ncnn", images)
    assert_top_detections_agree(reference, got, top=20, score_tol=1e-3, box_px=1.0)
