"""rtdetr-demo runs the whole chain on a tiny budget, and every file it names is what it says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("faster_coco_eval")
cv2 = pytest.importorskip("cv2")
onnx = pytest.importorskip("onnx")

from rtdetr_deploy.cli.demo import main  # noqa: E402


def test_demo_chain_on_a_small_budget(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["--out", str(out), "--minutes", "0.2", "--discrete-minutes", "0.3", "--train-images", "32"]) == 0
    text = capsys.readouterr().out
    assert "Produced:" in text and "starting from the shipped checkpoint tiny_synthetic.pth" in text
    assert "not met" not in text and "goal" not in text.lower()

    # The accuracy table of every artifact, in the order the chain made them.
    report = json.loads((out / "eval" / "eval.json").read_text())
    models = [(Path(m["model"]).name, m["backend"], m["precision"]) for m in report["models"]]
    assert models == [
        ("best.pth", "torch", "fp32"),
        ("best.onnx", "onnxruntime", "fp32"),
        ("best.fp16.onnx", "onnxruntime", "fp16"),
        ("best.int8-cpu.onnx", "onnxruntime", "int8"),
    ]
    checkpoint, onnx_fp32 = report["models"][0]["AP"], report["models"][1]["AP"]
    # Started from trained weights: a working detector even on this budget (random weights score about 0).
    assert onnx_fp32 > 0.1
    # The checkpoint (discrete sampling, PyTorch) and its ONNX score alike.
    assert abs(checkpoint - onnx_fp32) <= 0.01
    assert "| best.int8-cpu.onnx | onnxruntime | int8 |" in text

    onnx_path = out / "export" / "best.onnx"
    assert "GridSample" not in {n.op_type for n in onnx.load(str(onnx_path)).graph.node}
    assert json.loads((out / "export" / "best.verify.json").read_text())["passed"] is True

    source = cv2.VideoCapture(str(out / "data" / "video.mp4"))
    annotated = cv2.VideoCapture(str(out / "infer" / "video.mp4"))
    source_frames = int(source.get(cv2.CAP_PROP_FRAME_COUNT))
    assert source_frames > 0
    assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == source_frames

    results = json.loads((out / "infer" / "detections.json").read_text())
    assert isinstance(results, list)
    for det in results[:50]:
        assert set(det) >= {"image_id", "category_id", "bbox", "score"}
        assert len(det["bbox"]) == 4
    categories = {
        c["id"] for c in json.loads((out / "data" / "annotations" / "instances_val.json").read_text())["categories"]
    }
    assert {det["category_id"] for det in results} <= categories

    for name in ("contact_sheet.png", "train/training.png", "bench/bench.json", "bench/bench.png"):
        assert (out / name).stat().st_size > 0, name
