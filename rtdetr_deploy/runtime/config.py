"""``RuntimeConfig``: what the inference command was asked to do, validated once."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..coco.names import ClassNames
from .tracking import TrackerConfig, check_tracker_name

__all__ = ["RuntimeConfig", "parse_device", "check_conf"]

_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


def parse_device(device: str) -> tuple[str, int]:
    """Split ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a kind and a device index.

    Raises:
        ValueError: any other spelling.
    """
    match = _DEVICE.match(str(device).strip().lower())
    if match is None or (match.group(1) == "cpu" and match.group(2) is not None):
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")
    return match.group(1), int(match.group(2) or 0)


def check_conf(conf: float) -> float:
    """Validate a score threshold in [0, 1]."""
    if not isinstance(conf, int | float) or not 0.0 <= float(conf) <= 1.0:
        raise ValueError(f"conf must be a score threshold in [0, 1], got {conf!r}")
    return float(conf)


@dataclass(frozen=True)
class RuntimeConfig:
    """Options of one inference run (the CLI maps its flags onto this and nothing else).

    Attributes:
        source: image, glob, folder, video file, camera index or stream URL.
        model: ``.onnx``, ``.engine`` or ``.pth`` path; ``None`` asks for the default model.
        backend: ``"auto"`` (by file suffix) or a backend name (``registry.BACKEND_CHOICES``).
        device: ``"cpu"`` or ``"cuda:N"``; ``None`` for the backend's default (TensorRT: ``cuda:0``, others: ``cpu``).
        conf: score threshold in [0, 1].
        classes: keep only these classes (names, or contiguous class indices written as integers).
        batch: images per inference call (video frames are batched in order).
        save_dir: folder for annotated images or video; ``None`` writes none.
        json_path: COCO-results JSON file; ``None`` writes none.
        show: display the annotated frames in a window.
        names: class names and category ids for a checkpoint model (``--names``); ``None``: the model's own.
        track: tracker name (``runtime.tracking.TRACKERS``) for videos, cameras, streams and MOT sequences.
        mot_path: MOTChallenge results file of the tracks (needs ``track``); ``None`` writes none.
        track_thresholds: the tracker's ``(low, high, new-track)`` scores; ``None`` for the measured defaults.
        slice_hw: ``(height, width)`` of the tiles of sliced inference; ``None`` runs on whole images.
        overlap: share of a tile its neighbours overlap, in [0, 1) (with ``slice_hw``).
    """

    source: str
    model: str | None = None
    backend: str = "auto"
    device: str | None = None
    conf: float = 0.25
    classes: tuple[str, ...] | None = None
    batch: int = 1
    save_dir: str | None = None
    json_path: str | None = None
    show: bool = False
    names: ClassNames | None = None
    track: str | None = None
    mot_path: str | None = None
    track_thresholds: tuple[float, float, float] | None = None
    slice_hw: tuple[int, int] | None = None
    overlap: float = 0.2

    def __post_init__(self) -> None:
        if not str(self.source).strip():
            raise ValueError("source is empty; pass an image, folder, glob, video, camera index or stream URL")
        # The registry imports every backend module, and those import this one: look it up when validating.
        from .registry import check_backend_name

        check_backend_name(self.backend)
        if self.device is not None:
            parse_device(self.device)
        check_conf(self.conf)
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f"batch must be a positive integer, got {self.batch!r}")
        if self.classes is not None and not self.classes:
            raise ValueError("classes is empty; omit it to keep every class")
        if self.track is not None:
            check_tracker_name(self.track)
        if self.track_thresholds is not None:
            low, high, new = self.track_thresholds
            TrackerConfig(low_score=low, high_score=high, new_track_score=new)
        if self.mot_path is not None and self.track is None:
            raise ValueError("--mot needs --track (MOT results are tracks)")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"--overlap must lie in [0, 1), got {self.overlap}")
