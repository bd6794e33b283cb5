"""Timing loops: warm-up and timed call counts, duration-bound timing, synchronisation, memory, stage split."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rtdetr_deploy.bench import timing as runner
from rtdetr_deploy.bench.timing import CpuContention, PeakMemory, measure_pipeline, measure_stages, time_calls


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
    assert pipeline.frames == 5


def test_stage_times_fit_inside_the_wall_clock(tiny_onnx: Path, short_video: Path) -> None:
    """Timed stages are parts of the run: measured from outside, the whole call takes at least their sum."""
    from rtdetr_deploy.runtime import Detector

    with Detector(tiny_onnx) as detector:
        start = time.perf_counter()
        split = measure_stages(detector, short_video, batch=1, frames=6, warmup_batches=0)
        split_wall = time.perf_counter() - start
        start = time.perf_counter()
        pipeline = measure_pipeline(detector, short_video, batch=1, frames=6)
        pipeline_wall = time.perf_counter() - start
    assert sum(split.per_frame_ms.values()) * split.frames / 1e3 <= split_wall
    assert split.sequential_fps >= split.frames / split_wall
    assert 0 < pipeline.wall_s <= pipeline_wall and pipeline.fps >= pipeline.frames / pipeline_wall


def test_proc_stat_busy_time_counts_steal_but_not_idle_or_iowait() -> None:
    #         user nice system idle  iowait irq softirq steal guest guest_nice
    line = "cpu  1000 50   300    9000  700    20  30      100   0     0"
    assert runner.busy_seconds(line, ticks_per_second=100) == pytest.approx((1000 + 50 + 300 + 20 + 30 + 100) / 100)
    assert runner.busy_seconds("cpu0 1 2 3 4 5 6 7 8", ticks_per_second=100) is None
    assert runner.busy_seconds("intr 12345", ticks_per_second=100) is None


def _contention(monkeypatch: pytest.MonkeyPatch, *, wall: float, machine_busy: float, own: float) -> float | None:
    """``CpuContention`` over a block where the clocks advance by the given seconds, on 2 CPUs."""
    clock = iter([10.0, 10.0 + wall])
    busy = iter([500.0, 500.0 + machine_busy])
    times = iter([(3.0, 1.0, 0, 0, 0), (3.0 + own, 1.0, 0, 0, 0)])
    monkeypatch.setattr(runner.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(runner, "_machine_busy_s", lambda: next(busy))
    monkeypatch.setattr(runner.os, "times", lambda: next(times))
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 2)
    with CpuContention() as contention:
        pass
    return contention.other_share


def test_the_tools_own_work_is_not_contention(monkeypatch: pytest.MonkeyPatch) -> None:
    # This process kept both CPUs busy for the whole second, and nothing else ran.
    assert _contention(monkeypatch, wall=1.0, machine_busy=2.0, own=2.0) == pytest.approx(0.0)


def test_other_processes_work_is_contention(monkeypatch: pytest.MonkeyPatch) -> None:
    # This process used 0.5 CPU-seconds; the machine was busy for 1.5: someone else kept one CPU of two busy.
    assert _contention(monkeypatch, wall=1.0, machine_busy=1.5, own=0.5) == pytest.approx(0.5)


def test_decode_alone_times_the_frames_after_the_warm_up(short_video: Path) -> None:
    import cv2

    from rtdetr_deploy.bench.throughput import DECODE_WARMUP, measure_decode
    from rtdetr_deploy.runtime.decoders import DecoderConfig

    capture = cv2.VideoCapture(str(short_video))
    reference = []
    while (frame := capture.read())[0]:
        reference.append(frame[1])
    capture.release()
    for name in ("pyav", "opencv"):
        rate, kept = measure_decode(short_video, decoder=DecoderConfig(name, 2), frames=100, keep=5)
        assert (rate.decoder, rate.threads, rate.size_wh) == (name, 2, (160, 96))
        assert rate.frames == len(reference) - DECODE_WARMUP and rate.seconds > 0 and rate.fps > 0
        for got, want in zip(kept, reference, strict=False):
            np.testing.assert_array_equal(got, want)


def test_decode_alone_refuses_a_video_shorter_than_its_warm_up(tmp_path: Path) -> None:
    import cv2

    from rtdetr_deploy.bench.throughput import DECODE_WARMUP, measure_decode
    from rtdetr_deploy.runtime.decoders import DecoderConfig

    path = tmp_path / "short.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (64, 48))
    for _ in range(DECODE_WARMUP):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    with pytest.raises(ValueError, match="no frame left to time after 8 warm-up frames"):
        measure_decode(path, decoder=DecoderConfig(), frames=10)


def test_stage_rates_name_the_stage_that_is_made_slow(
    tiny_onnx: Path, short_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stage slowed by 0.2 s per call (a workload, not a wait) becomes the bound: at most 5 batches/s, far below
    what the tiny model's inference reaches even on a busy machine."""
    from rtdetr_deploy.bench.throughput import STAGES, measure_stage_rates
    from rtdetr_deploy.runtime import Detector

    with Detector(tiny_onnx) as detector:
        original = detector.postprocess

        def slow_postprocess(outputs: dict, prepared: object) -> list:
            time.sleep(0.2)
            return original(outputs, prepared)

        monkeypatch.setattr(detector, "postprocess", slow_postprocess)
        rates = measure_stage_rates(detector, short_video, batch=2, frames=6, preprocess_workers=2)
    assert set(rates.fps) == set(STAGES) and all(v > 0 for v in rates.fps.values())
    assert rates.fps["postprocess"] <= 2 / 0.2 and rates.bound_by == "postprocess"
    record = rates.as_dict()
    assert record["bound_by"] == "postprocess" and record["preprocess_workers"] == 2 and record["frames"] == 6


