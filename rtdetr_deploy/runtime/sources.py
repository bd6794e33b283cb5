"""Media sources: an image, a glob, a folder, a video file, a camera index or an RTSP/HTTP stream.

``open_source(spec)`` decides which from the spec and returns an iterable of ``Frame``. Unreadable inputs inside
a folder or glob are skipped with one warning each and the run goes on; a video that stops decoding early ends
with a warning, and whatever was decoded before still counts.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from .decoders import DecoderConfig, open_decoder
from .preprocess import to_bgr8

__all__ = [
    "decode_image",
    "Frame",
    "ImageSource",
    "VideoSource",
    "open_source",
    "IMAGE_SUFFIXES",
    "image_files",
    "read_image",
    "read_image_folder",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm", ".ppm"})
STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class Frame:
    """One decoded image.

    Attributes:
        image: ``[H, W, 3]`` BGR uint8.
        index: position in the source (the frame index for video).
        image_id: id for COCO results: the frame index for video, the file's number for files named by
            number (``000000397133.jpg``), else the position in sorted order.
        name: file name (images) or ``frame_000123`` (video).
    """

    image: np.ndarray
    index: int
    image_id: int
    name: str


class ImageSource:
    """Image files decoded in order.

    Args:
        paths: the files, in the order to process them.
        strict: raise on an undecodable file (a single image given by name) instead of skipping it.
        label: how the source was named, for messages.
    """

    kind = "images"
    fps: float | None = None

    def __init__(self, paths: list[Path], *, strict: bool = False, label: str = "") -> None:
        self.paths = paths
        self.strict = strict
        self.label = label or str(paths[0])
        self.skipped: list[Path] = []
        stems = [p.stem for p in paths]
        numeric = all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems)
        self._ids = [int(s) for s in stems] if numeric else list(range(len(paths)))

    @property
    def total(self) -> int:
        return len(self.paths)

    @property
    def name(self) -> str:
        return Path(self.label).stem if len(self.paths) > 1 else self.paths[0].stem

    def __iter__(self) -> Iterator[Frame]:
        for index, (path, image_id) in enumerate(zip(self.paths, self._ids, strict=True)):
            image, reason = read_image(path)
            if image is None:
                if self.strict:
                    raise ValueError(f"cannot read image {path}: {reason}")
                logger.warning("skipping %s: %s", path, reason)
                self.skipped.append(path)
                continue
            yield Frame(image=image, index=index, image_id=image_id, name=path.name)

    def close(self) -> None:
        """Nothing to release; present for symmetry with ``VideoSource``."""

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_image(path: Path) -> tuple[np.ndarray | None, str]:
    """Decode an image file to BGR uint8 (EXIF orientation applied); ``(None, reason)`` when it cannot be."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        return None, exc.strerror or str(exc)
    if data.size == 0:
        return None, "empty file"
    return decode_image(data)


