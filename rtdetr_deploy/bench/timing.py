"""Timing loops: inference alone through a backend, the per-stage split on decoded video, the threaded pipeline.

Every loop warms up first, then wraps each timed call in ``time.perf_counter()``. Backends return host arrays,
so a call ends only when the device has finished; on CUDA an explicit ``synchronize`` before and after each call
also keeps earlier asynchronous work out of the timed region. Host memory is sampled while a loop runs.
"""

from __future__ import annotations

import itertools
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.decoders import DecoderConfig
from ..runtime.detector import Detector
from ..runtime.pipeline import DEFAULT_PREPROCESS_WORKERS, run_pipeline
from ..runtime.sources import VideoSource, open_source
from .stats import LatencyStats, summarize

__all__ = [
    "CpuContention",
    "busy_seconds",
    "MemoryPeak",
    "PeakMemory",
    "StageSplit",
    "PipelineRun",
    "time_calls",
    "open_video",
    "measure_stages",
    "measure_pipeline",
    "cuda_synchronizer",
]

MIN_TIMED_CALLS = 3


def time_calls(
    fn: Callable[[], object],
    *,
    warmup: int,
    iters: int | None = None,
    seconds: float | None = None,
    synchronize: Callable[[], None] | None = None,
) -> list[float]:
    """Wall-clock seconds of each timed call of ``fn`` after ``warmup`` untimed calls.

    Args:
        fn: the work to time (one inference, say).
        warmup: untimed calls first (lazy initialisation, caches, clock ramp-up, CUDA graph capture).
        iters: timed calls; or
        seconds: keep calling until this much time has passed (at least ``MIN_TIMED_CALLS`` calls).
        synchronize: called before starting and before stopping each timer (``torch.cuda.synchronize``).

    Raises:
        ValueError: neither or both of ``iters`` and ``seconds``.
    """
    if (iters is None) == (seconds is None):
        raise ValueError("pass exactly one of iters and seconds")
    sync = synchronize or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds if seconds is not None else None
    while True:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        latencies.append(time.perf_counter() - start)
        if iters is not None and len(latencies) >= iters:
            break
        if deadline is not None and time.perf_counter() >= deadline and len(latencies) >= MIN_TIMED_CALLS:
            break
    return latencies


def cuda_synchronizer(device: str) -> Callable[[], None] | None:
    """``torch.cuda.synchronize(device)`` for a CUDA device when torch is loaded, else ``None``."""
    torch = sys.modules.get("torch")
    if not device.startswith("cuda") or torch is None or not torch.cuda.is_available():
        return None
    return lambda: torch.cuda.synchronize(device)


@dataclass(frozen=True)
class MemoryPeak:
    """Peak memory while a loop ran.

    Attributes:
        host_rss_mib: peak resident set size of this process, in MiB.
        host_source: ``"sampled"`` (psutil, every few ms, during the loop) or ``"process peak"`` (getrusage:
            the highest value since the process started, so it can include earlier work).
        gpu_mib: peak memory allocated by torch on the CUDA device during the loop (torch backend only).
    """

    host_rss_mib: float
    host_source: str
    gpu_mib: float | None = None


