"""Each stage of the video pipeline on its own, as frames per second, and which one bounds the pipeline.

A threaded pipeline (``runtime.pipeline``) runs no faster than its slowest stage. Each stage is measured alone,
the way the pipeline runs it:

- **decode**: the source's decoder, with its threads, reading the video and nothing else (``measure_decode``);
- **preprocess**: ``Detector.preprocess`` on decoded frames in batches, by ``preprocess_workers`` threads at once;
- **inference**: ``Detector.infer`` on one prepared batch, again and again;
- **postprocess**: ``Detector.postprocess`` on that batch's outputs.

``StageRates.bound_by`` names the slowest; ``bound_line`` reads the pipeline's own end-to-end rate against it.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.decoders import DecoderConfig
from ..runtime.detector import Detector
from ..runtime.pipeline import DEFAULT_PREPROCESS_WORKERS
from .timing import open_video, time_calls

__all__ = ["STAGES", "DecodeRate", "StageRates", "bound_line", "measure_decode", "measure_stage_rates"]

STAGES = ("decode", "preprocess", "inference", "postprocess")
DECODE_WARMUP = 8
# Frames kept in memory for the preprocessing measurement; batches cycle through them.
KEPT_FRAMES = 32


@dataclass(frozen=True)
class DecodeRate:
    """Decoding alone.

    Attributes:
        decoder: the decoder that ran (``auto`` resolved: ``pyav`` or ``opencv``).
        threads: decoder threads asked for (``0``: FFmpeg's choice, one per core).
        frames: timed frames (after ``DECODE_WARMUP`` untimed ones).
        seconds: wall-clock seconds of the timed frames.
        size_wh: ``(width, height)`` of the frames.
    """

    decoder: str
    threads: int
    frames: int
    seconds: float
    size_wh: tuple[int, int]

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "size_wh": list(self.size_wh), "fps": self.fps}


def measure_decode(
    video: str | os.PathLike[str], *, decoder: DecoderConfig, frames: int, keep: int = 0
) -> tuple[DecodeRate, list[np.ndarray]]:
    """Decode up to ``frames`` frames after ``DECODE_WARMUP`` untimed ones (opening, thread start-up).

    Args:
        video: a video file.
        decoder: the decoder and its threads.
        frames: frames to time (fewer if the video ends first).
        keep: also return the first ``keep`` decoded frames (BGR uint8 ``[H, W, 3]``).

    Raises:
        ValueError: not a video, or no frame left to time after the warm-up.
    """
    kept: list[np.ndarray] = []
    with open_video(Path(video), decoder) as source:
        iterator = iter(source)
        for frame in itertools.islice(iterator, DECODE_WARMUP):
            if len(kept) < keep:
                kept.append(frame.image)
        count, start = 0, time.perf_counter()
        for frame in itertools.islice(iterator, frames):
            count += 1
            if len(kept) < keep:
                kept.append(frame.image)
        seconds = time.perf_counter() - start
        rate = DecodeRate(source.decoder, decoder.threads, count, seconds, source.size)
    if count == 0:
        raise ValueError(f"{video}: no frame left to time after {DECODE_WARMUP} warm-up frames; use a longer video")
    return rate, kept


@dataclass(frozen=True)
class StageRates:
    """Each stage alone, in frames per second (see the module docstring).

    Attributes:
        batch: frames per backend call.
        preprocess_workers: threads preprocessing at once.
        decode: the decoding measurement.
        fps: frames per second of each of ``STAGES``.
        frames: frames (or frames' worth of batches) timed per stage.
    """

    batch: int
    preprocess_workers: int
    decode: DecodeRate
    fps: dict[str, float]
    frames: int

    @property
    def bound_by(self) -> str:
        """The slowest stage alone: the pipeline cannot beat its rate."""
        return min(STAGES, key=lambda stage: self.fps[stage])

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, ``bound_by`` included."""
        return {
            "batch": self.batch,
            "preprocess_workers": self.preprocess_workers,
            "decoder": self.decode.decoder,
            "decode_threads": self.decode.threads,
            "frames": self.frames,
            "fps": dict(self.fps),
            "bound_by": self.bound_by,
        }


def _preprocess_fps(detector: Detector, batches: Sequence[list[np.ndarray]], workers: int) -> float:
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(detector.preprocess, batches[:workers]))  # warm-up: thread start, first allocations
        start = time.perf_counter()
        list(pool.map(detector.preprocess, batches))
        seconds = time.perf_counter() - start
    return sum(len(b) for b in batches) / seconds if seconds > 0 else 0.0


def measure_stage_rates(
    detector: Detector,
    video: str | os.PathLike[str],
    *,
    batch: int,
    frames: int,
    decoder: DecoderConfig | None = None,
    preprocess_workers: int = DEFAULT_PREPROCESS_WORKERS,
    synchronize: Callable[[], None] | None = None,
) -> StageRates:
    """Measure each stage alone on ``video``'s frames (about ``frames`` frames per stage).

    Args:
        detector: the detector whose preprocessing, backend and post-processing are timed.
        video: a video file.
        batch: frames per backend call (at most ``detector.max_batch``).
        frames: frames to time per stage.
        decoder: the decoder and its threads (``DecoderConfig()``: automatic).
        preprocess_workers: threads preprocessing at once.
        synchronize: called around each timed inference (``torch.cuda.synchronize`` for the torch backend).

    Raises:
        ValueError: not a video, too short a video, or ``batch`` beyond the model's limit.
    """
    if not 1 <= batch <= detector.max_batch:
        raise ValueError(f"batch {batch} must be between 1 and the model's batch limit {detector.max_batch}")
    decode, kept = measure_decode(video, decoder=decoder or DecoderConfig(), frames=frames, keep=KEPT_FRAMES)
    cycle = itertools.cycle(kept)
    batches = [[next(cycle) for _ in range(batch)] for _ in range(max(1, -(-frames // batch)))]
    rates = {"decode": decode.fps, "preprocess": _preprocess_fps(detector, batches, preprocess_workers)}
    prepared = detector.preprocess(batches[0])
    calls = len(batches)
    latencies = time_calls(lambda: detector.infer(prepared), warmup=2, iters=calls, synchronize=synchronize)
    rates["inference"] = batch * calls / sum(latencies)
    outputs = detector.infer(prepared)
    latencies = time_calls(lambda: detector.postprocess(outputs, prepared), warmup=1, iters=calls)
    rates["postprocess"] = batch * calls / sum(latencies)
    return StageRates(batch, preprocess_workers, decode, rates, calls * batch)


def bound_line(rates: Mapping[str, Any], pipeline_fps: float) -> str:
    """One line reading the pipeline's rate against its slowest stage, from ``StageRates.as_dict()``:
    ``"pipeline 142.0 FPS, 97% of its slowest stage alone: preprocess, 146.3 frames/s (2 workers)"``."""
    stage = rates["bound_by"]
    slowest = rates["fps"][stage]
    share = pipeline_fps / slowest if slowest > 0 else 0.0
    how = {
        "decode": f"{rates['decoder']} decoder, {rates['decode_threads'] or 'auto'} threads",
        "preprocess": f"{rates['preprocess_workers']} workers",
    }.get(stage, f"batch {rates['batch']}")
    return (
        f"pipeline {pipeline_fps:.1f} FPS, {share:.0%} of its slowest stage alone: {stage}, "
        f"{slowest:.1f} frames/s ({how})"
    )
