"""The pipeline's stages: preprocessing workers never reorder frames, batches never mix frames, every batch size.

An echo backend returns, per image, its mean pixel as the score and the original size as the box, so every result
names the frame it was computed from; each frame's pixels hold its position in the source. The consumer checks
both against the source, independently of the pipeline's bookkeeping.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtdetr_deploy.metadata import ModelMetadata, Preprocessing
from rtdetr_deploy.runtime.backend import BackendBase
from rtdetr_deploy.runtime.detections import Detections
from rtdetr_deploy.runtime.detector import Detector, PreparedBatch
from rtdetr_deploy.runtime.pipeline import PipelineOptions, run_pipeline
from rtdetr_deploy.runtime.sources import Frame, open_source
from rtdetr_deploy.runtime.tensors import TensorSpec

FRAMES = 23


def pixel_value(position: int) -> int:
    """Frame ``position``'s constant pixel value: distinct for every position below 251."""
    return (position * 37) % 251 + 2


class EchoBackend(BackendBase):
    """``scores [B, 1]`` = mean input pixel (in [0, 1] after the /255 preprocessing), ``boxes [B, 1, 4]`` =
    ``(0, 0, width, height)`` of the original frame; records the original sizes of every call."""

    name = "echo"
    description = "echo backend"

    def __init__(self, *, max_batch: int = 8, fused: bool = False) -> None:
        self.fused = fused
        self.metadata = ModelMetadata(
            preset="echo",
            input_size=(8, 8),
            class_names=("thing",),
            category_ids=(7,),
            topk=1,
            batch=(1, 1, max_batch),
            preprocessing=Preprocessing(fused=fused),
        )
        if fused:
            self.input_specs = (TensorSpec("frames", (None, None, None, 3), np.dtype(np.uint8)),)
        else:
            self.input_specs = (
                TensorSpec("images", (None, 3, 8, 8), np.dtype(np.float32)),
                TensorSpec("orig_target_sizes", (None, 2), np.dtype(np.int64)),
            )
        self.output_specs = (
            TensorSpec("labels", (None, 1), np.dtype(np.int64)),
            TensorSpec("boxes", (None, 1, 4), np.dtype(np.float32)),
            TensorSpec("scores", (None, 1), np.dtype(np.float32)),
        )
        self.calls: list[list[tuple[int, int]]] = []

    @classmethod
    def from_path(cls, path: object, *, device: str | None = None) -> EchoBackend:
        raise NotImplementedError

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.fused:
            pixels = feed["frames"].astype(np.float32) / 255.0
            n, height, width = pixels.shape[:3]
            sizes_wh = np.tile([[width, height]], (n, 1))
        else:
            pixels, sizes_wh = feed["images"], feed["orig_target_sizes"]
            n = len(pixels)
        self.calls.append([(int(w), int(h)) for w, h in sizes_wh])
        boxes = np.zeros((n, 1, 4), np.float32)
        boxes[:, 0, 2:] = sizes_wh
        scores = pixels.reshape(n, -1).mean(1, keepdims=True).astype(np.float32)
        return {"labels": np.zeros((n, 1), np.int64), "boxes": boxes, "scores": scores}

    def close(self) -> None:
        pass


def frame_size_hw(position: int, *, fused: bool) -> tuple[int, int]:
    """Unfused: a different size nearly every frame. Fused: runs of equal size (3, 3, 2, 3, 3, 2, ...)."""
    if fused:
        run = (position // 8) * 3 + min(position % 8, 7) // 3
        return 12 + 2 * (run % 4), 16 + run % 3
    return 10 + position % 5, 14 + position % 7


class Source:
    def __init__(self, count: int, *, fused: bool = False) -> None:
        self.count, self.fused = count, fused

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.count):
            image = np.full((*frame_size_hw(i, fused=self.fused), 3), pixel_value(i), np.uint8)
            yield Frame(image=image, index=i, image_id=i, name=f"frame_{i:06d}")


def _run(detector: Detector, *, batch: int, workers: int, fused: bool = False) -> list[tuple[Frame, Detections]]:
    seen: list[tuple[Frame, Detections]] = []
    result = run_pipeline(
        Source(FRAMES, fused=fused), detector, lambda f, d: seen.append((f, d)), batch=batch, preprocess_workers=workers
    )
    assert result.frames == FRAMES and not result.interrupted and not result.stopped
    return seen


def _check_pairs(seen: list[tuple[Frame, Detections]], *, fused: bool) -> None:
    assert [frame.index for frame, _ in seen] == list(range(FRAMES))
    for position, (frame, detections) in enumerate(seen):
        assert int(frame.image[0, 0, 0]) == pixel_value(position)
        assert len(detections) == 1
        assert round(float(detections.scores[0]) * 255) == pixel_value(position)
        height, width = frame_size_hw(position, fused=fused)
        np.testing.assert_array_equal(detections.boxes_xyxy[0], [0, 0, width, height])


