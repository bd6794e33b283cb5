"""Threaded decode -> preprocess+infer -> draw/write pipeline with bounded queues.

Three stages run concurrently: a decode thread reads frames from the source, an inference thread batches,
preprocesses, runs the backend and post-processes, and the calling thread consumes the results (drawing, encoding,
writing, displaying). Bounded queues keep memory flat on videos of any length, and throughput approaches the
slowest stage, normally inference. Ctrl-C, a consumer asking to stop, or the source ending early all stop the
threads cleanly and return what was done; an error in a stage is re-raised in the caller after the threads stop.

While the pipeline runs in the main thread, the first Ctrl-C only sets a flag that is checked between frames, so it
never lands in the middle of writing a frame (the video and the JSON then hold the same frames); the handler
steps aside after that first signal, so a second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

from .detections import Detections
from .detector import Detector
from .sources import Frame

__all__ = ["StageTimes", "PipelineResult", "run_pipeline"]

_POLL_S = 0.05


@dataclass
class StageTimes:
    """Seconds spent in each stage, summed over the run (the stages overlap in time)."""

    decode: float = 0.0
    preprocess: float = 0.0
    inference: float = 0.0
    postprocess: float = 0.0
    draw_write: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "decode": self.decode,
            "preprocess": self.preprocess,
            "inference": self.inference,
            "postprocess": self.postprocess,
            "draw/write": self.draw_write,
        }


@dataclass
class PipelineResult:
    """What a run did.

    Attributes:
        frames: frames whose results reached the consumer.
        wall_s: wall-clock seconds of the run.
        times: per-stage seconds.
        interrupted: stopped by Ctrl-C before the source ended.
        stopped: stopped because the consumer returned ``False``.
    """

    frames: int = 0
    wall_s: float = 0.0
    times: StageTimes = field(default_factory=StageTimes)
    interrupted: bool = False
    stopped: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


class _End:
    """Sentinel: the stage before has finished (``error`` set when it failed)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put unless ``stop`` is set; ``False`` when it was dropped because the run is stopping."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> object | None:
    """Get unless ``stop`` is set; ``None`` when the run is stopping."""
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return None


def run_pipeline(
    source: Iterable[Frame],
    detector: Detector,
    consume: Callable[[Frame, Detections], bool | None],
    *,
    batch: int = 1,
    queue_size: int = 8,
) -> PipelineResult:
    """Run ``detector`` over ``source``, calling ``consume(frame, detections)`` in this thread, in frame order.

    Args:
        source: frames to process (decoded in a background thread).
        detector: the detector; its backend runs in a second background thread.
        consume: called once per frame, in order; return ``False`` to stop the run early.
        batch: frames per backend call, at most ``detector.max_batch``.
        queue_size: frames buffered between stages (bounds memory).

    Returns:
        Frame count, wall time, per-stage times, and whether the run was interrupted or stopped early.

    Raises:
        ValueError: ``batch`` out of range.
        Whatever a stage raised (after all threads have stopped).
    """
    if not 1 <= batch <= detector.max_batch:
        raise ValueError(f"batch {batch} must be between 1 and the model's batch limit {detector.max_batch}")
    result = PipelineResult()
    times = result.times
    stop = threading.Event()
    frames_q: queue.Queue = queue.Queue(maxsize=max(queue_size, batch))
    results_q: queue.Queue = queue.Queue(maxsize=max(2, queue_size // batch))

    def decode() -> None:
        error = None
        try:
            iterator = iter(source)
            while not stop.is_set():
                start = time.perf_counter()
                frame = next(iterator, None)
                times.decode += time.perf_counter() - start
                if frame is None or not _put(frames_q, frame, stop):
                    break
        except BaseException as exc:  # handed to the caller, which re-raises it
            error = exc
        _put(frames_q, _End(error), stop)

    def infer() -> None:
        pending: list[Frame] = []
        end: _End | None = None
        try:
            while end is None and not stop.is_set():
                item = _get(frames_q, stop)
                if item is None:
                    return
                if isinstance(item, _End):
                    end = item
                else:
                    pending.append(cast(Frame, item))
                if pending and (len(pending) == batch or end is not None):
                    start = time.perf_counter()
                    prepared = detector.preprocess([f.image for f in pending])
                    mid = time.perf_counter()
                    outputs = detector.infer(prepared)
                    done = time.perf_counter()
                    detections = detector.postprocess(outputs, prepared)
                    times.preprocess += mid - start
                    times.inference += done - mid
                    times.postprocess += time.perf_counter() - done
                    if not _put(results_q, list(zip(pending, detections, strict=True)), stop):
                        return
                    pending = []
        except BaseException as exc:  # handed to the caller, which re-raises it
            end = _End(exc)
        _put(results_q, end or _End(), stop)

    ctrl_c = threading.Event()
    restore_sigint = _defer_sigint(ctrl_c)
    threads = [threading.Thread(target=decode, name="rtdetr-decode", daemon=True)]
    threads.append(threading.Thread(target=infer, name="rtdetr-infer", daemon=True))
    error: BaseException | None = None
    wall_start = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        while True:
            try:
                item = results_q.get(timeout=_POLL_S)
            except queue.Empty:
                if ctrl_c.is_set():
                    raise KeyboardInterrupt from None
                continue
            if isinstance(item, _End):
                error = item.error
                break
            keep_going = True
            for frame, detections in item:
                if ctrl_c.is_set():
                    raise KeyboardInterrupt
                start = time.perf_counter()
                keep_going = consume(frame, detections) is not False
                times.draw_write += time.perf_counter() - start
                result.frames += 1
                if not keep_going:
                    break
            if not keep_going:
                result.stopped = True
                break
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        restore_sigint()
        result.wall_s = time.perf_counter() - wall_start
    if error is not None:
        raise error
    return result


def _defer_sigint(flag: threading.Event) -> Callable[[], None]:
    """Turn the first SIGINT into ``flag.set()`` (main thread only); returns the function that undoes it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: object) -> None:
        flag.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, on_sigint)

    def restore() -> None:
        if signal.getsignal(signal.SIGINT) is on_sigint:
            signal.signal(signal.SIGINT, previous)

    return restore
