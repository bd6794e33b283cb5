"""The project's speed goals, evaluated on an ``rtdetr-bench`` report: each with its measured value, met or not.

They belong to the project's benchmarks, not to the tool: ``rtdetr-bench`` measures, ``benchmarks/run_all.py``
holds the numbers up against these targets. The goals are reported, never asserted: timings depend on the machine
and on whatever else runs on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["GOALS", "evaluate_goals", "CLOSE_TO_PEAK"]

# ONNX Runtime FP32 should run close to what this CPU can do in FP32 matmuls; "close" means at least this fraction.
CLOSE_TO_PEAK = 0.7
INT8_MIN_SPEEDUP = 2.0
INT8_MIN_MATCHED = 0.95
MAX_OVERHEAD = 0.05
MIN_PIPELINE_EFFICIENCY = 0.9

GOALS = {
    "cpu_fp32_gflops": f"ONNX Runtime FP32 on CPU close to the measured FP32 matmul rate (>= {CLOSE_TO_PEAK:.0%})",
    "cpu_int8_speedup": f"CPU INT8 >= {INT8_MIN_SPEEDUP:.0f}x faster than FP32 (batch 1, p50)",
    "cpu_int8_agreement": f"CPU INT8 keeps >= {INT8_MIN_MATCHED:.0%} of FP32's top-100 detections (IoU >= 0.9)",
    "runtime_overhead": f"preprocess + postprocess <= {MAX_OVERHEAD:.0%} of inference (batch 1, CPU)",
    "video_pipeline": f"video pipeline FPS >= {MIN_PIPELINE_EFFICIENCY:.0%} of 1 / inference latency",
    "gpu_fp16_graph_speedup": "PyTorch FP16 + CUDA graph vs eager FP32 speed-up on GPU (reported)",
}


def _goal(name: str, case: str, measured: float, display: str, met: bool | None) -> dict[str, Any]:
    return {"goal": name, "target": GOALS[name], "case": case, "measured": measured, "display": display, "met": met}


def evaluate_goals(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One entry per goal and measured case that it applies to (goals with no matching measurement are omitted).

    Args:
        report: the benchmark report (``results``, ``comparisons``, ``overheads``, ``agreements``, ``flops``,
            ``matmul_peak``).

    Returns:
        Entries with ``goal``, ``target``, ``case``, ``measured``, ``display`` and ``met`` (``None`` when the goal
        is only reported).
    """
    goals = []
    results = report.get("results", [])
    flops = (report.get("flops") or {}).get("gflops")
    peak = (report.get("matmul_peak") or {}).get("gflops")
    if flops and peak:
        for r in results:
            if r["backend"] == "onnxruntime" and r["precision"] == "fp32" and r["device"] == "cpu":
                achieved = flops * r["batch"] * 1e3 / r["latency"]["p50_ms"]
                share = achieved / peak
                display = f"{achieved:.0f} of {peak:.0f} GFLOP/s ({share:.0%})"
                case = f"{r['case']}, batch {r['batch']}"
                goals.append(_goal("cpu_fp32_gflops", case, share, display, share >= CLOSE_TO_PEAK))
    for row in report.get("comparisons", []):
        if row["comparison"] == "INT8 vs FP32" and row["fixed"].endswith(", cpu, batch 1"):
            ratio = row["ratio"]
            goals.append(_goal("cpu_int8_speedup", row["fixed"], ratio, f"{ratio:.2f}x", ratio >= INT8_MIN_SPEEDUP))
    for row in report.get("agreements", []):
        if row["comparison"] == "INT8 vs FP32" and row["device"] == "cpu":
            matched = row["matched"]
            display = f"{matched:.1%} over {row['images']} images"
            goals.append(_goal("cpu_int8_agreement", row["candidate"], matched, display, matched >= INT8_MIN_MATCHED))
    for row in report.get("overheads", []):
        if row["comparison"] == "runtime overhead" and ", cpu, batch 1" in row["fixed"]:
            share = row["ratio"]
            goals.append(_goal("runtime_overhead", row["fixed"], share, f"{share:.1%}", share <= MAX_OVERHEAD))
        if row["comparison"] == "video pipeline vs inference":
            ratio = row["ratio"]
            met = ratio >= MIN_PIPELINE_EFFICIENCY
            display = f"{row['candidate_value']:.1f} of {row['baseline_value']:.1f} FPS ({ratio:.0%})"
            goals.append(_goal("video_pipeline", row["fixed"], ratio, display, met))
    eager = {
        (r["sampling"], r["batch"], r["device"]): r
        for r in results
        if r["backend"] == "torch" and r["precision"] == "fp32" and not r["cuda_graph"] and r["device"] != "cpu"
    }
    for r in results:
        if r["backend"] == "torch" and r["precision"] == "fp16" and r["cuda_graph"]:
            base = eager.get((r["sampling"], r["batch"], r["device"]))
            if base is not None:
                ratio = base["latency"]["p50_ms"] / r["latency"]["p50_ms"]
                case = f"torch {r['sampling']}, {r['device']}, batch {r['batch']}"
                goals.append(_goal("gpu_fp16_graph_speedup", case, ratio, f"{ratio:.2f}x", None))
    return goals
