"""LiteRT for real: the committed ``tests/data/tiny_synthetic.tflite`` (made by ``tools/make_litert_test_model.py``
with onnx2tf from the shipped tiny's default export) runs in ``ai-edge-litert`` through the ``Detector`` and finds
what ONNX Runtime finds with the same checkpoint exported by the code under test: every top-20 detection of ONNX
Runtime has a LiteRT detection of the same class, score within 1e-3 and every box coordinate within 1 px, on
generated scenes and on the shared photographs. The comparison is plain numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import assert_top_detections_agree

pytest.importorskip("ai_edge_litert", reason="needs the LiteRT runtime: pip install 'rtdetr-deploy[litert]'")
pytest.importorskip("torch")

from rtdetr_deploy.data.scenes import cluttered_scenes  # noqa: E402
from rtdetr_deploy.export.config import ExportConfig  # noqa: E402
from rtdetr_deploy.export.pipeline import export  # noqa: E402
from rtdetr_deploy.runtime import Detector  # noqa: E402
from rtdetr_deploy.runtime.sources import read_image  # noqa: E402

REPO = Path(__file__).parents[2]
WEIGHTS = REPO / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"
TFLITE = REPO / "tests" / "data" / "tiny_synthetic.tflite"
PHOTOS = REPO.parent / "shared" / "testdata" / "images"
TOP, SCORE_TOL, BOX_TOL_PX = 20, 1e-3, 1.0


def _images() -> list[np.ndarray]:
    photos = sorted(p for p in PHOTOS.glob("*") if p.suffix.lower() in (".jpg", ".png")) if PHOTOS.is_dir() else []
    return cluttered_scenes(4, seed=3) + [read_image(p)[0] for p in photos]


def _detections(model: Path, backend: str, images: list[np.ndarray]) -> list[tuple[np.ndarray, ...]]:
    with Detector(model, backend=backend, conf=0.0) as detector:
        return [(d.boxes_xyxy, d.scores, d.class_ids) for d in (detector(image) for image in images)]


def test_committed_tflite_agrees_with_onnxruntime(tmp_path: Path) -> None:
    onnx_file = export(ExportConfig(weights=WEIGHTS, out_dir=tmp_path), verbose=False).onnx
    images = _images()
    reference = _detections(onnx_file, "onnxruntime", images)
    got = _detections(TFLITE, "litert", images)
    assert_top_detections_agree(reference, got, top=TOP, score_tol=SCORE_TOL, box_px=BOX_TOL_PX)
