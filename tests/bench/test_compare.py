"""Comparisons and goals on hand-made result records: the right pairs, the right ratios, met or not."""

from __future__ import annotations

import numpy as np
import pytest

from rtdetr_deploy.bench.compare import agreement_rows, compare_results, overhead_rows
from rtdetr_deploy.bench.goals import evaluate_goals


def _record(backend="onnxruntime", precision="fp32", sampling="discrete", batch=1, p50=100.0, **extra) -> dict:
    graph = extra.pop("cuda_graph", False)
    device = extra.pop("device", "cpu")
    label = f"{backend} {precision} {sampling}" + (" + CUDA graph" if graph else "")
    return {
        "case": label,
        "backend": backend,
        "precision": precision,
        "sampling": sampling,
        "device": device,
        "cuda_graph": graph,
        "batch": batch,
        "latency": {"p50_ms": p50, "mean_ms": p50, "images_per_s": batch * 1e3 / p50},
        "stages": None,
        "pipeline": None,
        **extra,
    }


def _find(rows: list[dict], comparison: str, fixed: str) -> dict:
    matches = [r for r in rows if r["comparison"] == comparison and r["fixed"] == fixed]
    assert len(matches) == 1, rows
    return matches[0]


def test_pairs_differ_in_one_field_only() -> None:
    results = [
        _record(p50=100.0),
        _record(precision="int8", p50=40.0),
        _record(sampling="bilinear", p50=125.0),
        _record(backend="torch", p50=300.0),
        _record(backend="torch", precision="int8", sampling="bilinear", p50=1.0),  # differs in three fields
    ]
    rows = compare_results(results)
    int8 = _find(rows, "INT8 vs FP32", "onnxruntime discrete, cpu, batch 1")
    assert int8["ratio"] == pytest.approx(2.5) and int8["baseline"] == "fp32" and int8["candidate"] == "int8"
    assert "2.50x faster" in int8["reading"]
    sampling = _find(rows, "discrete vs bilinear sampling", "onnxruntime fp32, cpu, batch 1")
    assert sampling["ratio"] == pytest.approx(1.25)
    runtime = _find(rows, "ONNX Runtime vs PyTorch eager", "fp32 discrete, cpu, batch 1")
    assert runtime["ratio"] == pytest.approx(3.0)
    assert len(rows) == 3


def test_slower_candidates_read_as_slower() -> None:
    rows = compare_results([_record(p50=100.0), _record(precision="int8", p50=200.0)])
    assert rows[0]["ratio"] == pytest.approx(0.5) and "2.00x slower" in rows[0]["reading"]


def test_batch_scaling_compares_throughput() -> None:
    rows = compare_results([_record(batch=1, p50=100.0), _record(batch=4, p50=200.0)])
    row = _find(rows, "batch scaling", "onnxruntime fp32 discrete, cpu")
    assert row["unit"] == "images/s" and row["ratio"] == pytest.approx(2.0)


def test_cuda_graph_pairs_with_eager() -> None:
    eager = _record(backend="torch", precision="fp16", device="cuda:0", p50=12.0)
    graph = _record(backend="torch", precision="fp16", device="cuda:0", p50=3.0, cuda_graph=True)
    row = _find(compare_results([eager, graph]), "CUDA graph vs eager", "torch fp16 discrete, cuda:0, batch 1")
    assert row["ratio"] == pytest.approx(4.0) and row["baseline"] == "eager"


def test_overhead_and_pipeline_rows() -> None:
    stages = {"per_frame_ms": {"decode": 2.0, "preprocess": 3.0, "inference": 100.0, "postprocess": 1.0}}
    record = _record(p50=100.0, stages=stages, pipeline={"fps": 9.0})
    record["latency"]["mean_ms"] = 98.0
    rows = overhead_rows([record])
    fixed = "onnxruntime fp32 discrete, cpu, batch 1"
    assert _find(rows, "runtime overhead", fixed)["ratio"] == pytest.approx(0.04)
    assert _find(rows, "runtime end-to-end vs bare inference", fixed)["ratio"] == pytest.approx(104.0 / 98.0)
    assert _find(rows, "video pipeline vs inference", fixed)["ratio"] == pytest.approx(0.9)


def test_goals_met_and_not_met() -> None:
    stages = {"per_frame_ms": {"decode": 2.0, "preprocess": 8.0, "inference": 100.0, "postprocess": 1.0}}
    results = [
        _record(p50=100.0, stages=stages, pipeline={"fps": 9.5}),
        _record(precision="int8", p50=60.0),
        _record(backend="torch", device="cuda:0", p50=16.0),
        _record(backend="torch", precision="fp16", device="cuda:0", p50=2.0, cuda_graph=True),
    ]
    report = {
        "results": results,
        "comparisons": compare_results(results),
        "overheads": overhead_rows(results),
        "agreements": [{"comparison": "INT8 vs FP32", "candidate": "x", "device": "cpu", "matched": 0.97, "images": 4}],
        "flops": {"gflops": 60.0},
        "matmul_peak": {"gflops": 800.0},
    }
    goals = {g["goal"]: g for g in evaluate_goals(report)}
    assert goals["cpu_fp32_gflops"]["measured"] == pytest.approx(600 / 800) and goals["cpu_fp32_gflops"]["met"]
    assert (
        goals["cpu_int8_speedup"]["measured"] == pytest.approx(100 / 60) and goals["cpu_int8_speedup"]["met"] is False
    )
    assert goals["cpu_int8_agreement"]["met"] is True
    assert goals["runtime_overhead"]["measured"] == pytest.approx(0.09) and goals["runtime_overhead"]["met"] is False
    assert goals["video_pipeline"]["measured"] == pytest.approx(0.95) and goals["video_pipeline"]["met"] is True
    assert (
        goals["gpu_fp16_graph_speedup"]["measured"] == pytest.approx(8.0)
        and goals["gpu_fp16_graph_speedup"]["met"] is None
    )


def test_agreement_rows_use_the_baseline_as_reference() -> None:
    rng = np.random.default_rng(0)
    boxes = np.sort(rng.uniform(0, 100, (2, 10, 4)), axis=-1)[..., [0, 1, 2, 3]]
    boxes[..., 2:] += 50
    reference = {"labels": rng.integers(0, 3, (2, 10)), "boxes": boxes, "scores": rng.uniform(0, 1, (2, 10))}
    shifted = {**reference, "boxes": boxes + 200.0}
    cases = [_record(), _record(precision="int8"), _record(sampling="bilinear")]
    outputs = {cases[0]["case"]: reference, cases[1]["case"]: reference, cases[2]["case"]: shifted}
    rows = {row["comparison"]: row for row in agreement_rows(outputs, cases)}
    assert rows["INT8 vs FP32"]["matched"] == pytest.approx(1.0)
    assert rows["INT8 vs FP32"]["reference"] == "onnxruntime fp32 discrete"
    # The discrete case is the candidate; its reference is the bilinear one, whose boxes are elsewhere.
    assert rows["discrete vs bilinear sampling"]["matched"] == pytest.approx(0.0)
    assert rows["discrete vs bilinear sampling"]["reference"] == "onnxruntime fp32 bilinear"
