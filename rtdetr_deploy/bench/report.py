"""A benchmark report as JSON (everything, with the device description), markdown tables and a PNG plot.

With a video, the tables also give each stage's own throughput and name the stage that bounds the pipeline.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from ..tables import markdown_table
from .device import precision_isa
from .throughput import bound_line

__all__ = ["SCHEMA", "device_line", "markdown_report", "other_cpu", "write_json", "write_markdown", "write_plot"]

SCHEMA = "rtdetr-bench/1"
STAGES = ("decode", "preprocess", "inference", "postprocess")


def device_line(device: Mapping[str, Any]) -> str:
    """One line naming the machine and the CPU instructions that decide INT8/BF16 speed (``device.precision_isa``):
    ``"Intel Xeon (2 cores, AVX2, AVX-512 VNNI, AVX512_BF16, AMX, VM); load average 0.40 at start; onnxruntime 1.22"``.
    """
    cpu = device.get("cpu", {})
    isa = precision_isa(cpu.get("simd", []))
    vm = ", VM" if cpu.get("virtual_machine") else ""
    parts = [f"{cpu.get('model', 'unknown CPU')} ({cpu.get('physical_cores', '?')} cores, {isa}{vm})"]
    gpu = device.get("gpu")
    if gpu:
        driver = f", driver {gpu['driver']}" if gpu.get("driver") else ""
        cuda = f", CUDA {gpu['cuda_runtime']}" if gpu.get("cuda_runtime") else ""
        parts.append(f"{gpu.get('name', 'GPU')}{driver}{cuda}")
    load = device.get("load_average")
    if load:
        parts.append(f"load average {load[0]:.2f} at start")
    versions = device.get("versions", {})
    libs = ", ".join(f"{n} {versions[n]}" for n in ("onnxruntime", "torch", "tensorrt", "numpy") if versions.get(n))
    return "; ".join(parts) + (f"; {libs}" if libs else "")


def other_cpu(share: float | None) -> str:
    """The share of the CPUs other processes used during a measurement, as ``"12%"`` (``"-"``: not measured)."""
    return "-" if share is None else f"{share:.0%}"


def _gflops(report: Mapping[str, Any], record: Mapping[str, Any]) -> str:
    flops = (report.get("flops") or {}).get("gflops")
    if not flops or record["precision"] != "fp32":
        return "-"
    return f"{flops * record['batch'] * 1e3 / record['latency']['p50_ms']:.0f}"


def _header(report: Mapping[str, Any]) -> list[str]:
    model, timing = report.get("model", {}), report.get("timing", {})
    size = "x".join(str(v) for v in model.get("input_size", []))
    how = f"{timing.get('iters')} timed runs" if timing.get("iters") else f"{timing.get('seconds')} s per case"
    return [
        f"**{model.get('preset', '?')} at {size}**, {report.get('config', {}).get('device', '?')}: "
        f"{device_line(report.get('device', {}))}",
        "",
        f"Inference alone (backend.infer on a prepared batch, {timing.get('warmup')} warm-up runs, {how}; "
        "ms per batch; other CPU: share of the CPUs that other processes used meanwhile):",
        "",
    ]


def _inference_table(report: Mapping[str, Any]) -> list[str]:
    rows = []
    for r in report.get("results", []):
        lat, mem = r["latency"], r.get("memory") or {}
        rows.append(
            [
                r["case"],
                str(r["batch"]),
                *(f"{lat[key]:.1f}" for key in ("p50_ms", "p90_ms", "p99_ms")),
                f"{lat['mean_ms']:.1f} ± {lat['std_ms']:.1f}",
                f"{lat['images_per_s']:.1f}",
                _gflops(report, r),
                str(lat["runs"]),
                f"{mem['host_rss_mib']:.0f}" if mem.get("host_rss_mib") else "-",
                f"{mem['gpu_mib']:.0f}" if mem.get("gpu_mib") is not None else "-",
                other_cpu(r.get("other_cpu_share")),
            ]
        )
    header = ["case", "batch", "p50", "p90", "p99", "mean ± std", "images/s", "GFLOP/s", "runs", "peak RSS MiB"]
    return markdown_table([*header, "GPU MiB", "other CPU"], rows)


def _stage_split_table(report: Mapping[str, Any]) -> list[str]:
    staged = [r for r in report.get("results", []) if r.get("stages")]
    if not staged:
        return []
    rows = []
    for r in staged:
        per_frame, pipeline = r["stages"]["per_frame_ms"], r.get("pipeline") or {}
        rows.append(
            [
                r["case"],
                str(r["batch"]),
                *(f"{per_frame[s]:.2f}" for s in STAGES),
                f"{r['stages']['sequential_fps']:.2f}",
                f"{pipeline['fps']:.2f}" if pipeline else "-",
                str(r["stages"]["frames"]),
            ]
        )
    intro = "On decoded video frames (ms per frame; sequential = stages back to back, pipeline = threaded):"
    return [
        "",
        intro,
        "",
        *markdown_table(["case", "batch", *STAGES, "sequential FPS", "pipeline FPS", "frames"], rows),
    ]


def _stage_rates_table(report: Mapping[str, Any]) -> list[str]:
    """Each stage's own throughput beside the pipeline's, and one line per record naming the bounding stage."""
    rated = [r for r in report.get("results", []) if r.get("stage_rates") and r.get("pipeline")]
    if not rated:
        return []
    rows, readings = [], []
    for r in rated:
        rates, fps = r["stage_rates"], r["pipeline"]["fps"]
        threads = rates["decode_threads"] or "auto"
        rows.append(
            [
                r["case"],
                str(r["batch"]),
                f"{rates['decoder']}, {threads} threads",
                str(rates["preprocess_workers"]),
                *(f"{rates['fps'][s]:.1f}" for s in STAGES),
                f"{fps:.1f}",
                rates["bound_by"],
            ]
        )
        readings.append(f"- {r['case']}, batch {r['batch']}: {bound_line(rates, fps)}")
    header = ["case", "batch", "decoder", "workers", *(f"{s} alone" for s in STAGES), "pipeline FPS", "bound by"]
    intro = "Each stage alone, in frames/s (the threaded pipeline cannot beat its slowest stage):"
    return ["", intro, "", *markdown_table(header, rows), "", *readings]


def _comparison_tables(report: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    comparisons = [*report.get("comparisons", []), *report.get("overheads", [])]
    if comparisons:
        rows = [
            [c["comparison"], c["fixed"], c["baseline"], c["candidate"], f"{c['ratio']:.3f}", c["reading"]]
            for c in comparisons
        ]
        lines += ["", "Comparisons (ratio > 1: the candidate is faster, except the overhead share):", ""]
        lines += markdown_table(["comparison", "fixed", "baseline", "candidate", "ratio", "reading"], rows)
    agreements = report.get("agreements", [])
    if agreements:
        rows = [
            [
                a["comparison"],
                a["reference"],
                a["candidate"],
                f"{a['matched']:.1%}",
                f"{a['min_image_matched']:.1%}",
                f"{a['max_score_delta']:.2g}",
                str(a["images"]),
            ]
            for a in agreements
        ]
        header = ["comparison", "reference", "candidate", "matched", "worst image", "max Δscore", "images"]
        lines += ["", "Detection agreement (reference's top-100 found again: same label, IoU >= 0.9):", ""]
        lines += markdown_table(header, rows)
    return lines


def markdown_report(report: Mapping[str, Any]) -> str:
    """The report's tables in markdown: inference alone, per-stage split, each stage's own throughput and the
    bounding stage, comparisons, agreement, notes."""
    lines = _header(report) + _inference_table(report) + _stage_split_table(report) + _stage_rates_table(report)
    lines += _comparison_tables(report)
    notes = report.get("notes", [])
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def write_json(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the whole report (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return path


def write_markdown(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``markdown_report(report)`` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(markdown_report(report))
    return path


def write_plot(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """PNG: p50 latency per case and batch (whiskers to p90 and p99), throughput, and the per-stage split.

    Raises:
        ImportError: matplotlib is not installed (``pip install 'rtdetr-deploy[bench]'``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report.get("results", [])
    staged = [r for r in results if r.get("stages")]
    labels = [f"{r['case']}, b{r['batch']}" for r in results]
    panels = 3 if staged else 2
    height = max(3.5, 0.4 * len(results) + 2.0)
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, height), squeeze=False, layout="constrained")
    ax = axes[0][0]
    y = range(len(results))
    p50 = [r["latency"]["p50_ms"] for r in results]
    ax.barh(y, p50, color="tab:blue", label="p50")
    ax.scatter([r["latency"]["p90_ms"] for r in results], y, marker="|", s=200, color="black", label="p90")
    ax.scatter([r["latency"]["p99_ms"] for r in results], y, marker="x", color="tab:red", label="p99")
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    ax.set_xlabel("latency per batch (ms)")
    ax.set_title("inference alone")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize="small")
    ax = axes[0][1]
    ax.barh(y, [r["latency"]["images_per_s"] for r in results], color="tab:green")
    ax.set_yticks(list(y), [""] * len(results))
    ax.invert_yaxis()
    ax.set_xlabel("images/s")
    ax.set_title("throughput")
    if staged:
        ax = axes[0][2]
        ys = range(len(staged))
        left = [0.0] * len(staged)
        for stage, color in zip(STAGES, ("tab:gray", "tab:orange", "tab:blue", "tab:purple"), strict=True):
            widths = [r["stages"]["per_frame_ms"][stage] for r in staged]
            ax.barh(ys, widths, left=left, color=color, label=stage)
            left = [a + b for a, b in zip(left, widths, strict=True)]
        ax.set_yticks(list(ys), [f"{r['case']}, b{r['batch']}" for r in staged])
        ax.invert_yaxis()
        ax.set_xlabel("ms per frame (video, stages back to back)")
        ax.set_title("per-stage split")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize="small")
    model = report.get("model", {})
    size = "x".join(str(v) for v in model.get("input_size", []))
    fig.suptitle(f"{model.get('preset', '')} {size}: {device_line(report.get('device', {}))}", fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
