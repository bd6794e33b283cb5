"""Tracking: identities survive the threaded pipeline at any batch size, duplicates of one object get one id, the
thresholds and names are validated, and track ids reach the COCO results."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np
import pytest

from rtdetr_deploy.metadata import ModelMetadata
from rtdetr_deploy.runtime.backend import BackendBase
from rtdetr_deploy.runtime.detections import Detections
from rtdetr_deploy.runtime.detector import Detector
from rtdetr_deploy.runtime.pipeline import run_pipeline
from rtdetr_deploy.runtime.sources import Frame
from rtdetr_deploy.runtime.tensors import TensorSpec
from rtdetr_deploy.runtime.tracking import TRACKERS, TrackerConfig, check_tracker_name

# trackers and supervision without opencv-python, installed for the session if missing (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("track_packages")

FRAMES = 40


def _paths(t: int) -> np.ndarray:
    """``[2, 4]`` xyxy boxes of two objects at frame ``t``: one moving right on top, one moving left below."""
    return np.array([[10 + 4 * t, 20, 50 + 4 * t, 60], [250 - 4 * t, 120, 290 - 4 * t, 160]], np.float32)


class SceneBackend(BackendBase):
    """Reads the frame index from the frame's constant pixel value and returns the two objects' boxes there."""

    name = "scene"
    description = "scene backend"

    def __init__(self) -> None:
        self.metadata = ModelMetadata(
            preset="scene", input_size=(8, 8), class_names=("thing",), category_ids=(1,), topk=2, batch=(1, 1, 8)
        )
        self.input_specs = (
            TensorSpec("images", (None, 3, 8, 8), np.dtype(np.float32)),
            TensorSpec("orig_target_sizes", (None, 2), np.dtype(np.int64)),
        )
        self.output_specs = (
            TensorSpec("labels", (None, 2), np.dtype(np.int64)),
            TensorSpec("boxes", (None, 2, 4), np.dtype(np.float32)),
            TensorSpec("scores", (None, 2), np.dtype(np.float32)),
        )

    @classmethod
    def from_path(cls, path: object, *, device: str | None = None) -> SceneBackend:
        raise NotImplementedError

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        frames = np.rint(feed["images"].reshape(len(feed["images"]), -1).mean(1) * 255).astype(int)
        boxes = np.stack([_paths(int(t)) for t in frames])
        n = len(frames)
        return {"labels": np.zeros((n, 2), np.int64), "boxes": boxes, "scores": np.full((n, 2), 0.9, np.float32)}

    def close(self) -> None:
        pass


def _frames() -> Iterator[Frame]:
    for t in range(FRAMES):
        yield Frame(image=np.full((180, 320, 3), t, np.uint8), index=t, image_id=t, name=f"frame_{t:06d}")


@pytest.mark.parametrize("batch", [1, 4])
def test_ids_continue_through_the_pipeline(batch: int) -> None:
    pytest.importorskip("trackers", reason="needs the trackers package (the [track] extra)")
    from rtdetr_deploy.runtime.tracking import Tracker, tracked

    detector = Detector(SceneBackend(), conf=0.1)
    seen: list[tuple[int, Detections]] = []
    tracker = Tracker(TrackerConfig(name="bytetrack", min_frames=2))
    result = run_pipeline(_frames(), detector, tracked(lambda f, d: seen.append((f.index, d)), tracker), batch=batch)
    assert result.frames == FRAMES and [i for i, _ in seen] == list(range(FRAMES))
    # From the second frame on (a track is confirmed after two matched frames) each object keeps one id.
    ids_of_object: dict[int, set[int]] = {0: set(), 1: set()}
    for _, found in seen[1:]:
        assert len(found) == 2
        for box, track_id in zip(found.boxes_xyxy, found.track_ids, strict=True):
            obj = 0 if box[1] < 90 else 1
            ids_of_object[obj].add(int(track_id))
    assert all(len(ids) == 1 for ids in ids_of_object.values()), ids_of_object
    assert ids_of_object[0] != ids_of_object[1]
    assert min(min(ids) for ids in ids_of_object.values()) >= 1


def _detections(boxes: list[list[float]], scores: list[float]) -> Detections:
    n = len(scores)
    return Detections(
        boxes_xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        scores=np.asarray(scores, np.float32),
        class_ids=np.zeros(n, np.int64),
        class_names=("thing",) * n,
        category_ids=np.ones(n, np.int64),
    )


def test_two_queries_on_one_object_get_one_id() -> None:
    pytest.importorskip("trackers", reason="needs the trackers package (the [track] extra)")
    from rtdetr_deploy.runtime.tracking import Tracker

    tracker = Tracker(TrackerConfig(name="bytetrack", min_frames=1))
    ids: set[int] = set()
    for t in range(10):
        x = 10 + 3 * t
        # The NMS-free model gives the object a second query at 0.93 with a box 1 px off (IoU ~0.95).
        found = tracker.update(_detections([[x, 10, x + 40, 50], [x + 1, 10, x + 41, 50]], [0.95, 0.93]))
        ids.update(int(i) for i in found.track_ids)
    assert len(ids) == 1


@pytest.mark.parametrize(("name", "first_id_frame"), [("bytetrack", 3), ("sort", 2)])
def test_default_min_frames_delays_the_first_id(name: str, first_id_frame: int) -> None:
    """ByteTrack's default is the measured 3 matched frames, the other trackers keep 2 (docs/tracking.md), also
    when a ByteTrack config is copied to another tracker (as ``rtdetr-eval --track`` does)."""
    pytest.importorskip("trackers", reason="needs the trackers package (the [track] extra)")
    from rtdetr_deploy.runtime.tracking import Tracker

    tracker = Tracker(dataclasses.replace(TrackerConfig(name="bytetrack"), name=name))
    ids = [tracker.update(_detections([[10 + 2 * t, 10, 50 + 2 * t, 50]], [0.95])).track_ids.tolist() for t in range(4)]
    assert ids == [[]] * (first_id_frame - 1) + [[1]] * (5 - first_id_frame)


@pytest.mark.parametrize("motion", ["xyxy", "xcycsr", "xcycwh"])
@pytest.mark.parametrize("metric", ["iou", "biou", "giou", "diou"])
def test_every_motion_and_match_metric_keeps_one_id_on_a_steady_path(motion: str, metric: str) -> None:
    """Each of the library's state estimators and similarities is passed through and tracks a steady object."""
    pytest.importorskip("trackers", reason="needs the trackers package (the [track] extra)")
    from rtdetr_deploy.runtime.tracking import Tracker

    tracker = Tracker(TrackerConfig(name="bytetrack", min_frames=1, motion=motion, match_metric=metric))
    steps = [_detections([[10 + 5 * t, 10, 50 + 5 * t, 60]], [0.95]) for t in range(12)]
    ids = [tracker.update(found).track_ids.tolist() for found in steps]
    assert ids[1:] == [[1]] * 11  # the first frame only starts the track


