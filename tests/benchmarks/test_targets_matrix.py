"""The target matrix's own arithmetic (benchmarks/targets.py): AP of raw deploy outputs on a hand-made COCO set,
and the table rendered from a hand-made report."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("faster_coco_eval")

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "targets.py"
_spec = importlib.util.spec_from_file_location("benchmark_targets", _PATH)
targets = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = targets
_spec.loader.exec_module(targets)


def _data() -> types.SimpleNamespace:
    """Two images, one box each: category 7 at [10, 20, 30, 40] (xywh), category 3 at [50, 50, 20, 10]; only
    what the matrix reads (``.coco.images`` ids and the ``.coco.coco`` dict)."""
    coco = {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 20, 30, 40], "area": 1200, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [50, 50, 20, 10], "area": 200, "iscrowd": 0},
        ],
        "categories": [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}],
    }
    images = [types.SimpleNamespace(id=1), types.SimpleNamespace(id=2)]
    return types.SimpleNamespace(coco=types.SimpleNamespace(images=images, coco=coco))


def test_ap_of_exact_outputs_is_one_and_of_wrong_labels_zero() -> None:
    metadata = types.SimpleNamespace(category_ids=(3, 7))
    outputs = {
        "labels": np.array([[1], [0]]),
        "boxes": np.array([[[10, 20, 40, 60]], [[50, 50, 70, 60]]], np.float32),
        "scores": np.array([[0.9], [0.8]], np.float32),
    }
    assert targets._ap_of_outputs(outputs, _data(), metadata) == pytest.approx(1.0)
    swapped = {**outputs, "labels": np.array([[0], [1]])}
    assert targets._ap_of_outputs(swapped, _data(), metadata) == pytest.approx(0.0)


def test_markdown_has_one_row_per_engine_and_the_machine() -> None:
    device = {"cpu": {"model": "Test CPU", "physical_cores": 2, "simd": ["avx2"]}, "versions": {}}
    rows = [
        {"target": "onnxruntime", "converts": True, "runs": True, "precision": "fp32", "AP": 0.5, "dAP": 0.0},
        {"target": "litert", "converts": False, "runs": False, "error": "onnx2tf failed"},
    ]
    report = {
        "command": "python benchmarks/targets.py",
        "device": device,
        "seconds": 3.0,
        "cases": [{"model": "tiny", "sampling": "discrete", "rows": rows}],
    }
    text = targets._markdown(report)
    assert "Test CPU" in text and "| tiny | discrete | litert | - | no | no |" in text and "onnx2tf failed" in text
    assert "| tiny | discrete | onnxruntime | fp32 | yes | yes | - | - | - | - | 0.5000 | +0.0000 | - |" in text


def test_nothing_found_again_shows_no_difference() -> None:
    row = {"target": "litert", "converts": True, "runs": True, "decided": 80, "matched": 0.0, "max_score_delta": 0.0}
    assert targets._cell(row, "matched") == "0%" and targets._cell(row, "max_score_delta") == "-"
