"""The frontier report as a markdown table and a plot of AP against milliseconds with the Pareto frontier drawn."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from ..tables import markdown_table
from .report import device_line

__all__ = ["frontier_markdown", "write_frontier_plot"]


def _size(point: Mapping[str, Any]) -> str:
    height, width = point["size"]
    return f"{height}x{width}"


def frontier_markdown(report: Mapping[str, Any]) -> str:
    """Every point (Pareto-optimal ones first, fastest first) with AP, AP50, p50 and p90; then the machine."""
    points = sorted(report["points"], key=lambda p: (not p["pareto"], p["latency"]["p50_ms"]))
    model, data = report["model"], report["data"]
    lines = [
        f"Speed/accuracy frontier of {model['file']} ({model['preset']}, trained with "
        f"{model['trained_decoder_layers']} decoder layers and {model['trained_queries']} queries at "
        f"{model['input_size'][0]}x{model['input_size'][1]}); COCO AP on {data['name']} ({data['split']}, "
        f"{data['images']} images); p50 of the graph alone, batch 1, {report['timing']['rounds']} rounds x "
        f"{report['timing']['iters_per_round']} calls per point, alternating.",
        "",
        f"Machine: {device_line(report['device'])}. Backend: {report['backend']}.",
        "",
    ]
    header = ("Pareto", "size", "decoder layers", "queries", "precision", "AP", "AP50", "p50 ms", "p90 ms")
    rows = [
        (
            "**yes**" if p["pareto"] else "",
            _size(p),
            str(p["decoder_layers"]),
            str(p["queries"]),
            p["precision"],
            f"{p['metrics']['AP']:.4f}",
            f"{p['metrics']['AP50']:.4f}",
            f"{p['latency']['p50_ms']:.2f}",
            f"{p['latency']['p90_ms']:.2f}",
        )
        for p in points
    ]
    lines += markdown_table(header, rows)
    share = report["timing"].get("other_cpu_share")
    if share:
        lines += ["", f"Other processes used {share:.0%} of the CPUs while the latencies were taken."]
    if report.get("command"):
        lines += ["", f"Command: `{report['command']}`"]
    return "\n".join(lines) + "\n"


def write_frontier_plot(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """PNG: AP against p50 ms, one marker per precision, the Pareto frontier as a step line through its points.

    Raises:
        ImportError: matplotlib is not installed (``pip install 'rtdetr-deploy[bench]'``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = report["points"]
    fig, ax = plt.subplots(figsize=(8, 5.5), layout="constrained")
    markers = {"fp32": "o", "fp16": "s", "int8": "^"}
    for precision in dict.fromkeys(p["precision"] for p in points):
        chosen = [p for p in points if p["precision"] == precision]
        ax.scatter(
            [p["latency"]["p50_ms"] for p in chosen],
            [p["metrics"]["AP"] for p in chosen],
            marker=markers.get(precision, "o"),
            label=precision,
            alpha=0.8,
        )
    front = sorted((p for p in points if p["pareto"]), key=lambda p: p["latency"]["p50_ms"])
    ax.step(
        [p["latency"]["p50_ms"] for p in front],
        [p["metrics"]["AP"] for p in front],
        where="post",
        color="black",
        label="Pareto frontier",
    )
    for p in front:
        ax.annotate(
            f"{_size(p)} L{p['decoder_layers']} Q{p['queries']} {p['precision']}",
            (p["latency"]["p50_ms"], p["metrics"]["AP"]),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize="x-small",
        )
    ax.set_xlabel("p50 latency, batch 1 (ms)")
    ax.set_ylabel(f"COCO AP ({report['data']['name']}, {report['data']['split']})")
    ax.set_title(f"{report['model']['file']}\n{device_line(report['device'])}", fontsize="x-small", wrap=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return target
