"""Multi-object tracking over ``Detections`` with roboflow ``trackers`` (SORT, ByteTrack, OC-SORT, BoT-SORT).

``Tracker`` feeds each frame's detections, in frame order, to one of the library's trackers and returns the
detections that belong to a confirmed track, with ``track_ids`` set. The trackers associate boxes by IoU and are
class-agnostic; a track keeps the class of the detection it matched in that frame.

RT-DETR's scores are not a YOLO's: the NMS-free decoder gives each object one query with a high score and leaves
the other queries low, so the thresholds a tracker needs are measured on this model's scores
(``benchmarks/tracking_thresholds.py``; the measured values and how they were chosen are in docs/tracking.md):

- ``high_score``: detections at or above it are associated first (ByteTrack, OC-SORT, BoT-SORT); SORT sees only
  these;
- ``low_score``: detections below it are dropped; those between ``low_score`` and ``high_score`` may only continue
  an existing track (ByteTrack's second association), never start one;
- ``new_track_score``: an unmatched detection starts a track only at or above this score;
- ``duplicate_iou``: the trackers assume one box per object (a YOLO's NMS gives them that), but an NMS-free model
  can give one object two queries with high scores (the shipped tiny model does, measured); of two boxes overlapping
  by this IoU or more, only the higher-scoring one reaches the tracker (the model's own output is not changed).

Optional dependency: ``pip install 'rtdetr-deploy[track]'`` (``trackers``, Apache-2.0, and ``supervision``, MIT).
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .detections import Detections
from .drawing import class_color

__all__ = ["TRACKERS", "TrackerConfig", "Tracker", "check_tracker_name", "parse_thresholds", "Trails", "tracked"]

TRACKERS = ("bytetrack", "ocsort", "botsort", "sort")
# ByteTrack: 3 gave the fewest ids at the best IDF1 on the generated sequences (benchmarks/bytetrack_settings.py);
# the other trackers keep 2 (not measured otherwise).
MIN_FRAMES = {"bytetrack": 3}
# The library's Kalman state estimators and association similarities (``TrackerConfig.motion``, ``.match_metric``).
MOTIONS = {"xyxy": "XYXYStateEstimator", "xcycsr": "XCYCSRStateEstimator", "xcycwh": "XCYCWHStateEstimator"}
MATCH_METRICS = {"iou": "IoU", "biou": "BIoU", "giou": "GIoU", "diou": "DIoU"}
# ByteTrack: a fixed aspect ratio and buffered IoU gave the fewest ids at the best IDF1 on the generated sequences
# (benchmarks/bytetrack_motion.py); the other trackers keep the library's own (not measured otherwise).
MOTION = {"bytetrack": "xcycsr"}
MATCH_METRIC = {"bytetrack": "biou"}
INSTALL_HINT = "tracking needs the trackers package: pip install 'rtdetr-deploy[track]'"


def check_tracker_name(name: str) -> str:
    """``name`` if it is a known tracker; else ``ValueError`` listing the valid names (with a hint, never applied)."""
    if name in TRACKERS:
        return name
    hint = difflib.get_close_matches(str(name), TRACKERS, n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise ValueError(f"unknown tracker {name!r}{suggestion}; choose from {', '.join(TRACKERS)}")


def parse_thresholds(text: str) -> tuple[float, float, float]:
    """``"LOW,HIGH,NEW"`` (``--track-thresholds``) to three scores; their order is checked by ``TrackerConfig``.

    Raises:
        ValueError: not three numbers.
    """
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ValueError(f"--track-thresholds takes LOW,HIGH,NEW scores, got {text!r}")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class TrackerConfig:
    """Which tracker, and the score thresholds it works with (defaults: measured on the shipped tiny model).

    Attributes:
        name: one of ``TRACKERS``.
        high_score: first-association threshold in [0, 1].
        low_score: detections below it are ignored, in [0, ``high_score``].
        new_track_score: score an unmatched detection needs to start a track, in [``high_score``, 1].
        lost_frames: frames a lost track is kept for re-association.
        frame_rate: frames per second of the source (scales ``lost_frames``).
        min_frames: consecutive matched frames before a track gets its id; ``None``: the tracker's default in
            ``MIN_FRAMES`` (kept ``None`` so that ``dataclasses.replace(config, name=...)`` picks the new tracker's).
        duplicate_iou: IoU in (0, 1] at which the lower-scoring of two boxes is dropped before tracking; ``None``
            keeps every box.
        match_iou: least IoU in (0, 1] between a track's predicted box and a detection for a match (both of
            ByteTrack's associations; SORT's and OC-SORT's one); ``None``: the library's default for that tracker.
            BoT-SORT keeps its own three.
        motion: the Kalman state a track's box moves in, one of ``MOTIONS`` (the library's state estimators:
            corners ``xyxy``, centre/area/fixed aspect ``xcycsr``, centre/width/height ``xcycwh``); ``None``: the
            tracker's default in ``MOTION``, else the library's.
        match_metric: the box similarity of the association, one of ``MATCH_METRICS`` (the library's ``IoU``,
            buffered ``BIoU``, ``GIoU``, ``DIoU``); ``None``: the tracker's default in ``MATCH_METRIC``, else IoU.
    """

    name: str = "bytetrack"
    high_score: float = 0.6
    low_score: float = 0.2
    new_track_score: float = 0.8
    lost_frames: int = 30
    frame_rate: float = 30.0
    min_frames: int | None = None
    duplicate_iou: float | None = 0.7
    match_iou: float | None = None
    motion: str | None = None
    match_metric: str | None = None

    def __post_init__(self) -> None:
        check_tracker_name(self.name)
        if self.motion is not None and self.motion not in MOTIONS:
            raise ValueError(f"unknown tracker motion {self.motion!r}; choose from {', '.join(MOTIONS)}")
        if self.match_metric is not None and self.match_metric not in MATCH_METRICS:
            raise ValueError(f"unknown match metric {self.match_metric!r}; choose from {', '.join(MATCH_METRICS)}")
        if self.duplicate_iou is not None and not 0.0 < self.duplicate_iou <= 1.0:
            raise ValueError(f"duplicate_iou must lie in (0, 1] or be None, got {self.duplicate_iou}")
        if self.match_iou is not None and not 0.0 < self.match_iou <= 1.0:
            raise ValueError(f"match_iou must lie in (0, 1] or be None, got {self.match_iou}")
        if not 0.0 <= self.low_score <= self.high_score <= self.new_track_score <= 1.0:
            raise ValueError(
                "tracker thresholds must satisfy 0 <= low <= high <= new-track <= 1, got "
                f"low {self.low_score}, high {self.high_score}, new-track {self.new_track_score}"
            )
        if self.lost_frames < 0 or (self.min_frames is not None and self.min_frames < 1) or self.frame_rate <= 0:
            raise ValueError(
                f"lost_frames must be >= 0, min_frames >= 1 and frame_rate > 0, got {self.lost_frames}, "
                f"{self.min_frames}, {self.frame_rate}"
            )


def _library_tracker(config: TrackerConfig) -> Any:
    try:
        import trackers
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    common = {
        "lost_track_buffer": config.lost_frames,
        "frame_rate": config.frame_rate,
        "minimum_consecutive_frames": MIN_FRAMES.get(config.name, 2)
        if config.min_frames is None
        else config.min_frames,
    }
    motion = config.motion or MOTION.get(config.name)
    if motion is not None:
        from trackers.utils import state_representations

        common["state_estimator_class"] = getattr(state_representations, MOTIONS[motion])
    metric = config.match_metric or MATCH_METRIC.get(config.name)
    if metric is not None:
        from trackers.utils import iou

        common["iou"] = getattr(iou, MATCH_METRICS[metric])()
    matching = {} if config.match_iou is None else {"minimum_iou_threshold": config.match_iou}
    if config.name == "bytetrack":
        return trackers.ByteTrackTracker(
            **common,
            **matching,
            track_activation_threshold=config.new_track_score,
            high_conf_det_threshold=config.high_score,
        )
    if config.name == "ocsort":
        return trackers.OCSORTTracker(**common, **matching, high_conf_det_threshold=config.high_score)
    if config.name == "botsort":
        # Camera motion compensation is off: it needs the frames and is meant for moving cameras.
        return trackers.BoTSORTTracker(
            **common,
            track_activation_threshold=config.new_track_score,
            high_conf_det_threshold=config.high_score,
            enable_cmc=False,
        )
    return trackers.SORTTracker(**common, **matching, track_activation_threshold=config.new_track_score)


class Tracker:
    """Identities across frames for a ``Detector``'s detections; feed frames in order, one call per frame.

    Example::

        with Detector("model.onnx", conf=0.1) as detector:
            tracker = Tracker(TrackerConfig(name="bytetrack"))
            for frame in frames:
                tracked = tracker.update(detector(frame))   # tracked.track_ids: [N] int64

    Args:
        config: the tracker and its thresholds (``TrackerConfig()``: ByteTrack, measured thresholds).

    Raises:
        ImportError: ``trackers`` is not installed.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracker = _library_tracker(self.config)
        self.frames = 0
        self.ids_seen: set[int] = set()

    def update(self, detections: Detections) -> Detections:
        """Detections of this frame that belong to a confirmed track, with ``track_ids``, by descending score."""
        import supervision as sv

        floor = self.config.high_score if self.config.name == "sort" else self.config.low_score
        keep = np.flatnonzero(detections.scores >= floor)
        if self.config.duplicate_iou is not None:
            keep = keep[_distinct(detections.boxes_xyxy[keep], detections.scores[keep], self.config.duplicate_iou)]
        given = sv.Detections(
            xyxy=detections.boxes_xyxy[keep].astype(np.float32).reshape(-1, 4),
            confidence=detections.scores[keep].astype(np.float32),
            class_id=detections.class_ids[keep].astype(int),
            data={"index": keep.astype(np.int64)},
        )
        result = self._tracker.update(given)
        self.frames += 1
        ids = np.asarray(result.tracker_id if result.tracker_id is not None else [], np.int64).reshape(-1)
        if len(ids) == 0:
            return _select(detections, np.zeros(0, np.int64), np.zeros(0, np.int64))
        confirmed = ids >= 0
        rows = np.asarray(result.data["index"], np.int64)[confirmed]
        ids = ids[confirmed] + 1  # MOTChallenge ids start at 1; the library counts from 0
        order = np.argsort(-detections.scores[rows], kind="stable")
        self.ids_seen.update(int(i) for i in ids)
        return _select(detections, rows[order], ids[order])

    def reset(self) -> None:
        """Forget every track (a new video)."""
        self._tracker.reset()
        self.frames = 0
        self.ids_seen.clear()


