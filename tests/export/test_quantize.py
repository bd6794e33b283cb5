"""Q/DQ INT8 for TensorRT and ONNX Runtime: calibration on photos, Q/DQ placement and types, ORT runs it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from helpers import tiny_deploy_onnx  # noqa: E402
from onnx import TensorProto, numpy_helper  # noqa: E402

from rtdetr_deploy.agreement import compare_detections  # noqa: E402
from rtdetr_deploy.export.precision import fp32_islands  # noqa: E402
from rtdetr_deploy.export.quantize import (  # noqa: E402
    INT8_TARGETS,
    ImageCalibrationReader,
    load_calibration_images,
    quantize_int8,
)
from rtdetr_deploy.metadata import ModelMetadata, Preprocessing  # noqa: E402
from rtdetr_deploy.runtime.preprocess import preprocess  # noqa: E402

DATA = Path(__file__).parents[1] / "data"
PHOTOS = [DATA / name for name in ("chelsea.png", "rocket.jpg")]
INPUT_SIZE = (320, 320)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset (random heads and sampling offsets) with the deploy I/O, dynamic batch and metadata."""
    return tiny_deploy_onnx(tmp_path_factory.mktemp("quantize"), input_size=INPUT_SIZE, topk=100)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in PHOTOS]
    assert all(img is not None for img in images), "tests/data photos are missing"
    return images


@pytest.fixture(scope="module")
def quantized(tiny_onnx: Path, photos: list[np.ndarray], tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("int8")
    return {
        "tensorrt": quantize_int8(tiny_onnx, folder / "tiny.int8.trt.onnx", photos, target="tensorrt"),
        # The folder form: tests/data holds the photos beside a README, which is skipped.
        "onnxruntime": quantize_int8(tiny_onnx, folder / "tiny.int8.ort.onnx", DATA, target="onnxruntime"),
    }


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _qdq(model: onnx.ModelProto) -> tuple[list[onnx.NodeProto], list[onnx.NodeProto], dict[str, onnx.TensorProto]]:
    inits = {init.name: init for init in model.graph.initializer}
    quant = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dequant = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    return quant, dequant, inits


def test_tensorrt_target_follows_the_explicit_quantization_pattern(tiny_onnx, quantized):
    """NVIDIA's pattern for TensorRT: symmetric INT8 (zero points 0), float weights behind their own Q/DQ pair,
    per-channel on axis 0 for Conv, a dedicated pair per consumer, and no Q/DQ on Conv/MatMul/Gemm outputs."""
    model = onnx.load(str(quantized["tensorrt"]))
    quant, dequant, inits = _qdq(model)
    assert quant and dequant
    zero_points = [inits[n.input[2]] for n in (*quant, *dequant)]
    assert all(z.data_type == TensorProto.INT8 for z in zero_points), "TensorRT takes INT8 Q/DQ only"
    assert all(not numpy_helper.to_array(z).any() for z in zero_points), "TensorRT needs zero point 0"
    producer = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    for conv in convs:
        weight_dq = producer[conv.input[1]]
        assert weight_dq.op_type == "DequantizeLinear", conv.name
        weight_q = producer[weight_dq.input[0]]
        assert weight_q.op_type == "QuantizeLinear" and inits[weight_q.input[0]].data_type == TensorProto.FLOAT
        axis = next((a.i for a in weight_dq.attribute if a.name == "axis"), 1)
        channels = inits[weight_q.input[0]].dims[0]
        assert axis == 0 and numpy_helper.to_array(inits[weight_dq.input[1]]).size == channels, conv.name
    for dq in dequant:
        quantized_consumers = [c for c in consumers.get(dq.output[0], []) if c.op_type in ("Conv", "MatMul", "Gemm")]
        assert len(quantized_consumers) <= 1, f"{dq.name} is shared by {[c.name for c in quantized_consumers]}"
    outputs_quantized = [
        n.name
        for n in model.graph.node
        if n.op_type in ("Conv", "MatMul", "Gemm")
        and any(c.op_type == "QuantizeLinear" for c in consumers.get(n.output[0], []))
        and not all(
            c.op_type == "QuantizeLinear" and _feeds_only_quantized(c, consumers) for c in consumers[n.output[0]]
        )
    ]
    assert not outputs_quantized, outputs_quantized
    props = {p.key: p.value for p in model.metadata_props}
    assert ModelMetadata.from_props(props).precision == "int8"
    assert json.loads(props["quantization"])["name"] == "tensorrt"


def _feeds_only_quantized(quant: onnx.NodeProto, consumers: dict) -> bool:
    """A QuantizeLinear whose DequantizeLinear feeds only Conv/MatMul/Gemm: the input Q/DQ of the next layer."""
    return all(
        dq.op_type == "DequantizeLinear"
        and all(c.op_type in ("Conv", "MatMul", "Gemm") for c in consumers.get(dq.output[0], []))
        for dq in consumers.get(quant.output[0], [])
    )


def test_a_kept_float_group_has_no_quantized_nodes(tiny_onnx, photos, tmp_path):
    from rtdetr_deploy.export.int8_groups import nodes_in_groups

    path = quantize_int8(tiny_onnx, tmp_path / "keep.onnx", photos, target="onnxruntime", keep_float=["backbone.stem"])
    model = onnx.load(str(path))
    producer = {out: node for node in model.graph.node for out in node.output}
    stem = nodes_in_groups(onnx.load(str(tiny_onnx)), ["backbone.stem"])
    assert len(stem) == 3
    for node in model.graph.node:
        if node.name in stem:
            assert not any(
                producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in node.input
            )
    assert json.loads({p.key: p.value for p in model.metadata_props}["quantization"])["keep_float"] == ["backbone.stem"]
    stage1 = nodes_in_groups(model, ["backbone.stage1"])
    assert stage1 and all(
        any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input)
        for n in model.graph.node
        if n.name in stage1
    ), "the other groups are still quantized"


