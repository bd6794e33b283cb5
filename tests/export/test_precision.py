"""FP16 with FP32 islands: I/O kept, fragile parts FP32, detections and discrete indices kept on real photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxslim")

from helpers import tiny_deploy_onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from rtdetr_deploy.agreement import compare_detections  # noqa: E402
from rtdetr_deploy.export.precision import (  # noqa: E402
    _to_fp16_array,
    convert_fp16,
    fp32_islands,
)
from rtdetr_deploy.metadata import ModelMetadata, Preprocessing  # noqa: E402
from rtdetr_deploy.runtime.preprocess import preprocess  # noqa: E402

PHOTOS = [Path(__file__).parents[1] / "data" / name for name in ("chelsea.png", "rocket.jpg")]
INPUT_SIZE = (320, 320)
NUM_HEADS = 8  # of the tiny preset's decoder


def build_tiny_onnx(folder: Path, *, input_size: tuple[int, int] = INPUT_SIZE, topk: int = 150) -> dict[str, Path]:
    """The tiny test model, traced (``traced``) and simplified with metadata (``onnx``).

    ``topk`` 150 keeps every (query, class) pair, so the top 100 compared have room to move in rank.
    """
    path = tiny_deploy_onnx(folder, input_size=input_size, topk=topk, keep_unsimplified=True)
    return {"traced": folder / "tiny.unsimplified.onnx", "onnx": path}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("precision")
    paths = build_tiny_onnx(folder)
    paths["fp16"] = convert_fp16(paths["onnx"], folder / "tiny.fp16.onnx")
    return paths


@pytest.fixture(scope="module")
def photos() -> tuple[np.ndarray, np.ndarray]:
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in PHOTOS]
    assert all(img is not None for img in images), "tests/data photos are missing"
    return preprocess(images, input_size=INPUT_SIZE, preprocessing=Preprocessing())


def _session(model: onnx.ModelProto | Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {init.name: init.data_type for init in inferred.graph.initializer}
    for info in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        types[info.name] = info.type.tensor_type.elem_type
    return types


def _index_casts(model: onnx.ModelProto) -> list[str]:
    """Outputs of the discrete operator's float-to-int64 Casts: the flat pixel indices, ``[B*heads, Q*P]``."""
    types = _types(model)
    return [
        node.output[0]
        for node in model.graph.node
        if node.op_type == "Cast"
        and node.attribute[0].i == TensorProto.INT64
        and types.get(node.input[0]) in (TensorProto.FLOAT, TensorProto.FLOAT16)
    ]


def _probe(path: Path) -> onnx.ModelProto:
    """The model with the query-selection indices and the discrete pixel coordinates as extra outputs."""
    model = onnx.load(str(path))
    query_selection = next(node for node in model.graph.node if node.op_type == "TopK")
    for name in [query_selection.output[1], *_index_casts(model)]:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.INT64, None))
    return model


def _coordinates_by_query(outputs: list[np.ndarray]) -> list[np.ndarray]:
    """Pixel indices ``[B, heads, Q, P]`` reordered by query id (FP16 may order near-tied queries differently)."""
    queries = outputs[3]
    order = np.argsort(queries, axis=1, kind="stable")
    aligned = []
    for coords in outputs[4:]:
        coords = coords.reshape(queries.shape[0], NUM_HEADS, queries.shape[1], -1)
        aligned.append(np.stack([coords[b][:, order[b]] for b in range(queries.shape[0])]))
    return aligned


def test_fp16_keeps_io_types_and_metadata(tiny):
    model = onnx.load(str(tiny["fp16"]))
    onnx.checker.check_model(model, full_check=True)
    elem = {info.name: info.type.tensor_type.elem_type for info in (*model.graph.input, *model.graph.output)}
    assert elem == {
        "images": TensorProto.FLOAT,
        "orig_target_sizes": TensorProto.INT64,
        "labels": TensorProto.INT64,
        "boxes": TensorProto.FLOAT,
        "scores": TensorProto.FLOAT,
    }
    props = {p.key: p.value for p in model.metadata_props}
    metadata = ModelMetadata.from_props(props)
    assert metadata.precision == "fp16"
    assert metadata.class_names == ("circle", "square", "triangle")
    assert any(init.data_type == TensorProto.FLOAT16 for init in model.graph.initializer)