def decode_image(data: np.ndarray | bytes) -> tuple[np.ndarray | None, str]:
    """Decode encoded image bytes (JPEG, PNG, WebP, ...) to BGR uint8; ``(None, reason)`` when they cannot be."""
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes | bytearray | memoryview) else data
    if buffer.size == 0:
        return None, "empty image"
    # IMREAD_COLOR turns grayscale, BGRA and 16-bit files into 8-bit BGR, as to_bgr8 does for arrays.
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return None, "not a decodable image (corrupt or unsupported format)"
    return to_bgr8(image), ""


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files of ``folder`` (by ``IMAGE_SUFFIXES``, not recursive, hidden files left out), sorted by name.

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def read_image_folder(
    folder: str | os.PathLike[str], *, limit: int | None = None, what: str = "images"
) -> list[np.ndarray]:
    """BGR uint8 images of the first ``limit`` image files of ``folder`` (see ``image_files``); undecodable
    files are skipped with a warning. ``what`` names the images in messages (``"calibration images"``).

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
        ValueError: no decodable image in it.
    """
    images = []
    for path in image_files(folder)[:limit]:
        image, reason = read_image(path)
        if image is None:
            logger.warning("skipping %s: %s", path, reason)
        else:
            images.append(image)
    if not images:
        raise ValueError(f"no readable {what} in {folder} (image types: {', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


class VideoSource:
    """Frames of a video file, a camera or a network stream, read by one of the ``decoders``.

    Args:
        target: file path, camera index or stream URL.
        kind: ``"video"``, ``"camera"`` or ``"stream"``.
        label: how the source was named, for messages.
        decoder: which decoder, with how many threads (``DecoderConfig()``: ``auto``, FFmpeg's thread count).

    Raises:
        ValueError: the target cannot be opened, or the decoder does not read cameras.
        ImportError: the decoder asked for is not installed.
    """

    def __init__(self, target: str | int, *, kind: str, label: str, decoder: DecoderConfig | None = None) -> None:
        self.kind = kind
        self.label = label
        self._decoder = open_decoder(target, kind=kind, label=label, config=decoder)
        self.decoder = self._decoder.name
        fps = self._decoder.fps
        self.fps_known = 0.0 < fps <= 1000.0
        self.fps = fps if self.fps_known else DEFAULT_FPS
        count = self._decoder.frame_count
        self.total = count if kind == "video" and count > 0 else None
        self.size = self._decoder.size_wh
        self.decoded = 0
        self.stopped_early = False

    @property
    def name(self) -> str:
        if self.kind == "camera":
            return f"camera{self.label}"
        stem = Path(self.label.split("?", 1)[0].rstrip("/")).stem
        return re.sub(r"[^\w.-]+", "_", stem) or "stream"

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        for image in self._decoder:
            yield Frame(image=to_bgr8(image), index=index, image_id=index, name=f"frame_{index:06d}")
            index += 1
            self.decoded = index
        if self.total is not None and index < self.total:
            self.stopped_early = True
            logger.warning(
                "%s: decoding stopped at frame %d of %d (truncated or corrupt); keeping the frames before it",
                self.label,
                index,
                self.total,
            )
        elif self.kind != "video":
            logger.info("%s: stream ended after %d frames", self.label, index)

    def close(self) -> None:
        """Release the capture device or file."""
        self._decoder.close()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_source(
    spec: str | int | os.PathLike[str], *, decoder: DecoderConfig | None = None
) -> ImageSource | VideoSource:
    """The source ``spec`` names; videos, cameras and streams are read by ``decoder`` (``DecoderConfig()``).

    ``0``, ``1``, ... is a camera index; ``rtsp://``, ``http(s)://``, ... a stream; a path with ``* ? [`` a glob;
    a folder its images (not recursive, sorted; other files are skipped with a warning); a file an image or a video
    by its suffix (files of unknown suffix are tried as video).

    Raises:
        FileNotFoundError: no such file or folder, or a glob that matches nothing.
        ValueError: a folder or glob without images, a camera/stream/video that cannot be opened.
        ImportError: the decoder asked for is not installed.
    """
    text = str(spec).strip()
    if isinstance(spec, int) or text.isdigit():
        return VideoSource(int(text), kind="camera", label=text, decoder=decoder)
    if text.lower().startswith(STREAM_PREFIXES):
        return VideoSource(text, kind="stream", label=text, decoder=decoder)
    path = Path(text).expanduser()
    if not path.exists() and glob.has_magic(text):
        matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(text)) if Path(p).is_file())
        if not matches:
            raise FileNotFoundError(f"no files match {text!r}")
        return _image_files(matches, where=f"files matching {text!r}", label=text)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        return _image_files(files, where=f"folder {path}", label=str(path))
    if not path.exists():
        raise FileNotFoundError(f"source not found: {text}")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"source not readable (permission denied): {path}")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return ImageSource([path], strict=True, label=str(path))
    return VideoSource(str(path), kind="video", label=str(path), decoder=decoder)


def _image_files(files: list[Path], *, where: str, label: str) -> ImageSource:
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    others = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if not images:
        found = f" (found {len(others)} other files)" if others else ""
        raise ValueError(f"no images in {where}{found}; image types: {', '.join(sorted(IMAGE_SUFFIXES))}")
    if others:
        shown = ", ".join(p.name for p in others[:5]) + (", ..." if len(others) > 5 else "")
        logger.warning("skipping %d non-image files in %s: %s", len(others), where, shown)
    return ImageSource(images, label=label)
