"""Threaded decode -> preprocess -> infer -> postprocess -> consume pipeline with bounded queues.

Five stages run concurrently, each off the others' critical path:

- **decode** (one thread): reads frames from the source (whose decoder may run FFmpeg threads of its own, see
  ``decoders``) and cuts them into batches of up to ``batch`` consecutive frames that may share a batch
  (``Detector.batch_key``: a fused-preprocessing model's batch also ends where the frame size changes);
- **preprocess** (a pool of ``preprocess_workers`` threads): each batch becomes backend inputs. Every batch is
  handed on as a future, queued in the order it was cut, so any number of workers never reorders frames;
- **inference** (one thread): the backend, batch after batch;
- **postprocess** (one thread): backend outputs to ``Detections``;
- the calling thread consumes the results in frame order (drawing, encoding, writing, displaying).

OpenCV, numpy and the backends release the GIL in their heavy work, so the stages overlap for real. Bounded
queues keep memory flat on videos of any length, and throughput approaches the slowest stage's own rate (see
``bench.throughput``). Ctrl-C, a consumer asking to stop, or the source ending early all stop the threads
cleanly and return what was done; an error in a stage is re-raised in the caller after the threads stop.

While the pipeline runs in the main thread, the first Ctrl-C only sets a flag that is checked between frames, so it
never lands in the middle of writing a frame (the video and the JSON then hold the same frames); the handler
steps aside after that first signal, so a second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import concurrent.futures
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .detections import Detections
from .detector import Detector, PreparedBatch
from .sources import Frame

__all__ = ["DEFAULT_PREPROCESS_WORKERS", "PipelineOptions", "StageTimes", "PipelineResult", "run_pipeline"]

_POLL_S = 0.05
DEFAULT_PREPROCESS_WORKERS = 2


@dataclass(frozen=True)
class PipelineOptions:
    """How the pipeline runs, beside the batch size (``rtdetr-infer --preprocess-workers`` maps onto this).

    Attributes:
        preprocess_workers: threads preprocessing batches in parallel; frames keep their order whatever the count.
        queue_size: frames buffered between decoding and inference (bounds memory).
    """

    preprocess_workers: int = DEFAULT_PREPROCESS_WORKERS
    queue_size: int = 8

    def __post_init__(self) -> None:
        for name in ("preprocess_workers", "queue_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be a positive integer, got {value!r}")


@dataclass
class StageTimes:
    """Busy seconds of each stage, summed over the run (the stages overlap in time; ``preprocess`` adds up its
    workers, so it can exceed the wall time)."""

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


def _result(future: concurrent.futures.Future, stop: threading.Event) -> Any:
    """The future's result (its error re-raised) unless ``stop`` is set first; ``None`` when the run is stopping."""
    while not stop.is_set():
        try:
            return future.result(timeout=_POLL_S)
        except concurrent.futures.TimeoutError:
            continue
    return None


