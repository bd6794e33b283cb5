"""Video decoders behind one small interface: OpenCV's FFmpeg backend, PyAV and NVIDIA's hardware decoder.

Every decoder yields ``[H, W, 3]`` BGR uint8 frames in presentation order and knows the stream's frame rate,
frame count (when the container says) and ``size_wh``. ``DecoderConfig`` names the decoder and its threads;
``open_decoder`` opens one.

- ``opencv``: ``cv2.VideoCapture`` (FFmpeg backend); its FFmpeg decoder threads are ``CAP_PROP_N_THREADS``. The
  only decoder for cameras.
- ``pyav``: FFmpeg through PyAV with frame threading (``thread_type="AUTO"``: several frames decoded at once, plus
  slice threads); its frames equal OpenCV's bit for bit (both convert with swscale's BT.601 defaults). Needs
  ``pip install 'rtdetr-deploy[video]'``.

Both convert YUV to BGR in the decode thread, one thread: giving swscale threads of its own on top of FFmpeg's
frame threads oversubscribed a 2-core machine to a fifth of the single-threaded rate
(``benchmarks/decode_throughput.py``), and one conversion thread keeps up with several hundred 720p frames/s.
- ``nvdec``: NVIDIA's hardware decoder through PyNvVideoCodec (``pip install PyNvVideoCodec``, an NVIDIA GPU);
  frames are decoded on the GPU and copied to host memory as RGB, then reordered to BGR.
- ``auto``: PyAV for video files when it is installed, else OpenCV (cameras and network streams: OpenCV, whose
  open and read timeouts the stream sources rely on).

PyAV and PyNvVideoCodec are imported only when their decoder is opened.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = ["DECODERS", "DecoderConfig", "open_decoder", "resolve_decoder"]

logger = logging.getLogger(__name__)

DECODERS = ("auto", "opencv", "pyav", "nvdec")
STREAM_TIMEOUT_MS = 10_000
_WHAT = {"camera": "camera", "stream": "stream", "video": "video file"}


@dataclass(frozen=True)
class DecoderConfig:
    """Which decoder reads a video, camera or stream, with how many threads.

    Attributes:
        decoder: ``"auto"``, ``"opencv"``, ``"pyav"`` or ``"nvdec"`` (see the module docstring).
        threads: FFmpeg decoder threads; ``0`` lets FFmpeg choose (one per core), ``1`` decodes in the calling
            thread alone. Ignored by ``nvdec``.
        gpu: CUDA device index of the ``nvdec`` decoder.
    """

    decoder: str = "auto"
    threads: int = 0
    gpu: int = 0

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {self.decoder!r}; choose from {', '.join(DECODERS)}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"decode threads must be 0 (automatic) or a positive integer, got {self.threads!r}")
        if isinstance(self.gpu, bool) or not isinstance(self.gpu, int) or self.gpu < 0:
            raise ValueError(f"the nvdec GPU must be a device index (0, 1, ...), got {self.gpu!r}")


def _cannot_open(kind: str, label: str, detail: str = "") -> ValueError:
    extra = f": {detail}" if detail else ""
    return ValueError(f"cannot open {_WHAT[kind]} {label} (unreadable, unsupported or unreachable){extra}")


class OpenCvDecoder:
    """``cv2.VideoCapture`` on a file, a camera index or a stream URL (FFmpeg backend for files and streams)."""

    name = "opencv"

    def __init__(self, target: str | int, *, kind: str, label: str, threads: int = 0) -> None:
        params: list[int] = [cv2.CAP_PROP_N_THREADS, threads] if threads and kind != "camera" else []
        if kind == "stream":
            params += [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                STREAM_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                STREAM_TIMEOUT_MS,
            ]
        if kind == "camera":
            self._capture = cv2.VideoCapture(target)
        else:
            self._capture = cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, params)
        if not self._capture.isOpened():
            self._capture.release()
            raise _cannot_open(kind, label)
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.frame_count = max(int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
        self.size_wh = (
            int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            ok, image = self._capture.read()
            if not ok or image is None or image.size == 0:
                return
            yield image

    def close(self) -> None:
        self._capture.release()


def _import_av() -> Any:
    try:
        import av
    except ImportError:
        raise ImportError(
            "the pyav decoder needs PyAV: pip install 'rtdetr-deploy[video]' (or pass --decoder opencv)", name="av"
        ) from None
    return av


class PyAvDecoder:
    """FFmpeg through PyAV: frame-threaded decoding, then conversion to BGR in the calling thread."""

    name = "pyav"

    def __init__(self, target: str, *, kind: str, label: str, threads: int = 0) -> None:
        av = _import_av()
        self._av = av
        timeout = STREAM_TIMEOUT_MS / 1000 if kind == "stream" else None
        try:
            self._container = av.open(str(target), timeout=timeout)
        except (av.FFmpegError, OSError) as exc:
            raise _cannot_open(kind, label, " ".join(str(exc).split())) from None
        if not self._container.streams.video:
            self._container.close()
            raise _cannot_open(kind, label, "no video stream")
        stream = self._container.streams.video[0]
        # AUTO: frame threads (several frames in flight) plus slice threads; one thread decodes in this thread.
        stream.thread_type = "AUTO" if threads != 1 else "NONE"
        stream.thread_count = threads
        self._stream = stream
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        self.frame_count = max(int(stream.frames or 0), 0)
        self.size_wh = (int(stream.codec_context.width), int(stream.codec_context.height))

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            for frame in self._container.decode(self._stream):
                yield frame.to_ndarray(format="bgr24", threads=1)
        except self._av.FFmpegError as exc:  # a truncated or corrupt file: the frames before it count
            logger.debug("pyav stopped decoding: %s", exc)

    def close(self) -> None:
        self._container.close()


def _import_nvc() -> Any:
    try:
        import PyNvVideoCodec as nvc
    except ImportError:
        raise ImportError(
            "the nvdec decoder needs PyNvVideoCodec and an NVIDIA GPU: pip install PyNvVideoCodec "
            "(or pass --decoder pyav or opencv)",
            name="PyNvVideoCodec",
        ) from None
    return nvc


class NvDecoder:
    """NVIDIA's hardware decoder (PyNvVideoCodec ``ThreadedDecoder``): RGB frames in host memory, reordered to BGR.

    Untested without a GPU: the code follows PyNvVideoCodec 2.x's documented ``ThreadedDecoder`` API.
    """

    name = "nvdec"
    BUFFER_FRAMES = 16

    def __init__(self, target: str, *, kind: str, label: str, gpu: int = 0) -> None:
        nvc = _import_nvc()
        try:
            self._decoder = nvc.ThreadedDecoder(
                str(target),
                buffer_size=self.BUFFER_FRAMES,
                gpu_id=gpu,
                use_device_memory=False,
                output_color_type=nvc.OutputColorType.RGB,
            )
            meta = self._decoder.get_stream_metadata()
        except Exception as exc:  # PyNvVideoCodec raises its own types (no GPU, no NVDEC, unsupported codec)
            raise _cannot_open(kind, label, f"nvdec on cuda:{gpu}: {' '.join(str(exc).split())}") from None
        self.fps = float(getattr(meta, "average_fps", 0.0) or 0.0)
        self.frame_count = max(int(getattr(meta, "num_frames", 0) or 0), 0)
        self.size_wh = (int(meta.width), int(meta.height))

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            frames = self._decoder.get_batch_frames(self.BUFFER_FRAMES)
            if not frames:
                return
            for frame in frames:
                rgb = np.from_dlpack(frame).reshape(self.size_wh[1], self.size_wh[0], 3)
                yield cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)

    def close(self) -> None:
        end = getattr(self._decoder, "end", None)
        if end is not None:
            end()


def resolve_decoder(decoder: str, *, kind: str) -> str:
    """The decoder ``"auto"`` stands for (PyAV for video files when installed, else OpenCV), or ``decoder``.

    Raises:
        ValueError: a camera asked of another decoder than OpenCV.
    """
    if decoder == "auto":
        return "pyav" if kind == "video" and importlib.util.find_spec("av") is not None else "opencv"
    if kind == "camera" and decoder != "opencv":
        raise ValueError(f"cameras are read by the opencv decoder, not {decoder!r}; pass --decoder opencv")
    return decoder


def open_decoder(
    target: str | int, *, kind: str, label: str, config: DecoderConfig | None = None
) -> OpenCvDecoder | PyAvDecoder | NvDecoder:
    """Open ``target`` (file path, camera index or stream URL; ``kind`` ``"video"``, ``"camera"`` or ``"stream"``).

    Raises:
        ValueError: it cannot be opened (message naming ``label``), or the decoder does not read this kind.
        ImportError: the decoder's package is not installed (one line naming the install command).
    """
    config = config or DecoderConfig()
    name = resolve_decoder(config.decoder, kind=kind)
    if name == "opencv":
        return OpenCvDecoder(target, kind=kind, label=label, threads=config.threads)
    if name == "pyav":
        return PyAvDecoder(str(target), kind=kind, label=label, threads=config.threads)
    return NvDecoder(str(target), kind=kind, label=label, gpu=config.gpu)
