"""Outputs: annotated images, an annotated video, a COCO-results JSON file. Each appears atomically.

A sink collects while the run goes and publishes in ``close()``: a video is encoded into a temporary file that is
renamed onto its name when closed, and the JSON is written whole. ``close()`` after an interruption (Ctrl-C, a
broken stream) therefore publishes a playable video and the results so far; ``abort()`` publishes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from ..atomic import atomic_path
from .detections import Detections

__all__ = ["ImageWriter", "VideoWriter", "CocoResultsWriter"]

_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class ImageWriter:
    """Writes each annotated image into ``directory`` under the source file's name (``name_1.jpg`` on clashes)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []
        self._used: set[str] = set()

    def write(self, name: str, image: np.ndarray) -> Path:
        """Encode ``image`` (BGR uint8) by the suffix of ``name`` (PNG when OpenCV cannot write it) and publish it."""
        if not Path(name).suffix or not cv2.haveImageWriter(name):
            name = Path(name).stem + ".png"
        path = self._free_name(name)
        ok, encoded = cv2.imencode(path.suffix, image)
        if not ok:
            raise OSError(f"could not encode {path.name}")
        with atomic_path(path) as tmp:
            tmp.write_bytes(encoded.tobytes())
        self.written.append(path)
        return path

    def _free_name(self, name: str) -> Path:
        stem, suffix = Path(name).stem, Path(name).suffix
        candidate, n = f"{stem}{suffix}", 0
        while candidate in self._used:
            n += 1
            candidate = f"{stem}_{n}{suffix}"
        self._used.add(candidate)
        return self.directory / candidate

    def close(self) -> None:
        """Nothing pending: every image is published when written."""

    def abort(self) -> None:
        """Nothing pending."""


class VideoWriter:
    """Encodes frames into ``path`` (``mp4v`` for .mp4, MJPG for .avi) at the source's size and frame rate.

    Args:
        path: output video; its suffix picks the container.
        fps: frames per second of the source.
        size_wh: ``(width, height)`` of the source; frames of another size are resized to it.
    """

    def __init__(self, path: str | os.PathLike[str], *, fps: float, size_wh: tuple[int, int]) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.size_wh = (int(size_wh[0]), int(size_wh[1]))
        self.frames = 0
        suffix = self.path.suffix.lower()
        if suffix not in _FOURCC:
            raise ValueError(f"unsupported video container {suffix!r}; use one of {', '.join(_FOURCC)}")
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        # OpenCV picks the container from the file name, so encode into a sibling that keeps the real suffix.
        self._encoding = tmp.with_name(tmp.name + suffix)
        fourcc = cv2.VideoWriter.fourcc(*_FOURCC[suffix])
        self._writer: cv2.VideoWriter | None = cv2.VideoWriter(str(self._encoding), fourcc, self.fps, self.size_wh)
        if not self._writer.isOpened():
            self.abort()
            raise OSError(f"OpenCV cannot encode {suffix} video ({_FOURCC[suffix]}) to {self.path}")
        self._tmp = tmp

    def write(self, image: np.ndarray) -> None:
        """Append one BGR uint8 frame."""
        if self._writer is None:
            raise OSError(f"{self.path}: the video writer is closed")
        if (image.shape[1], image.shape[0]) != self.size_wh:
            image = cv2.resize(image, self.size_wh, interpolation=cv2.INTER_LINEAR)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        """Finish the file and publish it under ``path`` (also after an interruption: the file stays playable)."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        os.replace(self._encoding, self._tmp)
        self._stack.close()

    def abort(self) -> None:
        """Discard the partial file."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._encoding.unlink(missing_ok=True)
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class CocoResultsWriter:
    """Collects COCO detection results (``image_id``, original ``category_id``, ``bbox`` x,y,w,h, ``score``).

    The list is written to ``path`` in one atomic step by ``close()``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"--json needs a file name, got the folder {self.path}")
        self.results: list[dict[str, Any]] = []
        self.images = 0
        self._closed = False

    def add(self, image_id: int, detections: Detections) -> None:
        """Record one image's detections."""
        self.results.extend(detections.to_coco(image_id))
        self.images += 1

    def close(self) -> None:
        """Publish the results collected so far."""
        if self._closed:
            return
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.results), encoding="utf-8")
        self._closed = True

    def abort(self) -> None:
        """Publish nothing."""
        self._closed = True