def _force_out_of_order(detector: Detector, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the first batch's preprocessing finish only after the second one's; returns the completion order."""
    original = detector.preprocess
    calls, completed = itertools.count(), []
    second_done = threading.Event()

    def preprocess(images: list[np.ndarray]) -> PreparedBatch:
        call = next(calls)
        if call == 0:
            assert second_done.wait(timeout=30), "the second batch never finished"
        prepared = original(images)
        completed.append(call)
        if call == 1:
            second_done.set()
        return prepared

    monkeypatch.setattr(detector, "preprocess", preprocess)
    return completed


@pytest.mark.parametrize("batch", [1, 3, 8])
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_order_and_pairing_at_every_batch_size_and_worker_count(
    batch: int, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = EchoBackend()
    detector = Detector(backend, conf=0.0)
    completed = _force_out_of_order(detector, monkeypatch) if workers > 1 else []
    seen = _run(detector, batch=batch, workers=workers)
    _check_pairs(seen, fused=False)
    if workers > 1:
        assert completed.index(1) < completed.index(0), "the test did not make the workers finish out of order"
    expected = [list(range(s, min(s + batch, FRAMES))) for s in range(0, FRAMES, batch)]
    sizes = [[frame_size_hw(i, fused=False)[::-1] for i in chunk] for chunk in expected]
    assert backend.calls == sizes


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_fused_batches_break_where_the_frame_size_changes(batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = EchoBackend(fused=True)
    detector = Detector(backend, conf=0.0)
    _force_out_of_order(detector, monkeypatch)
    seen = _run(detector, batch=batch, workers=3, fused=True)
    _check_pairs(seen, fused=True)
    # The expected batches, by hand: consecutive runs of one size, each cut into pieces of at most ``batch``.
    runs = [list(group) for _, group in itertools.groupby(range(FRAMES), key=lambda i: frame_size_hw(i, fused=True))]
    expected = [run[s : s + batch] for run in runs for s in range(0, len(run), batch)]
    assert backend.calls == [[frame_size_hw(i, fused=True)[::-1] for i in chunk] for chunk in expected]
    assert len(runs) > 1 and any(len(run) > 1 for run in runs)


def test_detect_batches_a_fused_model_by_frame_size() -> None:
    backend = EchoBackend(max_batch=4, fused=True)
    detector = Detector(backend, conf=0.0)
    images = [np.full((*frame_size_hw(i, fused=True), 3), pixel_value(i), np.uint8) for i in range(9)]
    results = detector(images)
    assert [round(float(d.scores[0]) * 255) for d in results] == [pixel_value(i) for i in range(9)]
    assert [len(call) for call in backend.calls] == [3, 3, 2, 1]
    with pytest.raises(ValueError, match=r"frames of different sizes \(12x16, 14x17, HxW\) cannot share a batch"):
        detector.preprocess(images[2:4])


def test_a_preprocessing_error_surfaces_after_the_frames_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    detector = Detector(EchoBackend(), conf=0.0)
    original = detector.preprocess

    def preprocess(images: list[np.ndarray]) -> PreparedBatch:
        if int(images[0][0, 0, 0]) == pixel_value(6):
            raise ValueError("frame 6 cannot be preprocessed")
        return original(images)

    monkeypatch.setattr(detector, "preprocess", preprocess)
    consumed: list[int] = []
    before = threading.active_count()
    with pytest.raises(ValueError, match="frame 6 cannot be preprocessed"):
        run_pipeline(Source(FRAMES), detector, lambda f, d: consumed.append(f.index), batch=2, preprocess_workers=3)
    assert consumed == list(range(6))
    assert threading.active_count() == before


def test_stage_times_are_recorded_for_every_stage() -> None:
    detector = Detector(EchoBackend(), conf=0.0)
    result = run_pipeline(Source(FRAMES), detector, lambda f, d: None, batch=4, preprocess_workers=2)
    times = result.times
    assert min(times.decode, times.preprocess, times.inference, times.postprocess, times.draw_write) > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preprocess_workers": 0}, "preprocess workers must be a positive integer, got 0"),
        ({"queue_size": -1}, "queue size must be a positive integer, got -1"),
        ({"preprocess_workers": True}, "got True"),
    ],
)
def test_bad_pipeline_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PipelineOptions(**kwargs)


def _indexed_video(path: Path, frames: int) -> Path:
    """A video whose frame ``i`` shows ``i`` in binary as 8 blocks of 16 pixels (black 0, white 1)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (160, 96))
    assert writer.isOpened()
    for i in range(frames):
        image = np.full((96, 160, 3), 128, np.uint8)
        for bit in range(8):
            image[:16, bit * 16 : (bit + 1) * 16] = 255 if (i >> bit) & 1 else 0
        writer.write(image)
    writer.release()
    return path


def _shown_index(image: np.ndarray) -> int:
    return sum(1 << bit for bit in range(8) if image[3:13, bit * 16 + 3 : bit * 16 + 13].mean() > 128)


@pytest.mark.parametrize(("batch", "workers"), [(1, 1), (3, 2), (4, 3)])
def test_a_decoded_video_keeps_its_frame_order_through_the_real_model(
    onnx_detector: Detector, tmp_path: Path, batch: int, workers: int
) -> None:
    path = _indexed_video(tmp_path / "indexed.mp4", 14)
    shown: list[tuple[int, int, int]] = []
    with open_source(path) as source:
        result = run_pipeline(
            source,
            onnx_detector,
            lambda f, d: shown.append((f.index, _shown_index(f.image), len(d))),
            batch=batch,
            preprocess_workers=workers,
        )
    assert result.frames == 14
    assert [(i, i) for i in range(14)] == [(index, pixels) for index, pixels, _ in shown]
    assert all(n == onnx_detector.metadata.topk for _, _, n in shown)
