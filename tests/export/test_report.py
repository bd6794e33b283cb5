"""The typed export report: ``*.verify.json`` read back into the same records, written with its schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtdetr_deploy.export.files import ExportFiles
from rtdetr_deploy.export.gates import NOT_DECISIVE, VARIANT_RULES, Tolerances
from rtdetr_deploy.export.report import EXPORT_REPORT_SCHEMA, ExportReport
from rtdetr_deploy.metadata import Preprocessing

# A report as a file holds it, written out by hand: the keys readers of *.verify.json rely on.
VERIFICATION = {
    "images": 4,
    "input_size": [320, 320],
    "topk": 300,
    "preprocessing": {
        "file": {"color": "rgb", "resize": "plain", "scale": 1 / 255, "mean": None, "std": None, "fused": False},
        "model": {"color": "rgb", "resize": "plain", "scale": 1 / 255, "mean": None, "std": None, "fused": False},
    },
    "decisions": {
        "points": 2,
        "compared": 1200,
        "ties": 1,
        "disagreements": 0,
        "first_disagreement": None,
        "per_point": [
            {"where": "query selection", "kind": "selection", "ties": 1, "disagreements": 0},
            {"where": "decoder.0", "kind": "index", "ties": 0, "disagreements": 0},
        ],
    },
    "raw": {"queries": 1200, "within_tolerance": 1.0, "max_logit_delta": 2e-5, "max_box_delta": 1e-6},
    "detections": {
        "rule": NOT_DECISIVE,
        "decided": 0,
        "candidates": 400,
        "matched": None,
        "min_image_matched": None,
        "max_score_delta": 0.0,
        "max_box_delta_px": 0.0,
    },
    "published_equals_probe": True,
    "tolerances": {
        "logits": 1e-3,
        "boxes": 1e-4,
        "scores": 1e-4,
        "box_fraction": 1e-4,
        "min_matched": 0.99,
        "min_decided": 10,
        "index_tie_ulps": 64.0,
        "selection_tol": 1e-4,
    },
    "failures": [],
    "passed": True,
}
IR = {
    "file": "best.openvino-int8.xml",
    "precision": "int8",
    "rule": "decided ranking (score margin 0.05)",
    "detections": {"decided": 40, "candidates": 400, "matched": 0.95, "max_score_delta": 0.03, "max_box_delta_px": 1.5},
    "raw": {
        "encoder_scores": 8000,
        "within_tolerance": 0.9,
        "max_encoder_logit_delta": 0.7,
        "max_sorted_score_delta": 0.02,
    },
    "index_agreement": 0.97,
    "published_equals_probe": True,
    "rules": {
        "margin": 0.05,
        "min_matched": 0.9,
        "raw_logits": 0.5,
        "judge_raw": False,
        "min_kept_ap": 0.8,
        "confidence": 0.5,
    },
    "failures": [],
    "kept_ap": {
        "confidence": 0.5,
        "pseudo_objects": 96,
        "AP": 0.61,
        "AP50": 0.9,
        "duplicates": 0.0,
        "noise_floor": 0.7,
        "noise_levels": 2,
        "relative": 0.61 / 0.7,
        "min_relative": 0.8,
    },
    "passed": True,
    "weights": "best.openvino-int8.bin",
    "openvino": "2025.1.0",
    "quantization": {"subset_size": 3},
}
REPORT = {
    "schema": EXPORT_REPORT_SCHEMA,
    "passed": True,
    "verification": VERIFICATION,
    "op_census": {"Conv": 20, "GatherElements": 6},
    "swap": {
        "top": 100,
        "agreement": 0.5,
        "per_image_agreement": [0.25, 0.75],
        "mean_abs_score_delta": 0.01,
        "max_abs_score_delta": 0.2,
        "max_box_delta_px": 3.0,
        "kept_ap": {"confidence": 0.5, "pseudo_objects": 96, "AP": 0.191, "AP50": 0.4},
        "cost": {"measure": "kept AP", "value": 0.191, "threshold": 0.75, "warning": "these weights were trained"},
    },
    "variants": {},
    "openvino": {"openvino-int8": IR},
    "accuracy": {
        "data": "synthetic",
        "split": "val",
        "images": 20,
        "gates": {
            "fp32": {
                "file": "best.onnx",
                "AP": 0.5,
                "AP50": 0.8,
                "delta_AP": 0.0,
                "allowed_drop": None,
                "accepted": True,
            },
            "openvino-int8": {
                "file": "best.openvino-int8.xml",
                "AP": 0.49,
                "AP50": 0.79,
                "delta_AP": -0.01,
                "allowed_drop": 0.02,
                "accepted": True,
            },
        },
    },
    "metadata": {"preset": "tiny"},
    "timings_s": {"load": 1.5, "trace": 2},
}


def test_a_written_report_reads_back_into_records() -> None:
    report = ExportReport.from_json(json.dumps(REPORT))
    assert report.passed and report.verification.passed
    assert report.verification.input_size == (320, 320)
    assert report.verification.preprocessing.file == Preprocessing()
    assert report.verification.tolerances == Tolerances()
    assert not report.verification.detections.decisive
    assert report.verification.decisions.per_point[1].where == "decoder.0"
    ir = report.openvino["openvino-int8"]
    assert ir.decisive and ir.rules == VARIANT_RULES["int8"]
    assert ir.target == {
        "weights": "best.openvino-int8.bin",
        "openvino": "2025.1.0",
        "quantization": {"subset_size": 3},
    }
    gate = report.accuracy.gates["openvino-int8"]
    assert (gate.ap, gate.delta_ap, gate.metrics["AP50"]) == (0.49, -0.01, 0.79)
    assert report.timings_s == {"load": 1.5, "trace": 2.0}
    assert report.fused is None and report.int8_sensitivity is None
    assert report.all_variants() == {"openvino-int8": ir}
    assert (ir.kept_ap.ap, ir.kept_ap.relative, ir.kept_ap.noise_levels) == (0.61, 0.61 / 0.7, 2)
    assert report.swap.kept_ap.pseudo_objects == 96 and report.swap.kept_ap.noise_floor is None
    assert (report.swap.cost.measure, report.swap.cost.threshold) == ("kept AP", 0.75)
    assert report.swap.cost.bilinear_ap is None and report.refused is None


def test_a_refused_variant_reads_back_and_the_report_has_not_passed() -> None:
    """A variant the export refused (``refusal``): its files and the reason, and ``passed`` false."""
    refused = {"int8-cpu": {"files": ["best.int8-cpu.onnx", "best.int8-cpu.fused.onnx"], "reason": "INT8 keeps AP"}}
    written = {**REPORT, "refused": refused, "passed": False}
    report = ExportReport.from_json(json.dumps(written))
    assert report.refused["int8-cpu"].files == ("best.int8-cpu.onnx", "best.int8-cpu.fused.onnx")
    assert report.refused["int8-cpu"].reason == "INT8 keeps AP"
    assert not report.passed and report.verification.passed
    assert json.loads(report.to_json()) == written


def test_to_json_writes_the_same_keys_and_values() -> None:
    text = ExportReport.from_json(json.dumps(REPORT)).to_json()
    assert json.loads(text) == REPORT
    assert ExportReport.from_json(text) == ExportReport.from_json(json.dumps(REPORT))


def test_optional_sections_are_left_out_and_read_back_as_none() -> None:
    bare = {k: v for k, v in REPORT.items() if k not in ("openvino", "accuracy")}
    report = ExportReport.from_json(json.dumps(bare))
    assert report.openvino is None and report.accuracy is None
    assert "openvino" not in json.loads(report.to_json())


def test_newer_schema_and_missing_fields_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="newer than this version reads"):
        ExportReport.from_json(json.dumps({**REPORT, "schema": EXPORT_REPORT_SCHEMA + 1}))
    with pytest.raises(ValueError, match="swap"):
        ExportReport.from_json(json.dumps({k: v for k, v in REPORT.items() if k != "swap"}))
    path = ExportReport.from_json(json.dumps(REPORT)).write(tmp_path / "best.verify.json")
    assert ExportReport.read(path).verification.decisions.ties == 1


def test_export_files_name_every_file_and_move_together(tmp_path: Path) -> None:
    staged = ExportFiles(
        onnx=tmp_path / "s" / "best.onnx",
        report=tmp_path / "s" / "best.verify.json",
        variants={"fp16": tmp_path / "s" / "best.fp16.onnx"},
        openvino={"openvino-fp32": tmp_path / "s" / "best.openvino-fp32.xml"},
        engine=tmp_path / "s" / "best.fp16.engine",
        engine_sidecar=tmp_path / "s" / "best.fp16.engine.json",
    )
    moved = staged.moved_to(tmp_path / "out")
    assert [path.name for path in moved] == [
        "best.fp16.onnx",
        "best.onnx",
        "best.openvino-fp32.bin",
        "best.openvino-fp32.xml",
        "best.verify.json",
        "best.fp16.engine",
        "best.fp16.engine.json",
    ]
    assert {path.parent for path in moved} == {tmp_path / "out"}
    assert moved.variants["fp16"] == tmp_path / "out" / "best.fp16.onnx"
