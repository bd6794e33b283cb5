"""``MotResultsWriter``: tracked detections as a MOTChallenge results file, written atomically when closed."""

from __future__ import annotations

import os
from pathlib import Path

from ..atomic import atomic_path
from ..mot import result_row
from .detections import Detections

__all__ = ["MotResultsWriter"]


class MotResultsWriter:
    """Collects ``frame, id, left, top, width, height, score, -1, -1, -1`` rows; ``close()`` publishes them.

    Args:
        path: the results file (``--mot FILE``).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"--mot needs a file name, got the folder {self.path}")
        self.rows: list[str] = []
        self.frames = 0
        self.track_ids: set[int] = set()
        self._closed = False

    def add(self, frame: int, detections: Detections) -> None:
        """Record the tracked detections of frame number ``frame`` (from 1).

        Raises:
            ValueError: ``detections`` carry no track ids.
        """
        if detections.track_ids is None:
            raise ValueError("MOT results need tracked detections (track_ids is None)")
        for box, score, track_id in zip(detections.boxes_xyxy, detections.scores, detections.track_ids, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            self.rows.append(result_row(frame, int(track_id), (x1, y1, x2 - x1, y2 - y1), float(score)))
            self.track_ids.add(int(track_id))
        self.frames += 1

    def close(self) -> None:
        """Publish the rows collected so far (also after an interruption)."""
        if self._closed:
            return
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(row + "\n" for row in self.rows), encoding="utf-8")
        self._closed = True

    def abort(self) -> None:
        """Publish nothing."""
        self._closed = True