def test_unknown_group_names_the_valid_ones(tiny_onnx, photos, tmp_path):
    with pytest.raises(ValueError, match=r"unknown INT8 layer group 'backbone\.stem1'.*did you mean 'backbone\.stem'.*"
                       r"valid groups: backbone\.stem, backbone\.stage1"):  # fmt: skip
        quantize_int8(tiny_onnx, tmp_path / "x.onnx", photos, keep_float=["backbone.stem1"])
    with pytest.raises(ValueError, match="unknown calibration method 'median'"):
        quantize_int8(tiny_onnx, tmp_path / "x.onnx", photos, calibration="median")


def test_quantization_leaves_the_fp32_islands_alone(tiny_onnx, quantized):
    islands = fp32_islands(onnx.load(str(tiny_onnx)))
    for path in quantized.values():
        model = onnx.load(str(path))
        producer = {out: node for node in model.graph.node for out in node.output}
        quantized_ops = [node for node in model.graph.node if node.op_type in ("Conv", "MatMul", "Gemm")]
        fed_by_dq = {
            node.name
            for node in quantized_ops
            if any(
                producer.get(name) is not None and producer[name].op_type == "DequantizeLinear" for name in node.input
            )
        }
        assert fed_by_dq, "the backbone and encoder are quantized"
        assert not fed_by_dq & islands, "index arithmetic, box heads and post-processing stay float"


def test_onnxruntime_target_uses_uint8_activations(quantized):
    model = onnx.load(str(quantized["onnxruntime"]))
    quant, dequant, inits = _qdq(model)
    activation_types = {inits[n.input[2]].data_type for n in quant}
    assert activation_types == {TensorProto.UINT8}
    weight_types = {inits[n.input[0]].data_type for n in dequant if n.input[0] in inits}
    assert TensorProto.INT8 in weight_types
    record = json.loads({p.key: p.value for p in model.metadata_props}["quantization"])
    assert (record["name"], record["activations"], record["calibration_images"]) == ("onnxruntime", "uint8", 2)


@pytest.mark.parametrize("target", sorted(INT8_TARGETS))
def test_int8_models_run_in_onnxruntime(tiny_onnx, quantized, photos, target):
    pixels, sizes = preprocess(photos, input_size=INPUT_SIZE, preprocessing=Preprocessing())
    feed = {"images": pixels, "orig_target_sizes": sizes}
    labels, boxes, scores = _session(quantized[target]).run(["labels", "boxes", "scores"], feed)
    assert labels.dtype == np.int64 and labels.shape == (2, 100)
    assert boxes.dtype == np.float32 and boxes.shape == (2, 100, 4)
    assert scores.dtype == np.float32 and scores.shape == (2, 100)
    assert np.isfinite(boxes).all() and np.isfinite(scores).all()
    assert ((labels >= 0) & (labels < 3)).all()
    # Random weights give near-equal scores, so INT8 reorders them: agreement is reported, not asserted.
    reference = _session(tiny_onnx).run(["labels", "boxes", "scores"], feed)
    report = compare_detections(reference, (labels, boxes, scores))
    print(f"{target} INT8 vs FP32 on {len(photos)} photos: {report['matched']:.1%} of top-100 matched")


def test_calibration_reader_feeds_the_runtime_preprocessing(photos):
    reader = ImageCalibrationReader(photos, input_size=(64, 96), batch=3)
    assert len(reader) == 1
    feed = reader.get_next()
    assert feed["images"].shape == (3, 3, 64, 96) and feed["images"].dtype == np.float32
    # The last batch is filled from the start; sizes are (width, height) of the originals.
    expected_sizes = [[img.shape[1], img.shape[0]] for img in (*photos, photos[0])]
    np.testing.assert_array_equal(feed["orig_target_sizes"], expected_sizes)
    assert reader.get_next() is None
    reader.rewind()
    assert reader.get_next() is not None
    resized = cv2.resize(photos[0], (96, 64), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(feed["images"][0], resized[..., ::-1].transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_bad_calibration_input_is_one_clear_error(tiny_onnx, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no readable calibration images in .*empty") as info:
        quantize_int8(tiny_onnx, tmp_path / "out.onnx", empty)
    assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="calibration folder not found"):
        quantize_int8(tiny_onnx, tmp_path / "out.onnx", tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown INT8 target 'tensorrt8'; choose from tensorrt, onnxruntime"):
        quantize_int8(tiny_onnx, tmp_path / "out.onnx", empty, target="tensorrt8")
    with pytest.raises(ValueError, match="BGR uint8"):
        load_calibration_images([np.zeros((8, 8), np.float32)])
    with pytest.raises(ValueError, match="no calibration images given"):
        load_calibration_images([])
    assert not (tmp_path / "out.onnx").exists()


def test_quantize_reports_a_model_without_deploy_inputs(tmp_path, photos):
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    with pytest.raises(ValueError, match="expected inputs 'images' and 'orig_target_sizes'"):
        quantize_int8(onnx.helper.make_model(graph), tmp_path / "out.onnx", photos)
