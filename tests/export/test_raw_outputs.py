"""``--outputs raw``: the graph ends at ``pred_logits [N, Q, C]`` and ``pred_boxes [N, Q, 4]``, records the kind in
its metadata, and the runtime's host top-k gives the same detections as the default graph's in-graph top-k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from rtdetr_deploy.cli.export import build_parser, config_from_args  # noqa: E402
from rtdetr_deploy.data.scenes import cluttered_scenes  # noqa: E402
from rtdetr_deploy.export.config import ExportConfig  # noqa: E402
from rtdetr_deploy.export.pipeline import export  # noqa: E402
from rtdetr_deploy.runtime import Detector  # noqa: E402
from rtdetr_deploy.runtime.onnxruntime_backend import read_onnx_metadata  # noqa: E402

WEIGHTS = Path(__file__).parents[2] / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for kind in ("detections", "raw"):
        config = ExportConfig(weights=WEIGHTS, out_dir=tmp_path_factory.mktemp(kind), outputs=kind, batch=(1, 2, 2))
        result = export(config, verbose=False)
        assert result.report.passed
        out[kind] = result.onnx
    return out


def test_raw_graph_io_and_metadata(graphs: dict[str, Path]) -> None:
    model = onnx.load(str(graphs["raw"]))
    metadata = read_onnx_metadata(graphs["raw"])
    assert metadata.outputs == "raw" and read_onnx_metadata(graphs["detections"]).outputs == "detections"
    assert [i.name for i in model.graph.input] == ["images"]
    shapes = {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    assert shapes == {"pred_logits": ["N", 50, metadata.num_classes], "pred_boxes": ["N", 50, 4]}
    ops = {node.op_type for node in model.graph.node}
    assert "Mod" not in ops, "the label/query split belongs to the host"


def test_raw_graph_gives_the_default_graphs_detections(graphs: dict[str, Path]) -> None:
    images = cluttered_scenes(3, seed=7)
    with Detector(graphs["detections"], conf=0.0) as default, Detector(graphs["raw"], conf=0.0) as raw:
        expected, got = default(images), raw(images)
    for image, (a, b) in enumerate(zip(expected, got, strict=True)):
        assert len(a) == len(b) == read_onnx_metadata(graphs["raw"]).topk, image
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-6)
        np.testing.assert_allclose(a.boxes_xyxy, b.boxes_xyxy, rtol=0, atol=1e-3)


def test_raw_outputs_flag() -> None:
    args = build_parser().parse_args([str(WEIGHTS), "--outputs", "raw", "--gelu", "poly"])
    config = config_from_args(args)
    assert (config.outputs, config.gelu) == ("raw", "poly")
    with pytest.raises(ValueError, match="--outputs raw writes the FP32 ONNX only"):
        ExportConfig(weights=WEIGHTS, out_dir=WEIGHTS.parent, outputs="raw", fp16=True)
    with pytest.raises(ValueError, match="--gelu must be one of erf, poly, tanh"):
        ExportConfig(weights=WEIGHTS, out_dir=WEIGHTS.parent, gelu="fast")
