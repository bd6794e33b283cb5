"""rtdetr-export --decoder-layers / --queries: the graph, its metadata and report, and out-of-range values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from rtdetr_deploy.cli.export import main  # noqa: E402
from rtdetr_deploy.metadata import ModelMetadata  # noqa: E402

TINY = Path(__file__).parents[2] / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"


def test_export_with_one_layer_and_fewer_queries(tmp_path, capsys):
    argv = [str(TINY), "-o", str(tmp_path), "--sampling", "bilinear", "--decoder-layers", "1", "--queries", "20"]
    assert main(argv + ["--topk", "30"]) == 0
    capsys.readouterr()
    path = tmp_path / "tiny_synthetic.onnx"
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    metadata = ModelMetadata.from_props(props)
    assert (metadata.decoder_layers, metadata.queries, metadata.topk) == (1, 20, 30)
    report = json.loads(path.with_name("tiny_synthetic.verify.json").read_text())
    assert report["speed_knobs"]["decoder_layers"] == 1 and report["speed_knobs"]["trained_decoder_layers"] == 2
    assert report["speed_knobs"]["queries"] == 20 and report["speed_knobs"]["trained_queries"] == 50
    assert report["verification"]["passed"]
    # The graph's outputs come from layer 1's head: compare with the PyTorch model told the same.
    from rtdetr_deploy.models import load_model

    model = load_model(TINY, sampling="bilinear").set_speed_knobs(decoder_layers=1, queries=20)
    images = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    sizes = np.array([[256, 256]], dtype=np.int64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores = session.run(["scores"], {"images": images, "orig_target_sizes": sizes})[0]
    with torch.no_grad():
        logits = model(torch.from_numpy(images))["pred_logits"]
    expected = torch.sigmoid(logits).flatten(1).topk(30).values.numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-4)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--decoder-layers", "3"], "decoder layers must lie in 1..2"),
        (["--queries", "60"], "queries must lie in 1..50"),
    ],
)
def test_out_of_range_exits_2_with_one_line(tmp_path, capsys, flags, message):
    assert main([str(TINY), "-o", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rtdetr-export: error:") and message in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []
