"""FLOP counting on a hand-built graph with known work, and ONNX against torch's counter on the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rtdetr_deploy.bench.flops import count_onnx_flops


def _graph(path: Path) -> Path:
    """Conv 3->8 (3x3, pad 1) on 1x3x16x16, then MatMul [.., 16] x [16, 4] and Gemm [2, 8] x [8, 5]."""
    weight = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")
    matrix = numpy_helper.from_array(np.zeros((16, 4), np.float32), "m")
    gemm_b = numpy_helper.from_array(np.zeros((8, 5), np.float32), "g")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("MatMul", ["c", "m"], ["mm"]),
        helper.make_node("Gemm", ["y", "g"], ["gm"]),
    ]
    graph = helper.make_graph(
        nodes,
        "known",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8]),
        ],
        [
            helper.make_tensor_value_info("mm", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("gm", TensorProto.FLOAT, None),
        ],
        initializer=[weight, matrix, gemm_b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_known_graph(tmp_path: Path) -> None:
    count = count_onnx_flops(_graph(tmp_path / "g.onnx"))
    conv = 2 * (8 * 16 * 16) * (3 * 3 * 3)
    matmul = 2 * (8 * 16 * 4) * 16
    gemm = 2 * (2 * 5) * 8
    assert count.by_op["Conv"] * 1e9 == pytest.approx(conv)
    assert count.by_op["MatMul"] * 1e9 == pytest.approx(matmul)
    assert count.by_op["Gemm"] * 1e9 == pytest.approx(gemm)
    assert count.counted == 3 and count.uncounted == 0
    # Per image: a larger batch divides back out (the Gemm has a fixed batch of its own, so compare Conv only).
    assert count_onnx_flops(tmp_path / "g.onnx", batch=4).by_op["Conv"] == pytest.approx(count.by_op["Conv"])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        count_onnx_flops(tmp_path / "none.onnx")


def test_onnx_count_matches_torch_on_the_tiny_model(tiny_onnx: Path, tiny_checkpoint: Path) -> None:
    pytest.importorskip("torch")
    from rtdetr_deploy import load_model
    from rtdetr_deploy.bench.flops import count_torch_flops

    onnx_count = count_onnx_flops(tiny_onnx)
    torch_count = count_torch_flops(load_model(tiny_checkpoint).deploy(), (320, 320))
    assert onnx_count.uncounted == 0
    # Same convolutions; torch counts attention inside its fused kernel differently, hence the tolerance.
    assert onnx_count.by_op["Conv"] == pytest.approx(torch_count.by_op["convolution"], rel=1e-6)
    assert onnx_count.gflops == pytest.approx(torch_count.gflops, rel=0.1)


def test_conv_transpose_and_gemm_with_transposed_a(tmp_path: Path) -> None:
    """ConvTranspose 4->6 (2x2 kernel, stride 2) on 1x4x5x5: each of the 4*25 inputs spreads over 6*2*2 outputs;
    Gemm with transA: A is [K=7, M=3], B [7, 2], so M*N*K = 3*2*7 multiply-adds."""
    weight = numpy_helper.from_array(np.zeros((4, 6, 2, 2), np.float32), "w")
    gemm_b = numpy_helper.from_array(np.zeros((7, 2), np.float32), "b")
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w"], ["t"], strides=[2, 2]),
        helper.make_node("Gemm", ["a", "b"], ["g"], transA=1),
    ]
    graph = helper.make_graph(
        nodes,
        "transposed",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5]),
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [7, 3]),
        ],
        [
            helper.make_tensor_value_info("t", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("g", TensorProto.FLOAT, None),
        ],
        initializer=[weight, gemm_b],
    )
    path = tmp_path / "t.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    count = count_onnx_flops(path)
    assert count.by_op["ConvTranspose"] * 1e9 == pytest.approx(2 * (4 * 5 * 5) * (6 * 2 * 2))
    assert count.by_op["Gemm"] * 1e9 == pytest.approx(2 * 3 * 2 * 7)
    assert count.counted == 2 and count.uncounted == 0