class _Run:
    """The state one ``run_pipeline`` call shares between its threads; each stage is a method."""

    def __init__(self, source: Iterable[Frame], detector: Detector, *, batch: int, options: PipelineOptions) -> None:
        self.source = source
        self.detector = detector
        self.batch = batch
        self.result = PipelineResult()
        self.stop = threading.Event()
        # Futures of preprocessed batches, in frame order: as many as the workers can fill, and the frame budget.
        self.prepared_q: queue.Queue = queue.Queue(maxsize=max(options.preprocess_workers, options.queue_size // batch))
        self.outputs_q: queue.Queue = queue.Queue(maxsize=1)
        self.results_q: queue.Queue = queue.Queue(maxsize=1)
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=options.preprocess_workers, thread_name_prefix="rtdetr-preprocess"
        )

    def _prepare(self, frames: list[Frame]) -> tuple[list[Frame], PreparedBatch, float]:
        start = time.perf_counter()
        prepared = self.detector.preprocess([frame.image for frame in frames])
        return frames, prepared, time.perf_counter() - start

    def _submit(self, frames: list[Frame]) -> bool:
        return _put(self.prepared_q, self.pool.submit(self._prepare, frames), self.stop)

    def decode(self) -> None:
        """Read frames and hand batches to the preprocessing pool, in order; frames read before an error count."""
        times, error = self.result.times, None
        pending: list[Frame] = []
        pending_key: object = None
        try:
            iterator = iter(self.source)
            while not self.stop.is_set():
                start = time.perf_counter()
                frame = next(iterator, None)
                times.decode += time.perf_counter() - start
                if frame is None:
                    break
                key = self.detector.batch_key(frame.image)
                if pending and key != pending_key:
                    if not self._submit(pending):
                        return
                    pending = []
                pending.append(frame)
                pending_key = key
                if len(pending) == self.batch:
                    if not self._submit(pending):
                        return
                    pending = []
        except BaseException as exc:  # handed to the caller, which re-raises it
            error = exc
        if pending and not self._submit(pending):
            return
        _put(self.prepared_q, _End(error), self.stop)

    def infer(self) -> None:
        """Run the backend on each preprocessed batch, in the order the batches were cut."""
        times, end = self.result.times, None
        try:
            while end is None:
                item = _get(self.prepared_q, self.stop)
                if item is None:
                    return
                if isinstance(item, _End):
                    end = item
                    break
                done = _result(item, self.stop)
                if done is None:
                    return
                frames, prepared, seconds = done
                times.preprocess += seconds
                start = time.perf_counter()
                outputs = self.detector.infer(prepared)
                times.inference += time.perf_counter() - start
                if not _put(self.outputs_q, (frames, prepared, outputs), self.stop):
                    return
        except BaseException as exc:  # handed to the caller, which re-raises it
            end = _End(exc)
        _put(self.outputs_q, end, self.stop)

    def postprocess(self) -> None:
        """Backend outputs to ``(frame, Detections)`` pairs, batch by batch."""
        times, end = self.result.times, None
        try:
            while end is None:
                item = _get(self.outputs_q, self.stop)
                if item is None:
                    return
                if isinstance(item, _End):
                    end = item
                    break
                frames, prepared, outputs = item
                start = time.perf_counter()
                detections = self.detector.postprocess(outputs, prepared)
                times.postprocess += time.perf_counter() - start
                if not _put(self.results_q, list(zip(frames, detections, strict=True)), self.stop):
                    return
        except BaseException as exc:  # handed to the caller, which re-raises it
            end = _End(exc)
        _put(self.results_q, end, self.stop)

    def consume(self, consume: Callable[[Frame, Detections], bool | None], ctrl_c: threading.Event) -> None:
        """Feed the consumer in frame order until the end, an error (raised), a stop request or Ctrl-C."""
        result = self.result
        while True:
            try:
                item = self.results_q.get(timeout=_POLL_S)
            except queue.Empty:
                if ctrl_c.is_set():
                    raise KeyboardInterrupt from None
                continue
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            for frame, detections in item:
                if ctrl_c.is_set():
                    raise KeyboardInterrupt
                start = time.perf_counter()
                keep_going = consume(frame, detections) is not False
                result.times.draw_write += time.perf_counter() - start
                result.frames += 1
                if not keep_going:
                    result.stopped = True
                    return


def run_pipeline(
    source: Iterable[Frame],
    detector: Detector,
    consume: Callable[[Frame, Detections], bool | None],
    *,
    batch: int = 1,
    queue_size: int = 8,
    preprocess_workers: int = DEFAULT_PREPROCESS_WORKERS,
) -> PipelineResult:
    """Run ``detector`` over ``source``, calling ``consume(frame, detections)`` in this thread, in frame order.

    Args:
        source: frames to process (decoded in a background thread).
        detector: the detector; its preprocessing, backend and post-processing run in background threads.
        consume: called once per frame, in order; return ``False`` to stop the run early.
        batch: frames per backend call, at most ``detector.max_batch``.
        queue_size: frames buffered between decoding and inference (bounds memory).
        preprocess_workers: threads preprocessing batches in parallel (frames keep their order).

    Returns:
        Frame count, wall time, per-stage times, and whether the run was interrupted or stopped early.

    Raises:
        ValueError: ``batch``, ``queue_size`` or ``preprocess_workers`` out of range.
        Whatever a stage raised (after all threads have stopped).
    """
    options = PipelineOptions(preprocess_workers=preprocess_workers, queue_size=queue_size)
    if not 1 <= batch <= detector.max_batch:
        raise ValueError(f"batch {batch} must be between 1 and the model's batch limit {detector.max_batch}")
    run = _Run(source, detector, batch=batch, options=options)
    ctrl_c = threading.Event()
    restore_sigint = _defer_sigint(ctrl_c)
    threads = [
        threading.Thread(target=stage, name=f"rtdetr-{stage.__name__}", daemon=True)
        for stage in (run.decode, run.infer, run.postprocess)
    ]
    wall_start = time.perf_counter()
    try:
        for thread in threads:
            thread.start()
        run.consume(consume, ctrl_c)
    except KeyboardInterrupt:
        run.result.interrupted = True
    finally:
        run.stop.set()
        for thread in threads:
            if thread.ident is not None:
                thread.join()
        run.pool.shutdown(wait=True, cancel_futures=True)
        restore_sigint()
        run.result.wall_s = time.perf_counter() - wall_start
    return run.result


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
