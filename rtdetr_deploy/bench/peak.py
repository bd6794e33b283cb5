"""This machine's measured FP32 matrix-multiply rate: the ceiling an FP32 model's GFLOP/s is compared with.

A large square ``MatMul`` runs in ONNX Runtime (its MLAS kernels are the ones that run the model's Conv and
MatMul nodes) and in numpy (whatever BLAS numpy was built with); the faster of the two is the reference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

__all__ = ["MatmulPeak", "measure_matmul_peak"]


@dataclass(frozen=True)
class MatmulPeak:
    """Best sustained FP32 matrix-multiply rate found, in GFLOP/s (2 FLOPs per multiply-add).

    Attributes:
        gflops: the best of ``by_library``.
        by_library: median rate per library (``onnxruntime``, ``numpy``).
        size: matrices are ``size x size``.
        runs: timed multiplications per library.
        threads: ONNX Runtime intra-op threads (0: its default, one per physical core).
    """

    gflops: float
    by_library: dict[str, float]
    size: int
    runs: int
    threads: int


def _median_rate(fn: object, flops: float, *, runs: int) -> float:
    fn()  # type: ignore[operator]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return flops / float(np.median(times)) / 1e9


def _ort_matmul(size: int, threads: int) -> object | None:
    """A function multiplying two ``size x size`` matrices in ONNX Runtime, or ``None`` without it."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    tensor = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in ("A", "B", "C")]
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "matmul", tensor[:2], tensor[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {name: rng.random((size, size), dtype=np.float32) for name in ("A", "B")}
    return lambda: session.run(None, feed)


def measure_matmul_peak(*, size: int = 2048, runs: int = 8, threads: int = 0) -> MatmulPeak:
    """Measure the FP32 ``size x size`` matrix-multiply rate with ONNX Runtime and numpy (a few seconds).

    Args:
        size: matrix side; large enough that the multiply is compute-bound.
        runs: timed multiplications per library (after one warm-up); the median is kept.
        threads: ONNX Runtime intra-op threads (0: one per physical core, as a model session uses).
    """
    if size < 64 or runs < 1:
        raise ValueError(f"size must be >= 64 and runs >= 1, got size={size}, runs={runs}")
    flops = 2.0 * size**3
    rates = {}
    ort_fn = _ort_matmul(size, threads)
    if ort_fn is not None:
        rates["onnxruntime"] = _median_rate(ort_fn, flops, runs=runs)
    rng = np.random.default_rng(0)
    a, b = rng.random((size, size), dtype=np.float32), rng.random((size, size), dtype=np.float32)
    rates["numpy"] = _median_rate(lambda: a @ b, flops, runs=runs)
    return MatmulPeak(gflops=max(rates.values()), by_library=rates, size=size, runs=runs, threads=threads)
