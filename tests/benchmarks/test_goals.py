"""The project's speed goals (benchmarks/goals.py) on hand-made benchmark records: met or not, by the numbers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from helpers import bench_record

from rtdetr_deploy.bench.compare import compare_results, overhead_rows

_GOALS = Path(__file__).resolve().parents[2] / "benchmarks" / "goals.py"
_spec = importlib.util.spec_from_file_location("benchmark_goals", _GOALS)
goals_module = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = goals_module
_spec.loader.exec_module(goals_module)
evaluate_goals = goals_module.evaluate_goals


def test_goals_met_and_not_met() -> None:
    stages = {"per_frame_ms": {"decode": 2.0, "preprocess": 8.0, "inference": 100.0, "postprocess": 1.0}}
    results = [
        bench_record(p50=100.0, stages=stages, pipeline={"fps": 9.5}),
        bench_record(precision="int8", p50=60.0),
        bench_record(backend="torch", device="cuda:0", p50=16.0),
        bench_record(backend="torch", precision="fp16", device="cuda:0", p50=2.0, cuda_graph=True),
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