def test_fp16_islands_stay_fp32_and_the_bulk_is_fp16(tiny):
    original = onnx.load(str(tiny["onnx"]))
    islands = fp32_islands(original)
    converted = onnx.load(str(tiny["fp16"]))
    types = _types(converted)
    by_name = {node.name: node for node in converted.graph.node}
    assert islands <= set(by_name), "island nodes must keep their names"
    fp16_in_islands = [
        name
        for name in islands
        if any(types.get(t) == TensorProto.FLOAT16 for t in (*by_name[name].input, *by_name[name].output))
    ]
    assert not fp16_in_islands
    # Each index Cast reads FP32, computed in FP32: the coordinate's clamp and floor.
    producer = {out: node for node in converted.graph.node for out in node.output}
    for name in _index_casts(converted):
        cast = producer[name]
        assert types[cast.input[0]] == TensorProto.FLOAT
        assert cast.name in islands
        source = producer[cast.input[0]]
        while source.op_type in ("Flatten", "Reshape"):
            assert source.name in islands
            source = producer[source.input[0]]
        assert source.op_type == "Floor" and source.name in islands
        assert producer[source.input[0]].name in islands, "the clamp before the floor stays FP32"
    for node in converted.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax", "TopK"):
            assert types[node.input[0]] == TensorProto.FLOAT, node.name
    convs = [node for node in converted.graph.node if node.op_type == "Conv"]
    assert convs and all(types[node.input[0]] == TensorProto.FLOAT16 for node in convs)
    # One cast per tensor and type: no FP32 -> FP16 -> FP32 round trips.
    casts = [(node.input[0], node.attribute[0].i) for node in converted.graph.node if node.op_type == "Cast"]
    assert len(casts) == len(set(casts))


def test_fp16_keeps_detections_and_discrete_indices_on_photos(tiny, photos):
    pixels, sizes = photos
    feed = {"images": pixels, "orig_target_sizes": sizes}
    reference = _session(_probe(tiny["onnx"])).run(None, feed)
    fp16 = _session(_probe(tiny["fp16"])).run(None, feed)
    assert fp16[0].dtype == np.int64 and fp16[1].dtype == np.float32 and fp16[2].dtype == np.float32
    report = compare_detections(reference[:3], fp16[:3], iou=0.9, topn=100)
    assert report["compared"] == 200
    assert report["matched"] >= 0.99, report
    assert report["max_box_delta_px"] < 1.0, report
    # The same queries are selected, and each reads the same pixels; the few flips left come from the FP16
    # encoder's rounding of what feeds the islands, not from the index arithmetic itself.
    np.testing.assert_array_equal(np.sort(reference[3], axis=1), np.sort(fp16[3], axis=1))
    ref_coords, fp16_coords = _coordinates_by_query(reference), _coordinates_by_query(fp16)
    same = sum(int((a == b).sum()) for a, b in zip(ref_coords, fp16_coords, strict=True))
    total = sum(a.size for a in ref_coords)
    assert same / total >= 0.999, f"only {same / total:.4%} of the discrete pixel coordinates agree"


def test_fp16_converts_the_traced_graph_too(tiny, photos, tmp_path):
    """Unsimplified graphs hold Constant, Identity, Shape arithmetic and Cast-to-float nodes."""
    pixels, sizes = photos
    feed = {"images": pixels, "orig_target_sizes": sizes}
    path = convert_fp16(tiny["traced"], tmp_path / "traced.fp16.onnx")
    fp16 = _session(path).run(None, feed)
    reference = _session(tiny["traced"]).run(None, feed)
    assert compare_detections(reference, fp16)["matched"] >= 0.99


