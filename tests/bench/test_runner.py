"""Timing loops: warm-up and timed call counts, duration-bound timing, synchronisation, memory, stage split."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rtdetr_deploy.bench import runner
from rtdetr_deploy.bench.runner import CpuContention, PeakMemory, measure_pipeline, measure_stages, time_calls


def test_warmup_and_iterations_are_counted_separately() -> None:
    calls, syncs = [], []
    latencies = time_calls(lambda: calls.append(1), warmup=3, iters=5, synchronize=lambda: syncs.append(1))
    assert len(latencies) == 5 and len(calls) == 8
    assert len(syncs) == 1 + 2 * 5  # once after warm-up, then before and after each timed call
    assert all(t >= 0 for t in latencies)


def test_seconds_bound_timing_runs_at_least_three_calls() -> None:
    assert len(time_calls(lambda: None, warmup=0, seconds=1e-6)) == runner.MIN_TIMED_CALLS
    assert len(time_calls(lambda: sum(range(1000)), warmup=0, seconds=0.02)) >= runner.MIN_TIMED_CALLS


@pytest.mark.parametrize("kwargs", [{}, {"iters": 2, "seconds": 1.0}])
def test_exactly_one_stop_condition(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        time_calls(lambda: None, warmup=0, **kwargs)


def test_peak_memory_sees_a_large_allocation() -> None:
    pytest.importorskip("psutil")
    with PeakMemory(interval_s=0.001) as idle:
        pass
    with PeakMemory(interval_s=0.001) as busy:
        block = np.ones(64 * 2**20, np.uint8)  # 64 MiB, touched
        time.sleep(0.05)
        del block
    assert busy.result.host_source == "sampled" and busy.result.gpu_mib is None
    assert busy.result.host_rss_mib >= idle.result.host_rss_mib + 32


def test_peak_memory_without_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)
    with PeakMemory() as memory:
        pass
    assert memory.result.host_source == "process peak" and memory.result.host_rss_mib > 0


def test_stage_split_and_pipeline_on_a_video(tiny_onnx: Path, short_video: Path) -> None:
    from rtdetr_deploy.runtime import Detector

    with Detector(tiny_onnx) as detector:
        split = measure_stages(detector, short_video, batch=2, frames=6)
        pipeline = measure_pipeline(detector, short_video, batch=2, frames=5)
        with pytest.raises(ValueError, match="too few frames for batch 4"):
            measure_stages(detector, short_video, batch=4, frames=8, warmup_batches=3)
    assert split.frames == 6 and split.batch == 2
    assert set(split.stages) == {"decode", "preprocess", "inference", "postprocess"}
    assert split.stages["decode"].runs == 6 and split.stages["inference"].runs == 3
    expected_fps = split.frames / (sum(split.per_frame_ms.values()) * split.frames / 1e3)
    assert split.sequential_fps == pytest.approx(expected_fps)
    assert pipeline.frames == 5 and pipeline.fps == pytest.approx(5 / pipeline.wall_s)


def test_cpu_contention_is_a_share() -> None:
    with CpuContention() as contention:
        sum(i * i for i in range(200_000))  # this process's own work does not count
    assert contention.other_share is None or 0.0 <= contention.other_share <= 1.0