def _distinct(boxes_xyxy: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices (ascending) of the boxes ``[N, 4]`` left after dropping each box that overlaps a higher-scoring kept
    box by IoU ``threshold`` or more, whatever the classes."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    for i in order:
        if kept:
            other = boxes_xyxy[kept]
            lt = np.maximum(boxes_xyxy[i, :2], other[:, :2])
            rb = np.minimum(boxes_xyxy[i, 2:], other[:, 2:])
            inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
            areas = np.prod(other[:, 2:] - other[:, :2], axis=1)
            iou = inter / np.maximum(np.prod(boxes_xyxy[i, 2:] - boxes_xyxy[i, :2]) + areas - inter, 1e-9)
            if (iou >= threshold).any():
                continue
        kept.append(int(i))
    return np.sort(np.asarray(kept, np.int64))


def _select(detections: Detections, rows: np.ndarray, track_ids: np.ndarray) -> Detections:
    return Detections(
        boxes_xyxy=detections.boxes_xyxy[rows],
        scores=detections.scores[rows],
        class_ids=detections.class_ids[rows],
        class_names=tuple(detections.class_names[i] for i in rows),
        category_ids=detections.category_ids[rows],
        track_ids=track_ids.astype(np.int64),
    )


def tracked(consume: Callable[[Any, Detections], bool | None], tracker: Tracker) -> Callable[[Any, Detections], Any]:
    """A pipeline consumer that tracks each frame's detections (in frame order) before handing them to ``consume``."""

    def consume_tracked(frame: Any, detections: Detections) -> bool | None:
        return consume(frame, tracker.update(detections))

    return consume_tracked


class Trails:
    """The recent box-bottom centres of each track, drawn as a fading polyline behind the boxes.

    Args:
        length: points kept per track.
    """

    def __init__(self, length: int = 20) -> None:
        self.length = length
        self._points: dict[int, deque[tuple[int, int]]] = {}
        self._classes: dict[int, int] = {}

    def update(self, detections: Detections) -> None:
        """Add this frame's points; tracks absent from the frame keep their trail until they are evicted."""
        if detections.track_ids is None:
            return
        for box, track_id, class_id in zip(
            detections.boxes_xyxy, detections.track_ids, detections.class_ids, strict=True
        ):
            point = (int(round((box[0] + box[2]) / 2)), int(round(box[3])))
            self._points.setdefault(int(track_id), deque(maxlen=self.length)).append(point)
            self._classes[int(track_id)] = int(class_id)
        if len(self._points) > 256:  # ids gone for long: drop the oldest ones
            for stale in list(self._points)[: len(self._points) - 256]:
                del self._points[stale], self._classes[stale]

    def draw(self, image: np.ndarray, track_ids: np.ndarray) -> np.ndarray:
        """Draw (in place) the trails of ``track_ids`` on ``image`` ``[H, W, 3]`` BGR uint8; returns it."""
        thickness = max(1, round(min(image.shape[:2]) / 320))
        for track_id in (int(t) for t in track_ids):
            points = self._points.get(track_id)
            if not points or len(points) < 2:
                continue
            color = class_color(self._classes[track_id])
            line = np.array(points, np.int32).reshape(-1, 1, 2)
            cv2.polylines(image, [line], False, color, thickness, lineType=cv2.LINE_AA)
        return image
