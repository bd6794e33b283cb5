"""The threaded pipeline: order, batching, bounded memory, Ctrl-C, early stop and errors in any stage."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rtdetr_deploy.runtime.detections import Detections
from rtdetr_deploy.runtime.detector import Detector, PreparedBatch
from rtdetr_deploy.runtime.pipeline import run_pipeline
from rtdetr_deploy.runtime.sources import Frame


class _CountingSource:
    """Synthetic frames; records how many were decoded so the test can bound the look-ahead."""

    def __init__(self, count: int, *, fail_at: int | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.decoded = 0

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.count):
            if i == self.fail_at:
                raise ValueError(f"frame {i} is broken")
            self.decoded += 1
            image = np.full((24 + i % 3, 32, 3), i % 256, np.uint8)
            yield Frame(image=image, index=i, image_id=i, name=f"frame_{i:06d}")


@pytest.mark.parametrize("batch", [1, 3])
def test_order_and_batching(onnx_detector: Detector, batch: int) -> None:
    seen: list[tuple[int, int]] = []
    source = _CountingSource(8)
    result = run_pipeline(source, onnx_detector, lambda f, d: seen.append((f.index, len(d))), batch=batch)
    assert [i for i, _ in seen] == list(range(8))
    assert all(n == onnx_detector.metadata.topk for _, n in seen)
    assert result.frames == 8 and not result.interrupted and not result.stopped
    assert result.times.inference > 0 and result.wall_s > 0
    assert set(result.times.as_dict()) == {"decode", "preprocess", "inference", "postprocess", "draw/write"}


def test_decoding_stays_bounded_behind_a_slow_consumer(onnx_detector: Detector) -> None:
    source = _CountingSource(200)
    lead: list[int] = []

    def slow(frame: Frame, detections: Detections) -> bool:
        lead.append(source.decoded - frame.index)
        return frame.index < 40

    result = run_pipeline(source, onnx_detector, slow, batch=1, queue_size=4)
    assert result.stopped and result.frames == 41
    # Frames in flight: frame queue + result queue + one in each stage; never the whole video.
    assert max(lead) <= 4 + 2 + 3
    assert source.decoded < 60


def test_ctrl_c_stops_cleanly_with_results_so_far(onnx_detector: Detector) -> None:
    consumed: list[int] = []

    def interrupt(frame: Frame, detections: Detections) -> None:
        if frame.index == 5:
            raise KeyboardInterrupt
        consumed.append(frame.index)

    before = threading.active_count()
    result = run_pipeline(_CountingSource(100), onnx_detector, interrupt)
    assert result.interrupted and consumed == list(range(5))
    assert threading.active_count() == before


def test_sigint_stops_between_frames_never_inside_one(onnx_detector: Detector) -> None:
    import signal

    handler = signal.getsignal(signal.SIGINT)
    finished: list[int] = []

    def consume(frame: Frame, detections: Detections) -> None:
        if frame.index == 5:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of handling frame 5
        finished.append(frame.index)

    result = run_pipeline(_CountingSource(100), onnx_detector, consume)
    assert result.interrupted and result.frames == 6
    assert finished == list(range(6))
    assert signal.getsignal(signal.SIGINT) is handler


def test_source_errors_surface_after_earlier_frames(onnx_detector: Detector) -> None:
    consumed: list[int] = []
    with pytest.raises(ValueError, match="frame 6 is broken"):
        run_pipeline(_CountingSource(10, fail_at=6), onnx_detector, lambda f, d: consumed.append(f.index), batch=4)
    assert consumed == list(range(6))


def test_backend_errors_surface(tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rtdetr_deploy.errors import BackendError

    with Detector(tiny_onnx) as detector:
        original = detector.infer
        calls = []

        def fails_on_third_call(batch: PreparedBatch) -> dict[str, np.ndarray]:
            calls.append(batch.count)
            if len(calls) == 3:
                raise BackendError("device lost")
            return original(batch)

        monkeypatch.setattr(detector, "infer", fails_on_third_call)
        consumed: list[int] = []
        with pytest.raises(BackendError, match="device lost"):
            run_pipeline(_CountingSource(10), detector, lambda f, d: consumed.append(f.index))
        assert consumed == [0, 1]


def test_batch_must_fit_the_model(onnx_detector: Detector) -> None:
    with pytest.raises(ValueError, match="batch limit 4"):
        run_pipeline(_CountingSource(1), onnx_detector, lambda f, d: None, batch=5)


def test_decoding_stays_bounded_with_several_preprocessing_workers(onnx_detector: Detector) -> None:
    source = _CountingSource(200)
    lead: list[int] = []

    def slow(frame: Frame, detections: Detections) -> bool:
        lead.append(source.decoded - frame.index)
        return frame.index < 40

    result = run_pipeline(source, onnx_detector, slow, batch=2, queue_size=4, preprocess_workers=4)
    assert result.stopped and result.frames == 41
    # In flight: 4 queued batches of 2 (one per worker), one batch held by each stage and each hand-over queue.
    assert max(lead) <= 4 * 2 + 5 * 2 + 1
    assert source.decoded < 80


def test_sigint_with_several_workers_stops_cleanly(onnx_detector: Detector) -> None:
    import signal

    finished: list[int] = []

    def consume(frame: Frame, detections: Detections) -> None:
        if frame.index == 7:
            signal.raise_signal(signal.SIGINT)
        finished.append(frame.index)

    before = threading.active_count()
    result = run_pipeline(_CountingSource(100), onnx_detector, consume, batch=3, preprocess_workers=3)
    assert result.interrupted and finished == list(range(8)) and result.frames == 8
    assert threading.active_count() == before