def test_fp16_conversion_casts_each_tensor_once(tmp_path):
    """A LayerNorm output read by two FP16 branches gets one Cast; the graph output's LayerNorm stays FP32."""
    rng = np.random.default_rng(0)
    weights = {
        name: onnx.numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
        for name, shape in (("w0", (8, 8)), ("w1", (8, 8)), ("w2", (8, 8)), ("gamma", (8,)), ("beta", (8,)))
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["h0"], name="mm0"),
        helper.make_node("LayerNormalization", ["h0", "gamma", "beta"], ["n0"], name="ln0", axis=-1),
        helper.make_node("MatMul", ["n0", "w1"], ["a"], name="mm1"),
        helper.make_node("MatMul", ["n0", "w2"], ["b"], name="mm2"),
        helper.make_node("Add", ["a", "b"], ["s"], name="add"),
        helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], name="ln1", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
        initializer=list(weights.values()),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert fp32_islands(model) == {"ln0", "ln1"}
    converted = onnx.load(str(convert_fp16(model, tmp_path / "g.onnx")))
    casts = [node for node in converted.graph.node if node.op_type == "Cast"]
    assert sorted((node.input[0], node.attribute[0].i) for node in casts) == [
        ("h0", TensorProto.FLOAT),
        ("n0", TensorProto.FLOAT16),
        ("s", TensorProto.FLOAT),
        ("x", TensorProto.FLOAT16),
    ]
    # gamma and beta feed only the FP32 LayerNorms: they stay FP32, the MatMul weights become FP16.
    init_types = {init.name: init.data_type for init in converted.graph.initializer}
    assert init_types == {"w0": 10, "w1": 10, "w2": 10, "gamma": 1, "beta": 1}
    x = rng.normal(size=(2, 8)).astype(np.float32)
    (expected,) = _session(model).run(None, {"x": x})
    (actual,) = _session(converted).run(None, {"x": x})
    np.testing.assert_allclose(actual, expected, atol=2e-2)


def test_fp16_values_stay_finite_when_converted():
    values = np.array([1e6, -1e6, 1.5, np.inf, -np.inf, 1e-9], dtype=np.float32)
    converted = _to_fp16_array(values)
    assert converted.dtype == np.float16
    np.testing.assert_array_equal(converted[:5], np.array([65504, -65504, 1.5, np.inf, -np.inf], np.float16))


def test_convert_fp16_refuses_an_fp16_graph_and_missing_files(tiny, tmp_path):
    with pytest.raises(ValueError, match="already holds FP16"):
        convert_fp16(tiny["fp16"], tmp_path / "twice.onnx")
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        convert_fp16(tmp_path / "missing.onnx", tmp_path / "out.onnx")
    assert not (tmp_path / "twice.onnx").exists()


def _detections(rows: list[tuple[int, list[float], float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.array([[r[0] for r in rows]], dtype=np.int64)
    boxes = np.array([[r[1] for r in rows]], dtype=np.float32)
    scores = np.array([[r[2] for r in rows]], dtype=np.float32)
    return labels, boxes, scores


def test_compare_detections_matches_by_label_and_iou():
    reference = _detections([(0, [0, 0, 100, 100], 0.9), (1, [50, 50, 150, 150], 0.8), (2, [0, 0, 10, 10], 0.1)])
    same = compare_detections(reference, reference)
    assert same["matched"] == 1.0 and same["max_score_delta"] == 0.0 and same["max_box_delta_px"] == 0.0
    # Test detections in another order, one with another label, one moved beyond IoU 0.9, one slightly moved.
    test = _detections([(0, [0, 0, 10, 10], 0.12), (0, [50, 50, 150, 150], 0.8), (0, [1, 1, 101, 101], 0.85)])
    report = compare_detections(reference, {"labels": test[0], "boxes": test[1], "scores": test[2]})
    assert report["matched"] == pytest.approx(1 / 3)
    assert report["max_box_delta_px"] == pytest.approx(1.0)
    assert report["max_score_delta"] == pytest.approx(0.05, abs=1e-6)
    assert compare_detections(reference, test, topn=1)["compared"] == 1
    with pytest.raises(ValueError, match="batch sizes differ"):
        compare_detections(reference, tuple(np.concatenate([a, a]) for a in test))
