"""The video-analytics part of ``rtdetr-infer``: ``--track``, ``--mot``, ``--slice`` and ``--overlap``.

Tracking runs in the consumer of the threaded pipeline, so it sees every frame once, in frame order, whatever the
batch size; sliced inference runs each frame's tiles in batches through the model (``runtime.slicing``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..mot import is_sequence
from ..runtime.config import RuntimeConfig
from ..runtime.detections import Detections
from ..runtime.mot_results import MotResultsWriter
from ..runtime.slicing import SliceConfig, parse_slice
from ..runtime.sources import Frame, ImageSource, VideoSource
from ..runtime.tracking import TRACKERS, Tracker, TrackerConfig, Trails, parse_thresholds

__all__ = [
    "add_analytics_flags",
    "analytics_from_args",
    "sequence_source",
    "check_track_source",
    "slice_config",
    "tracker_config",
    "TrackingStage",
]

DEFAULT_CONF = 0.25


def add_analytics_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--track``, ``--mot``, ``--slice`` and ``--overlap`` to the infer parser."""
    parser.add_argument(
        "--track",
        metavar="TRACKER",
        help=f"follow objects across frames with a tracker ({', '.join(TRACKERS)}); videos, cameras, streams and "
        "MOTChallenge sequence folders; ids are drawn with a trail and written as track_id in --json",
    )
    parser.add_argument("--mot", metavar="FILE", help="with --track: write the tracks as MOTChallenge text")
    parser.add_argument(
        "--track-thresholds",
        type=parse_thresholds,
        metavar="LOW,HIGH,NEW",
        help="tracker scores: ignore below LOW, associate first from HIGH, start tracks from NEW (default: "
        "measured on the shipped model, docs/tracking.md)",
    )
    parser.add_argument(
        "--slice",
        metavar="H,W",
        type=parse_slice,
        help="sliced inference: tiles of H,W pixels batched through the model, merged across tile borders",
    )
    parser.add_argument(
        "--overlap", type=float, default=0.2, metavar="R", help="with --slice: tile overlap share in [0, 1) (0.2)"
    )


def analytics_from_args(args: argparse.Namespace) -> dict[str, object]:
    """The ``RuntimeConfig`` fields of these flags, and ``conf``: the flag, else the tracker's low score when
    tracking (the tracker needs its low-score detections), else 0.25."""
    conf = args.conf
    if conf is None:
        low = args.track_thresholds[0] if args.track_thresholds else TrackerConfig().low_score
        conf = low if args.track else DEFAULT_CONF
    return {
        "conf": conf,
        "track": args.track,
        "mot_path": args.mot,
        "track_thresholds": args.track_thresholds,
        "slice_hw": args.slice,
        "overlap": args.overlap,
    }


def sequence_source(source: str) -> str:
    """A MOTChallenge sequence folder stands for its frames (``SEQ`` -> ``SEQ/img1``); other sources as given."""
    path = Path(source)
    if (path / "seqinfo.ini").is_file() and (path / "img1").is_dir():
        return str(path / "img1")
    return source


def check_track_source(config: RuntimeConfig, source: ImageSource | VideoSource) -> None:
    """Refuse ``--track`` on images that are not frames of one sequence (``ValueError``)."""
    if config.track is not None and isinstance(source, ImageSource) and not is_sequence(config.source):
        raise ValueError(
            f"--track needs consecutive frames: a video, camera, stream or MOTChallenge sequence folder, not the "
            f"unrelated images of {config.source}"
        )


def tracker_config(
    name: str, thresholds: tuple[float, float, float] | None, *, frame_rate: float = 30.0
) -> TrackerConfig:
    """The tracker ``name`` with ``(low, high, new-track)`` scores, or the measured defaults for ``None``."""
    if thresholds is None:
        return TrackerConfig(name=name, frame_rate=frame_rate)
    low, high, new = thresholds
    return TrackerConfig(name=name, low_score=low, high_score=high, new_track_score=new, frame_rate=frame_rate)


def slice_config(config: RuntimeConfig) -> SliceConfig | None:
    """The slicing of ``config``, or ``None`` for whole images."""
    return None if config.slice_hw is None else SliceConfig(config.slice_hw, overlap=config.overlap)


class TrackingStage:
    """Tracks each frame's detections in order, keeps the trails and the MOT rows; ``None`` parts do nothing."""

    def __init__(self, config: RuntimeConfig, *, frame_rate: float | None) -> None:
        self.tracker = None
        if config.track is not None:
            rate = frame_rate if frame_rate and frame_rate > 0 else 30.0
            self.tracker = Tracker(tracker_config(config.track, config.track_thresholds, frame_rate=rate))
        self.trails = Trails() if self.tracker is not None else None
        self.mot = MotResultsWriter(config.mot_path) if config.mot_path else None

    def __call__(self, frame: Frame, detections: Detections) -> Detections:
        if self.tracker is None:
            return detections
        tracked = self.tracker.update(detections)
        self.trails.update(tracked)
        if self.mot is not None:
            self.mot.add(frame.index + 1, tracked)
        return tracked

    def draw(self, image: np.ndarray, detections: Detections) -> np.ndarray:
        """Draw the trails of the tracks in ``detections`` onto ``image`` ``[H, W, 3]`` BGR uint8 (in place)."""
        if self.trails is not None and detections.track_ids is not None:
            self.trails.draw(image, detections.track_ids)
        return image

    def close(self) -> list[str]:
        """Publish the MOT file; the lines describing what was tracked."""
        if self.tracker is None:
            return []
        tracker = self.tracker
        lines = [f"tracked {len(tracker.ids_seen)} ids with {tracker.config.name} over {tracker.frames} frames"]
        if self.mot is not None:
            self.mot.close()
            lines.append(f"saved {self.mot.path} ({len(self.mot.rows)} MOT rows, {len(self.mot.track_ids)} tracks)")
        return lines