class PeakMemory:
    """Context manager sampling this process's RSS in a background thread (psutil), plus torch's CUDA peak.

    Args:
        interval_s: sampling period.
        torch_device: a CUDA device whose torch allocator peak to record, or ``None``.
    """

    def __init__(self, *, interval_s: float = 0.005, torch_device: str | None = None) -> None:
        self.interval_s = interval_s
        self.torch_device = torch_device
        self.result: MemoryPeak | None = None
        self._stop = threading.Event()
        self._peak = 0
        self._thread: threading.Thread | None = None
        try:
            import psutil

            self._process: Any = psutil.Process()
        except ImportError:
            self._process = None

    def _sample(self) -> None:
        while True:
            self._peak = max(self._peak, self._process.memory_info().rss)
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> PeakMemory:
        if self.torch_device is not None:
            sys.modules["torch"].cuda.reset_peak_memory_stats(self.torch_device)
        if self._process is not None:
            self._peak = self._process.memory_info().rss
            self._thread = threading.Thread(target=self._sample, name="rtdetr-bench-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        gpu = None
        if self.torch_device is not None:
            gpu = sys.modules["torch"].cuda.max_memory_allocated(self.torch_device) / 2**20
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.result = MemoryPeak(self._peak / 2**20, "sampled", gpu)
        else:
            # Linux reports ru_maxrss in KiB, macOS in bytes.
            scale = 1 if sys.platform == "darwin" else 1024
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
            self.result = MemoryPeak(peak / 2**20, "process peak", gpu)


def busy_seconds(proc_stat_line: str, *, ticks_per_second: int) -> float | None:
    """CPU seconds all processes spent busy, from the first (aggregate) line of ``/proc/stat``.

    Busy is user + nice + system + irq + softirq + steal (idle and iowait are not): steal is time the hypervisor
    gave this VM's CPUs to someone else, which slows a benchmark as much as a local process does. ``None`` for
    a line that is not the aggregate ``cpu`` line.
    """
    fields = proc_stat_line.split()
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / ticks_per_second


def _machine_busy_s() -> float | None:
    """CPU seconds all processes have spent busy since boot (``busy_seconds`` of ``/proc/stat``); None off Linux."""
    try:
        with open("/proc/stat") as f:
            line = f.readline()
    except OSError:
        return None
    return busy_seconds(line, ticks_per_second=os.sysconf("SC_CLK_TCK"))


class CpuContention:
    """Context manager measuring how much of the machine's CPU time *other* processes used while a block ran.

    ``other_share`` is (machine busy time - this process's CPU time) / (wall time x logical CPUs), in [0, 1]:
    0 on an otherwise idle machine, 0.5 when other work kept one of two CPUs busy. ``None`` off Linux.
    Timings taken while it is well above 0 are slowed by that other work.
    """

    def __init__(self) -> None:
        self.other_share: float | None = None

    def __enter__(self) -> CpuContention:
        self._start = (time.perf_counter(), _machine_busy_s(), sum(os.times()[:2]))
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._start[0]
        busy_start, busy_end = self._start[1], _machine_busy_s()
        own = sum(os.times()[:2]) - self._start[2]
        if busy_start is None or busy_end is None or wall <= 0:
            return
        other = (busy_end - busy_start) - own
        self.other_share = min(1.0, max(0.0, other / (wall * (os.cpu_count() or 1))))


@dataclass(frozen=True)
class StageSplit:
    """Where the time goes on real decoded frames, stage by stage, run one after another in one thread.

    Attributes:
        batch: frames per backend call.
        frames: timed frames (after the warm-up batches).
        stages: per-call latency of ``decode`` (one frame per call), ``preprocess``, ``inference`` and
            ``postprocess`` (one batch per call).
        per_frame_ms: mean milliseconds per frame of each stage.
        sequential_fps: frames per second when the stages run back to back (no overlap).
    """

    batch: int
    frames: int
    stages: dict[str, LatencyStats]
    per_frame_ms: dict[str, float]
    sequential_fps: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, with each stage's statistics as a dict."""
        return {
            "batch": self.batch,
            "frames": self.frames,
            "per_frame_ms": self.per_frame_ms,
            "sequential_fps": self.sequential_fps,
            "stages": {name: stats.as_dict() for name, stats in self.stages.items()},
        }


def open_video(path: Path, decoder: DecoderConfig | None = None) -> VideoSource:
    """Open ``path`` as a video (``ValueError`` for an image or anything else that is not one)."""
    source = open_source(path, decoder=decoder)
    if not isinstance(source, VideoSource):
        source.close()
        raise ValueError(f"--video must be a video file, got {path}")
    return source


def measure_stages(
    detector: Detector,
    video: Path,
    *,
    batch: int,
    frames: int,
    warmup_batches: int = 1,
    synchronize: Callable[[], None] | None = None,
) -> StageSplit:
    """Decode, preprocess, infer and post-process ``frames`` video frames in batches of ``batch``, timing each.

    Raises:
        ValueError: the video has fewer than ``batch * (warmup_batches + 1)`` frames.
    """
    sync = synchronize or (lambda: None)
    times: dict[str, list[float]] = {"decode": [], "preprocess": [], "inference": [], "postprocess": []}
    counted = 0
    calls = 0
    with open_video(video) as source:
        iterator = iter(source)
        while counted < frames:
            pending, decode_times = [], []
            for _ in range(batch):
                start = time.perf_counter()
                frame = next(iterator, None)
                decode_times.append(time.perf_counter() - start)
                if frame is None:
                    break
                pending.append(frame.image)
            if len(pending) < batch:
                break
            start = time.perf_counter()
            prepared = detector.preprocess(pending)
            sync()
            mid = time.perf_counter()
            outputs = detector.infer(prepared)
            sync()
            done = time.perf_counter()
            detector.postprocess(outputs, prepared)
            end = time.perf_counter()
            calls += 1
            if calls <= warmup_batches:
                continue
            times["decode"] += decode_times
            times["preprocess"].append(mid - start)
            times["inference"].append(done - mid)
            times["postprocess"].append(end - done)
            counted += batch
    if counted == 0:
        raise ValueError(
            f"{video}: too few frames for batch {batch} after {warmup_batches} warm-up batch(es); use a longer video"
        )
    stages = {
        name: summarize(values, batch=1 if name == "decode" else batch) for name, values in times.items() if values
    }
    per_frame = {name: float(np.sum(values)) / counted * 1e3 for name, values in times.items()}
    total_s = sum(float(np.sum(values)) for values in times.values())
    return StageSplit(batch, counted, stages, per_frame, counted / total_s if total_s > 0 else 0.0)


@dataclass(frozen=True)
class PipelineRun:
    """The threaded decode -> preprocess -> infer -> postprocess -> consume pipeline of ``rtdetr-infer`` on a video.

    Attributes:
        batch: frames per backend call.
        frames: frames that reached the consumer.
        wall_s: wall-clock seconds from start to the last frame.
        fps: ``frames / wall_s``.
        per_frame_ms: each stage's busy time per frame (stages overlap, so these do not add up to ``1/fps``).
        decoder: the decoder that read the video (``pyav``, ``opencv``, ``nvdec``).
        preprocess_workers: threads preprocessing batches.
    """

    batch: int
    frames: int
    wall_s: float
    fps: float
    per_frame_ms: dict[str, float] = field(default_factory=dict)
    decoder: str = ""
    preprocess_workers: int = DEFAULT_PREPROCESS_WORKERS

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "batch": self.batch,
            "frames": self.frames,
            "wall_s": self.wall_s,
            "fps": self.fps,
            "per_frame_ms": self.per_frame_ms,
            "decoder": self.decoder,
            "preprocess_workers": self.preprocess_workers,
        }


def measure_pipeline(
    detector: Detector,
    video: Path,
    *,
    batch: int,
    frames: int,
    decoder: DecoderConfig | None = None,
    preprocess_workers: int = DEFAULT_PREPROCESS_WORKERS,
) -> PipelineRun:
    """Run ``run_pipeline`` (its decode, preprocessing, inference and post-processing threads, a no-op consumer)
    over the first ``frames`` frames, decoded by ``decoder`` (``DecoderConfig()``: automatic)."""
    with open_video(video, decoder) as source:
        result = run_pipeline(
            itertools.islice(source, frames),
            detector,
            lambda frame, detections: None,
            batch=batch,
            preprocess_workers=preprocess_workers,
        )
        name = source.decoder
    per_frame = {stage: seconds / max(result.frames, 1) * 1e3 for stage, seconds in result.times.as_dict().items()}
    return PipelineRun(batch, result.frames, result.wall_s, result.fps, per_frame, name, preprocess_workers)
