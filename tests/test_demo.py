"""rtdetr-demo runs the whole chain on a tiny budget, and every file it names is what it says."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("torch")
pytest.importorskip("faster_coco_eval")
cv2 = pytest.importorskip("cv2")
onnx = pytest.importorskip("onnx")

from rtdetr_deploy.demo import main  # noqa: E402


@pytest.mark.slow
def test_demo_chain_on_a_small_budget(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["--out", str(out), "--minutes", "0.3", "--discrete-minutes", "0.1", "--train-images", "32"]) == 0
    text = capsys.readouterr().out
    assert "Produced:" in text
    ap, ap50 = (float(v) for v in re.search(r"AP / AP50\s+([\d.]+) / ([\d.]+)", text).groups())
    assert 0.0 <= ap <= ap50 <= 1.0

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