def test_preprocessing_alone_runs_its_workers_in_parallel(
    tiny_onnx: Path, short_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtdetr_deploy.bench.throughput import measure_stage_rates
    from rtdetr_deploy.runtime import Detector

    with Detector(tiny_onnx) as detector:
        original = detector.preprocess

        def slow_preprocess(images: list) -> object:
            time.sleep(0.03)  # releases the GIL, as OpenCV's and numpy's work does
            return original(images)

        monkeypatch.setattr(detector, "preprocess", slow_preprocess)
        one = measure_stage_rates(detector, short_video, batch=1, frames=8, preprocess_workers=1)
        four = measure_stage_rates(detector, short_video, batch=1, frames=8, preprocess_workers=4)
    assert one.fps["preprocess"] <= 1 / 0.03
    assert four.fps["preprocess"] > 2.5 * one.fps["preprocess"]


def test_bound_line_reads_the_pipeline_against_its_slowest_stage() -> None:
    from rtdetr_deploy.bench.throughput import bound_line

    rates = {
        "batch": 8,
        "preprocess_workers": 2,
        "decoder": "pyav",
        "decode_threads": 0,
        "fps": {"decode": 600.0, "preprocess": 200.0, "inference": 550.0, "postprocess": 5000.0},
        "bound_by": "preprocess",
    }
    assert bound_line(rates, 150.0) == (
        "pipeline 150.0 FPS, 75% of its slowest stage alone: preprocess, 200.0 frames/s (2 workers)"
    )
    rates = {**rates, "bound_by": "decode", "fps": {**rates["fps"], "decode": 100.0}}
    assert bound_line(rates, 90.0).endswith("decode, 100.0 frames/s (pyav decoder, auto threads)")


def test_pipeline_run_records_its_decoder_and_workers(tiny_onnx: Path, short_video: Path) -> None:
    from rtdetr_deploy.runtime import Detector
    from rtdetr_deploy.runtime.decoders import DecoderConfig

    with Detector(tiny_onnx) as detector:
        run = measure_pipeline(
            detector, short_video, batch=2, frames=5, decoder=DecoderConfig("opencv", 1), preprocess_workers=3
        )
    assert run.frames == 5 and run.as_dict()["decoder"] == "opencv" and run.as_dict()["preprocess_workers"] == 3


def _rated_report() -> dict:
    record = {
        "case": "onnxruntime fp32 discrete",
        "backend": "onnxruntime",
        "precision": "fp32",
        "sampling": "discrete",
        "device": "cpu",
        "cuda_graph": False,
        "batch": 1,
        "latency": {
            "p50_ms": 10.0,
            "p90_ms": 11.0,
            "p99_ms": 12.0,
            "mean_ms": 10.0,
            "std_ms": 0.5,
            "images_per_s": 100.0,
            "runs": 5,
        },
        "memory": {"host_rss_mib": 100.0, "host_source": "sampled", "gpu_mib": None},
        "other_cpu_share": 0.0,
        "stages": {
            "per_frame_ms": {"decode": 1.0, "preprocess": 3.0, "inference": 10.0, "postprocess": 0.1},
            "sequential_fps": 70.0,
            "frames": 8,
        },
        "pipeline": {"fps": 80.0, "frames": 8, "bound_by": "inference"},
        "stage_rates": {
            "batch": 1,
            "preprocess_workers": 2,
            "decoder": "pyav",
            "decode_threads": 0,
            "frames": 8,
            "fps": {"decode": 900.0, "preprocess": 600.0, "inference": 95.0, "postprocess": 9000.0},
            "bound_by": "inference",
        },
    }
    return {
        "model": {"preset": "tiny", "input_size": [320, 320]},
        "timing": {"warmup": 1, "iters": 5},
        "results": [record],
    }


def test_the_markdown_report_names_the_bounding_stage() -> None:
    from rtdetr_deploy.bench.compare import overhead_rows
    from rtdetr_deploy.bench.report import markdown_report

    report = _rated_report()
    report["overheads"] = overhead_rows(report["results"])
    text = markdown_report(report)
    assert (
        "| onnxruntime fp32 discrete | 1 | pyav, auto threads | 2 | 900.0 | 600.0 | 95.0 | 9000.0 | 80.0 | inference |"
        in text
    )
    assert "- onnxruntime fp32 discrete, batch 1: pipeline 80.0 FPS, 84% of its slowest stage alone: inference" in text
    assert "bound by inference (95.0 frames/s alone)" in text


def test_reports_saved_before_stage_rates_still_render() -> None:
    import json

    from rtdetr_deploy.bench.report import markdown_report

    saved = Path(__file__).parents[2] / "benchmarks" / "results" / "gpu_runtime_h100-80gb-hbm3.json"
    text = markdown_report(json.loads(saved.read_text()))
    assert "On decoded video frames" in text and "Each stage alone" not in text
