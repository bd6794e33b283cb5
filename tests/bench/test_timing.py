"""Timing loops: warm-up and timed call counts, duration-bound timing, synchronisation, memory, stage split."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rtdetr_deploy.bench import timing as runner
from rtdetr_deploy.bench.timing import CpuContention, PeakMemory, measure_pipeline, measure_stages, time_calls


class FakeClock:
    """A ``time`` stand-in whose ``perf_counter`` moves only when told: by ``advance`` (the work a test stages) and
    by ``tick`` at every reading. Every duration is then known beforehand, however busy the machine is."""

    def __init__(self, *, tick: float = 0.0) -> None:
        self.now, self.tick, self._lock = 0.0, tick, threading.Lock()

    def perf_counter(self) -> float:
        with self._lock:
            self.now += self.tick
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def test_warmup_and_iterations_are_counted_separately(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(runner, "time", clock)
    durations = iter([4.0, 4.0, 4.0, 0.5, 0.25, 1.0, 2.0, 0.125])
    calls, syncs = [], []

    def work() -> None:
        calls.append(1)
        clock.advance(next(durations))

    latencies = time_calls(work, warmup=3, iters=5, synchronize=lambda: syncs.append(1))
    assert len(calls) == 8
    assert latencies == [0.5, 0.25, 1.0, 2.0, 0.125]  # the warm-up calls' 4 s are not timed
    assert len(syncs) == 1 + 2 * 5  # once after warm-up, then before and after each timed call


def test_seconds_bound_timing_stops_at_the_deadline_after_three_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(runner, "time", clock)
    # Each call takes 0.125 s: a 0.5 s budget holds four; a budget shorter than one call still gets three.
    assert time_calls(lambda: clock.advance(0.125), warmup=1, seconds=0.5) == [0.125] * 4
    assert len(time_calls(lambda: clock.advance(0.125), warmup=0, seconds=1e-6)) == runner.MIN_TIMED_CALLS


@pytest.mark.parametrize("kwargs", [{}, {"iters": 2, "seconds": 1.0}])
def test_exactly_one_stop_condition(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        time_calls(lambda: None, warmup=0, **kwargs)


class _ScriptedProcess:
    """psutil's ``Process`` reporting a scripted RSS, then its last value; ``seen`` is set once the script is read."""

    def __init__(self, rss_mib: list[int]) -> None:
        self.script, self.seen = iter(rss_mib), threading.Event()
        self.last = rss_mib[-1]

    def memory_info(self) -> SimpleNamespace:
        value = next(self.script, None)
        if value is None:
            self.seen.set()
            value = self.last
        return SimpleNamespace(rss=value * 2**20)


def test_peak_memory_keeps_the_highest_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    process = _ScriptedProcess([100, 120, 300, 150, 110])
    monkeypatch.setitem(sys.modules, "psutil", SimpleNamespace(Process=lambda: process))
    with PeakMemory(interval_s=0.001) as memory:
        assert process.seen.wait(timeout=60), "the sampling thread never ran"
    assert memory.result.host_source == "sampled" and memory.result.gpu_mib is None
    assert memory.result.host_rss_mib == 300


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
    """On a clock that moves by a tick per reading, plus 0.25 s in each post-processing call, every stage's rate is
    known beforehand, and post-processing is the bound."""
    from rtdetr_deploy.bench import throughput
    from rtdetr_deploy.runtime import Detector

    tick = 2.0**-20
    clock = FakeClock(tick=tick)
    monkeypatch.setattr(runner, "time", clock)
    monkeypatch.setattr(throughput, "time", clock)
    with Detector(tiny_onnx) as detector:
        original = detector.postprocess

        def slow_postprocess(outputs: dict, prepared: object) -> list:
            clock.advance(0.25)
            return original(outputs, prepared)

        monkeypatch.setattr(detector, "postprocess", slow_postprocess)
        rates = throughput.measure_stage_rates(detector, short_video, batch=2, frames=6, preprocess_workers=2)
    # Decoding times every frame after the warm-up in one reading pair; the other stages time 6 frames, batch 2.
    decoded = rates.decode.frames
    assert rates.fps == pytest.approx(
        {"decode": decoded / tick, "preprocess": 6 / tick, "inference": 2 / tick, "postprocess": 2 / (0.25 + tick)}
    )
    assert rates.bound_by == "postprocess"
    record = rates.as_dict()
    assert record["bound_by"] == "postprocess" and record["preprocess_workers"] == 2 and record["frames"] == 6


@pytest.mark.parametrize("workers", [1, 4])
def test_preprocessing_alone_runs_its_workers_in_parallel(
    tiny_onnx: Path, short_video: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """Each preprocessing call waits until ``workers`` calls are inside at once: the measurement completes only if
    its workers do run in parallel (a barrier, not a stopwatch)."""
    from rtdetr_deploy.bench.throughput import measure_stage_rates
    from rtdetr_deploy.runtime import Detector

    barrier = threading.Barrier(workers, timeout=60)
    inside, most, lock = [0], [0], threading.Lock()
    with Detector(tiny_onnx) as detector:
        original = detector.preprocess

        def gathered_preprocess(images: list) -> object:
            if threading.current_thread() is threading.main_thread():
                return original(images)  # the one batch prepared for the inference measurement
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            barrier.wait()
            with lock:
                inside[0] -= 1
            return original(images)

        monkeypatch.setattr(detector, "preprocess", gathered_preprocess)
        measure_stage_rates(detector, short_video, batch=1, frames=8, preprocess_workers=workers)
    assert most[0] == workers


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


def _table_rows(text: str, title: str) -> list[dict[str, str]]:
    """The rows of the markdown table after the line starting with ``title``, keyed by its header cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    table = []
    for line in lines[start + 1 :]:
        if table and not line.startswith("|"):
            break
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip("|").split("|")])
    header, _, *rows = table
    return [dict(zip(header, row, strict=True)) for row in rows]


def test_the_markdown_report_names_the_bounding_stage() -> None:
    from rtdetr_deploy.bench.compare import overhead_rows
    from rtdetr_deploy.bench.report import markdown_report

    report = _rated_report()
    report["overheads"] = overhead_rows(report["results"])
    text = markdown_report(report)
    (row,) = _table_rows(text, "Each stage alone")
    assert row["case"] == "onnxruntime fp32 discrete" and row["bound by"] == "inference"
    assert float(row["inference alone"]) == 95.0 and float(row["pipeline FPS"]) == 80.0
    assert row["decoder"] == "pyav, auto threads" and row["workers"] == "2"
    # 80 FPS of the 95 frames/s inference allows alone: 84%.
    assert "pipeline 80.0 FPS, 84% of its slowest stage alone: inference" in text


def test_reports_saved_before_stage_rates_still_render() -> None:
    from rtdetr_deploy.bench.report import markdown_report

    report = _rated_report()
    (record,) = report["results"]
    del record["stage_rates"]  # the field stage rates added
    text = markdown_report(report)
    assert "On decoded video frames" in text and "Each stage alone" not in text
