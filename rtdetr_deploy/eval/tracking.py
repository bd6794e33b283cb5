"""Tracking metrics (HOTA, MOTA, IDF1) of a model with each tracker on MOTChallenge sequences.

The model runs once per sequence through the runtime's ``Detector`` (score floor: the lowest tracker threshold);
each tracker then runs over the same detections in frame order, its results are written as a MOTChallenge file
and scored against ``gt/gt.txt`` by the ``trackers`` library's evaluation (TrackEval's matching and metrics;
IoU 0.5 for MOTA and IDF1, HOTA averaged over IoU 0.05..0.95).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..mot import read_sequence
from ..runtime.detections import Detections
from ..runtime.detector import Detector
from ..runtime.mot_results import MotResultsWriter
from ..runtime.sources import read_image
from ..runtime.tracking import INSTALL_HINT, TRACKERS, Tracker, TrackerConfig

__all__ = ["TrackingScore", "detect_sequence", "score_tracker", "evaluate_tracking", "tracking_table"]


@dataclass(frozen=True)
class TrackingScore:
    """One tracker on one sequence.

    Attributes:
        sequence: the sequence's name.
        tracker: the tracker's name.
        hota: HOTA in [0, 1]. mota: MOTA (at most 1). idf1: IDF1 in [0, 1].
        id_switches: identity switches (CLEAR).
        track_ids: distinct track ids the tracker gave. objects: distinct identities in the ground truth.
    """

    sequence: str
    tracker: str
    hota: float
    mota: float
    idf1: float
    id_switches: int
    track_ids: int
    objects: int


def detect_sequence(detector: Detector, frames: Sequence[Path], *, batch: int = 1) -> list[Detections]:
    """The detector's detections on each frame file, in order."""
    results: list[Detections] = []
    for start in range(0, len(frames), batch):
        images = []
        for path in frames[start : start + batch]:
            image, reason = read_image(path)
            if image is None:
                raise ValueError(f"cannot read frame {path}: {reason}")
            images.append(image)
        results.extend(detector.detect(images))
    return results


def score_tracker(
    detections: Sequence[Detections], gt_file: Path, config: TrackerConfig, *, results_file: Path, sequence: str
) -> TrackingScore:
    """Track ``detections`` (frame 1 first) with ``config``, write ``results_file`` and score it against ``gt_file``."""
    try:
        from trackers.eval import evaluate_mot_sequence
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    tracker, writer = Tracker(config), MotResultsWriter(results_file)
    for frame, found in enumerate(detections, start=1):
        writer.add(frame, tracker.update(found))
    writer.close()
    result = evaluate_mot_sequence(gt_file, results_file, metrics=["CLEAR", "HOTA", "Identity"])
    gt_ids = np.unique(np.loadtxt(gt_file, delimiter=",", ndmin=2)[:, 1])
    return TrackingScore(
        sequence=sequence,
        tracker=config.name,
        hota=float(result.HOTA.HOTA),
        mota=float(result.CLEAR.MOTA),
        idf1=float(result.Identity.IDF1),
        id_switches=int(result.CLEAR.IDSW),
        track_ids=len(writer.track_ids),
        objects=len(gt_ids),
    )


def evaluate_tracking(
    model: str | os.PathLike[str],
    sequences: Sequence[str | os.PathLike[str]],
    *,
    trackers: Sequence[str] = TRACKERS,
    config: TrackerConfig | None = None,
    backend: str = "auto",
    device: str | None = None,
    batch: int = 1,
    results_dir: str | os.PathLike[str] | None = None,
) -> list[TrackingScore]:
    """Every tracker on every sequence folder (each needs ``gt/gt.txt``), with ``config``'s thresholds.

    Raises:
        FileNotFoundError: a sequence folder, its frames or its ground truth are missing.
        ImportError: ``trackers`` is not installed.
    """
    config = config or TrackerConfig()
    configs = [dataclasses.replace(config, name=name) for name in trackers]
    seqs = [read_sequence(path) for path in sequences]
    for seq in seqs:
        if seq.gt is None:
            raise FileNotFoundError(f"{seq.root} has no ground truth (gt/gt.txt)")
    scores = []
    with tempfile.TemporaryDirectory(prefix="rtdetr-track-") as scratch:
        out = Path(results_dir) if results_dir is not None else Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        with Detector(model, backend=backend, device=device, conf=config.low_score) as detector:
            for seq in seqs:
                detections = detect_sequence(detector, seq.frames, batch=min(batch, detector.max_batch))
                for tracker_config in configs:
                    tracker_config = dataclasses.replace(tracker_config, frame_rate=seq.frame_rate)
                    results_file = out / f"{seq.name}.{tracker_config.name}.txt"
                    scores.append(
                        score_tracker(detections, seq.gt, tracker_config, results_file=results_file, sequence=seq.name)
                    )
    return scores


def tracking_table(scores: Sequence[TrackingScore]) -> str:
    """A markdown table, one row per sequence and tracker."""
    lines = [
        "| sequence | tracker | HOTA | MOTA | IDF1 | ID switches | track ids / objects |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in scores:
        lines.append(
            f"| {s.sequence} | {s.tracker} | {s.hota:.3f} | {s.mota:.3f} | {s.idf1:.3f} | {s.id_switches} | "
            f"{s.track_ids} / {s.objects} |"
        )
    return "\n".join(lines) + "\n"