def test_thresholds_and_names_are_validated() -> None:
    with pytest.raises(ValueError, match="low <= high <= new-track"):
        TrackerConfig(low_score=0.7, high_score=0.5)
    with pytest.raises(ValueError, match="bytetrack, ocsort, botsort, sort"):
        check_tracker_name("deepsort")
    with pytest.raises(ValueError, match="did you mean 'ocsort'"):
        TrackerConfig(name="ocsrt")
    assert set(TRACKERS) == {"bytetrack", "ocsort", "botsort", "sort"}
    with pytest.raises(ValueError, match="unknown tracker motion 'xywh'; choose from xyxy, xcycsr, xcycwh"):
        TrackerConfig(motion="xywh")
    with pytest.raises(ValueError, match="unknown match metric 'ciou'; choose from iou, biou, giou, diou"):
        TrackerConfig(match_metric="ciou")


def test_track_ids_reach_the_coco_results() -> None:
    found = _detections([[0, 0, 10, 20]], [0.5])
    tracked = Detections(**{**found.__dict__, "track_ids": np.array([7], np.int64)})
    assert tracked.to_coco(3) == [
        {"image_id": 3, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 20.0], "score": 0.5, "track_id": 7}
    ]
    assert "track_id" not in found.to_coco(3)[0]


def test_tracking_and_slicing_run_without_torch() -> None:
    pytest.importorskip("trackers", reason="needs the trackers package (the [track] extra)")
    from helpers import run_without_torch

    proc = run_without_torch(
        """
        import numpy as np
        from rtdetr_deploy.runtime.detections import Detections
        from rtdetr_deploy.runtime.slicing import merge_across_tiles
        from rtdetr_deploy.runtime.tracking import Tracker, TrackerConfig

        tracker = Tracker(TrackerConfig(name="botsort", min_frames=1))
        for t in range(3):
            found = Detections(np.array([[t, 0, t + 20, 20]], np.float32), np.array([0.9], np.float32),
                               np.zeros(1, np.int64), ("thing",), np.ones(1, np.int64))
            out = tracker.update(found)
        assert out.track_ids.tolist() == [1], out.track_ids
        import supervision
        assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules), "torch got imported"
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
