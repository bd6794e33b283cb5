"""Comparisons on hand-made result records: the right pairs and the right ratios."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import bench_record

from rtdetr_deploy.bench.compare import agreement_rows, compare_results, overhead_rows


def _find(rows: list[dict], comparison: str, fixed: str) -> dict:
    matches = [r for r in rows if r["comparison"] == comparison and r["fixed"] == fixed]
    assert len(matches) == 1, rows
    return matches[0]


def test_pairs_differ_in_one_field_only() -> None:
    results = [
        bench_record(p50=100.0),
        bench_record(precision="int8", p50=40.0),
        bench_record(sampling="bilinear", p50=125.0),
        bench_record(backend="torch", p50=300.0),
        bench_record(backend="torch", precision="int8", sampling="bilinear", p50=1.0),  # differs in three fields
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
    rows = compare_results([bench_record(p50=100.0), bench_record(precision="int8", p50=200.0)])
    assert rows[0]["ratio"] == pytest.approx(0.5) and "2.00x slower" in rows[0]["reading"]


def test_batch_scaling_compares_throughput() -> None:
    rows = compare_results([bench_record(batch=1, p50=100.0), bench_record(batch=4, p50=200.0)])
    row = _find(rows, "batch scaling", "onnxruntime fp32 discrete, cpu")
    assert row["unit"] == "images/s" and row["ratio"] == pytest.approx(2.0)


def test_cuda_graph_pairs_with_eager() -> None:
    eager = bench_record(backend="torch", precision="fp16", device="cuda:0", p50=12.0)
    graph = bench_record(backend="torch", precision="fp16", device="cuda:0", p50=3.0, cuda_graph=True)
    row = _find(compare_results([eager, graph]), "CUDA graph vs eager", "torch fp16 discrete, cuda:0, batch 1")
    assert row["ratio"] == pytest.approx(4.0) and row["baseline"] == "eager"


def test_overhead_and_pipeline_rows() -> None:
    stages = {"per_frame_ms": {"decode": 2.0, "preprocess": 3.0, "inference": 100.0, "postprocess": 1.0}}
    record = bench_record(p50=100.0, stages=stages, pipeline={"fps": 9.0})
    record["latency"]["mean_ms"] = 98.0
    rows = overhead_rows([record])
    fixed = "onnxruntime fp32 discrete, cpu, batch 1"
    assert _find(rows, "runtime overhead", fixed)["ratio"] == pytest.approx(0.04)
    assert _find(rows, "runtime end-to-end vs bare inference", fixed)["ratio"] == pytest.approx(104.0 / 98.0)
    assert _find(rows, "video pipeline vs inference", fixed)["ratio"] == pytest.approx(0.9)


def test_agreement_rows_use_the_baseline_as_reference() -> None:
    rng = np.random.default_rng(0)
    boxes = np.sort(rng.uniform(0, 100, (2, 10, 4)), axis=-1)[..., [0, 1, 2, 3]]
    boxes[..., 2:] += 50
    reference = {"labels": rng.integers(0, 3, (2, 10)), "boxes": boxes, "scores": rng.uniform(0, 1, (2, 10))}
    shifted = {**reference, "boxes": boxes + 200.0}
    cases = [bench_record(), bench_record(precision="int8"), bench_record(sampling="bilinear")]
    outputs = {cases[0]["case"]: reference, cases[1]["case"]: reference, cases[2]["case"]: shifted}
    rows = {row["comparison"]: row for row in agreement_rows(outputs, cases)}
    assert rows["INT8 vs FP32"]["matched"] == pytest.approx(1.0)
    assert rows["INT8 vs FP32"]["reference"] == "onnxruntime fp32 discrete"
    # The discrete case is the candidate; its reference is the bilinear one, whose boxes are elsewhere.
    assert rows["discrete vs bilinear sampling"]["matched"] == pytest.approx(0.0)
    assert rows["discrete vs bilinear sampling"]["reference"] == "onnxruntime fp32 bilinear"


def _staged(bare_mean: float, bare_std: float, inference: float) -> dict:
    stages = {
        "per_frame_ms": {"decode": 1.0, "preprocess": 1.0, "inference": inference, "postprocess": 1.0},
        "stages": {"inference": {"std_ms": 0.5}},
    }
    record = bench_record(p50=bare_mean, stages=stages)
    record["latency"].update(mean_ms=bare_mean, std_ms=bare_std)
    return record


def test_a_runtime_cost_inside_the_spread_reads_within_noise_never_negative() -> None:
    fixed = "onnxruntime fp32 discrete, cpu, batch 1"
    # Detector end to end 95 + 2 = 97 ms against a bare 100 +- 4 ms: faster than bare, so no cost at all.
    row = _find(overhead_rows([_staged(100.0, 4.0, 95.0)]), "runtime end-to-end vs bare inference", fixed)
    assert "within noise" in row["reading"] and "-" not in row["reading"].split("(")[0]
    # 100 + 2 = 102 ms against 100 +- 4: inside the spread.
    row = _find(overhead_rows([_staged(100.0, 4.0, 100.0)]), "runtime end-to-end vs bare inference", fixed)
    assert "within noise" in row["reading"]
    # 110 + 2 = 112 ms against 100 +- 1: a real 12% cost.
    row = _find(overhead_rows([_staged(100.0, 1.0, 110.0)]), "runtime end-to-end vs bare inference", fixed)
    assert row["reading"] == "the runtime adds 12.0% to the bare inference time"
