"""LiteRT for real: the committed ``tests/data/tiny_synthetic.tflite`` (made by ``tools/make_litert_test_model.py``
with onnx2tf from the shipped tiny's default export) runs in ``ai-edge-litert`` through the ``Detector`` and finds
what ONNX Runtime finds with the same checkpoint exported by the code under test: every top-20 detection of ONNX
Runtime has a LiteRT detection of the same class, score within 1e-3 and every box coordinate within 1 px, on
generated scenes and on the shared photographs. The comparison is plain numpy."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import assert_top_detections_agree, detections_of, scenes_and_photos

pytest.importorskip("ai_edge_litert", reason="needs the LiteRT runtime: pip install 'rtdetr-deploy[litert]'")
pytest.importorskip("torch")

from rtdetr_deploy.export.config import ExportConfig  # noqa: E402
from rtdetr_deploy.export.pipeline import export  # noqa: E402

REPO = Path(__file__).parents[2]
WEIGHTS = REPO / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"
TFLITE = REPO / "tests" / "data" / "tiny_synthetic.tflite"
TOP, SCORE_TOL, BOX_TOL_PX = 20, 1e-3, 1.0


def test_committed_tflite_agrees_with_onnxruntime(tmp_path: Path) -> None:
    onnx_file = export(ExportConfig(weights=WEIGHTS, out_dir=tmp_path), verbose=False).onnx
    images = scenes_and_photos()
    reference = detections_of(onnx_file, "onnxruntime", images)
    got = detections_of(TFLITE, "litert", images)
    assert_top_detections_agree(reference, got, top=TOP, score_tol=SCORE_TOL, box_px=BOX_TOL_PX)
