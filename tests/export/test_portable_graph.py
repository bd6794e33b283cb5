"""The portable graph: each rewrite is exact in ONNX Runtime against an independent reference, the exported graph
has the promised structure (float index arithmetic, no multi-axis Unsqueeze, Where for the valid mask, no BOOL
constants, attention batch-first, an Erf-free GELU on request), and the export still verifies."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, numpy_helper  # noqa: E402

from rtdetr_deploy.export.config import ExportConfig  # noqa: E402
from rtdetr_deploy.export.pipeline import export  # noqa: E402
from rtdetr_deploy.export.portable import float_conditions  # noqa: E402
from rtdetr_deploy.models.deformable_attention import discrete_indices  # noqa: E402
from rtdetr_deploy.models.layers import GELU  # noqa: E402

WEIGHTS = Path(__file__).parents[2] / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"


def _run_traced(module: torch.nn.Module, *inputs: np.ndarray, folder: Path) -> np.ndarray:
    path = folder / "module.onnx"
    names = [f"in{i}" for i in range(len(inputs))]
    torch.onnx.export(
        module, tuple(torch.from_numpy(x) for x in inputs), str(path), input_names=names, opset_version=17, dynamo=False
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, dict(zip(names, inputs, strict=True)))[0], onnx.load(str(path))


class _Indices(torch.nn.Module):
    def forward(self, locations: torch.Tensor) -> torch.Tensor:
        return discrete_indices(locations, 5, 7)


def test_float_index_arithmetic_is_the_official_rule_in_onnxruntime(tmp_path: Path) -> None:
    """Against numpy's int64 reference of the official rule: trunc(loc * [W, H] + 0.5), clamped, y * W + x; each
    coordinate is floored in float and cast to int64 whole, and the flat index is integer arithmetic."""
    rng = np.random.default_rng(0)
    locations = rng.uniform(-0.5, 1.5, size=(2, 50, 4, 2)).astype(np.float32)
    # Exact pixel boundaries, the map's edges and values just below zero, where floor and truncation differ.
    locations[0, 0, :, 0] = np.array([0.5 / 7, 1.5 / 7, -0.5 / 7, 6.5 / 7], dtype=np.float32)
    locations[0, 0, :, 1] = np.array([-0.09, 0.0, 4.5 / 5, 1.0], dtype=np.float32)
    got, graph = _run_traced(_Indices(), locations, folder=tmp_path)
    x = np.clip(np.trunc(locations[..., 0].astype(np.float32) * 7 + np.float32(0.5)).astype(np.int64), 0, 6)
    y = np.clip(np.trunc(locations[..., 1].astype(np.float32) * 5 + np.float32(0.5)).astype(np.int64), 0, 4)
    np.testing.assert_array_equal(got, y * 7 + x)
    ops = [node.op_type for node in graph.graph.node]
    producers = {out: node for node in graph.graph.node for out in node.output}
    to_int64 = [
        node
        for node in graph.graph.node
        if node.op_type == "Cast" and onnx.helper.get_attribute_value(node.attribute[0]) == onnx.TensorProto.INT64
    ]
    assert "Floor" in ops and len(to_int64) == 2, ops
    # Each cast takes a floored coordinate: no float-to-int64 Cast ever has to truncate.
    assert all(producers[node.input[0]].op_type == "Floor" for node in to_int64), ops


def test_valid_mask_where_equals_the_mask_product(tmp_path: Path) -> None:
    """``Where(mask, memory, 0)`` gives what ``mask * memory`` gave (finite memory), in ONNX Runtime."""
    rng = np.random.default_rng(1)
    memory = rng.normal(size=(2, 30, 8)).astype(np.float32)
    mask = rng.uniform(size=(1, 30, 1)) > 0.3

    class Masked(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.where(torch.from_numpy(mask), x, 0.0)

    got, _ = _run_traced(Masked(), memory, folder=tmp_path)
    np.testing.assert_array_equal(got, memory * mask.astype(np.float32))


@pytest.mark.parametrize(("form", "tol"), [("poly", 1e-6), ("tanh", 5e-4)])
def test_gelu_forms_against_math_erf(form: str, tol: float, tmp_path: Path) -> None:
    """Each form against the exact GELU from ``math.erf`` in float64 (PyTorch and ONNX Runtime); ``poly`` has no
    Erf node."""
    x = np.linspace(-10, 10, 20001, dtype=np.float32)
    exact = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    got, graph = _run_traced(GELU(form), x, folder=tmp_path)
    assert np.abs(got - exact).max() <= tol
    assert np.abs(GELU(form)(torch.from_numpy(x)).numpy() - exact).max() <= tol
    if form == "poly":
        assert "Erf" not in {node.op_type for node in graph.graph.node}
    with pytest.raises(ValueError, match="unknown GELU form 'cubic'"):
        GELU("cubic")


def test_float_conditions_keeps_values_and_drops_bool_constants() -> None:
    mask = np.array([[True], [False], [True]])
    x = onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2])
    y = onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])
    zero = numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")
    node = onnx.helper.make_node("Where", ["mask", "x", "zero"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [x], [y], [numpy_helper.from_array(mask, "mask"), zero])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model = float_conditions(model)
    onnx.checker.check_model(model)
    assert all(init.data_type != TensorProto.BOOL for init in model.graph.initializer)
    data = np.arange(6, dtype=np.float32).reshape(3, 2) + 1
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": data})
    np.testing.assert_array_equal(out[0], np.array([[1, 2], [0, 0], [5, 6]], dtype=np.float32))


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The shipped trained tiny exported with the default graph and with the Erf-free GELU."""
    results = {}
    for gelu in ("erf", "poly"):
        out = tmp_path_factory.mktemp(f"portable-{gelu}")
        result = export(ExportConfig(weights=WEIGHTS, out_dir=out, gelu=gelu), verbose=False)
        results[gelu] = {"report": result.report, "model": onnx.load(str(result.onnx))}
    return results


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def test_default_graph_structure(exports: dict[str, dict]) -> None:
    model = exports["erf"]["model"]
    constants = _constants(model)
    nodes = model.graph.node
    producers = {out: node for node in nodes for out in node.output}
    for node in nodes:
        if node.op_type == "Unsqueeze":
            assert constants[node.input[1]].size == 1, f"{node.name} unsqueezes several axes"
        if node.op_type == "Clip":
            for bound in node.input[1:]:
                assert not bound or constants[bound].dtype == np.float32, f"{node.name} has non-float bounds"
        if node.op_type == "Cast" and node.attribute[0].i == TensorProto.INT64 and "cross_attn" in node.name:
            # The sampling coordinates are cast to int64 as whole numbers, after the float clamp and floor.
            assert producers[node.input[0]].op_type == "Floor", node.name
        if node.op_type == "Transpose":
            # Attention is traced batch-first: no tensor is laid out sequence-first (onnx2tf mislays those).
            assert list(node.attribute[0].ints)[0] == 0, f"{node.name} moves the batch axis"
    assert all(init.data_type != TensorProto.BOOL for init in model.graph.initializer)
    ops = {node.op_type for node in nodes}
    assert "Floor" in ops and "Where" in ops
    # The memory feeding enc_output is masked by Where, not multiplied.
    source = producers[next(n for n in nodes if "enc_output" in n.name and n.op_type in ("MatMul", "Gemm")).input[0]]
    while source.op_type in ("Reshape", "Flatten"):
        source = producers[source.input[0]]
    assert source.op_type == "Where"


def test_exports_verify_and_poly_drops_erf(exports: dict[str, dict]) -> None:
    for gelu, result in exports.items():
        report = result["report"]
        assert report.passed and report.verification.decisions.disagreements == 0, gelu
        assert report.metadata["gelu"] == gelu
    assert "Erf" in exports["erf"]["report"].op_census
    assert "Erf" not in exports["poly"]["report"].op_census
