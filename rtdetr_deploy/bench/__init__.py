"""``rtdetr-bench``: honest latency, throughput and per-stage timings of a deployed RT-DETRv2.

Timing loops warm up first and synchronise CUDA around every timed call; reports give p50/p90/p99, throughput,
the per-stage split on decoded video, side-by-side ratios, detection agreement and the device and library
versions. Benchmarking an exported model needs no torch; a ``.pth`` needs the ``torch`` extra (and ``export``
to run it in ONNX Runtime).
"""

from __future__ import annotations

from .benchmark import run_benchmark
from .cases import Case, plan_cases
from .config import BenchConfig
from .device import describe_device
from .flops import FlopCount, count_onnx_flops
from .peak import MatmulPeak, measure_matmul_peak
from .report import markdown_report, write_json, write_markdown, write_plot
from .stats import LatencyStats, summarize

__all__ = [
    "BenchConfig",
    "Case",
    "FlopCount",
    "LatencyStats",
    "MatmulPeak",
    "count_onnx_flops",
    "describe_device",
    "markdown_report",
    "measure_matmul_peak",
    "plan_cases",
    "run_benchmark",
    "summarize",
    "write_json",
    "write_markdown",
    "write_plot",
]
