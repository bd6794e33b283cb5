"""MOTChallenge text format: the one home of its rows (tracker results and ground truth) and sequence layout.

A row is ``frame, id, bb_left, bb_top, bb_width, bb_height, conf, x, y, z`` for results (``x, y, z`` are ``-1``)
and ``frame, id, bb_left, bb_top, bb_width, bb_height, consider, class, visibility`` for ground truth. Frames
count from 1; boxes are pixels, top-left corner plus size. A sequence folder holds ``seqinfo.ini``, the frames in
``img1/000001.jpg ...`` and the ground truth in ``gt/gt.txt``.

Ground truth written here gives an object class 1, the class MOTChallenge evaluators score (tracking is
class-agnostic there), while at least ``MIN_VISIBILITY`` of it shows; a mostly hidden object gets the distractor
class 8 and is not considered: TrackEval-style evaluators then neither reward nor penalise a track on it (an
ambiguous region, like the occluded and distractor rows of MOT17).
"""

from __future__ import annotations

import configparser
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SCORED_CLASS",
    "DISTRACTOR_CLASS",
    "MIN_VISIBILITY",
    "MotSequence",
    "result_row",
    "gt_row",
    "is_sequence",
    "read_sequence",
    "seqinfo_text",
]

SCORED_CLASS = 1
DISTRACTOR_CLASS = 8
MIN_VISIBILITY = 0.25


def _box_text(box_xywh: Iterable[float]) -> str:
    return ",".join(f"{float(v):.2f}" for v in box_xywh)


def result_row(frame: int, track_id: int, box_xywh: Iterable[float], score: float) -> str:
    """One tracker-result row (no newline).

    Args:
        frame: frame number, from 1.
        track_id: the track's id (positive).
        box_xywh: ``[4]`` left, top, width, height in pixels.
        score: detection score in [0, 1].
    """
    if frame < 1:
        raise ValueError(f"MOT frames count from 1, got {frame}")
    return f"{int(frame)},{int(track_id)},{_box_text(box_xywh)},{float(score):.4f},-1,-1,-1"


def gt_row(frame: int, object_id: int, box_xywh: Iterable[float], *, visibility: float = 1.0) -> str:
    """One ground-truth row (no newline): considered, class ``SCORED_CLASS``, when ``visibility`` is at least
    ``MIN_VISIBILITY``; else not considered, class ``DISTRACTOR_CLASS``.

    Args:
        frame: frame number, from 1.
        object_id: the object's identity (positive, constant over the sequence).
        box_xywh: ``[4]`` left, top, width, height in pixels of the visible extent.
        visibility: visible share of the object in [0, 1].
    """
    if frame < 1:
        raise ValueError(f"MOT frames count from 1, got {frame}")
    considered = visibility >= MIN_VISIBILITY
    marks = f"1,{SCORED_CLASS}" if considered else f"0,{DISTRACTOR_CLASS}"
    return f"{int(frame)},{int(object_id)},{_box_text(box_xywh)},{marks},{float(visibility):.3f}"


@dataclass(frozen=True)
class MotSequence:
    """A MOTChallenge sequence folder.

    Attributes:
        root: the sequence folder.
        name: ``seqinfo.ini`` name.
        frames: frame image paths in order (frame ``i + 1`` is ``frames[i]``).
        gt: ``gt/gt.txt`` (``None`` when the folder has no ground truth).
        frame_rate: frames per second.
        size_wh: ``(width, height)`` of the frames.
    """

    root: Path
    name: str
    frames: tuple[Path, ...]
    gt: Path | None
    frame_rate: float
    size_wh: tuple[int, int]


def is_sequence(path: str | Path) -> bool:
    """Whether ``path`` is a sequence folder, or the image folder of one (``SEQ/img1`` beside ``seqinfo.ini``)."""
    path = Path(path)
    return (path / "seqinfo.ini").is_file() or (path.is_dir() and (path.parent / "seqinfo.ini").is_file())


def read_sequence(path: str | Path) -> MotSequence:
    """The sequence in folder ``path`` (or the sequence whose image folder ``path`` is).

    Raises:
        FileNotFoundError: no ``seqinfo.ini`` or no frames.
        ValueError: a ``seqinfo.ini`` without its ``[Sequence]`` fields.
    """
    root = Path(path)
    if not (root / "seqinfo.ini").is_file() and (root.parent / "seqinfo.ini").is_file():
        root = root.parent
    info_file = root / "seqinfo.ini"
    if not info_file.is_file():
        raise FileNotFoundError(f"{path} is not a MOTChallenge sequence folder (no seqinfo.ini)")
    parser = configparser.ConfigParser()
    parser.read(info_file, encoding="utf-8")
    try:
        info = parser["Sequence"]
        name, image_dir, ext = info["name"], info.get("imDir", "img1"), info.get("imExt", ".jpg")
        rate, length = float(info.get("frameRate", "25")), int(info["seqLength"])
        size_wh = (int(info["imWidth"]), int(info["imHeight"]))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{info_file}: incomplete [Sequence] section ({exc})") from None
    frames = tuple(root / image_dir / f"{i:06d}{ext}" for i in range(1, length + 1))
    missing = [p for p in frames if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: {len(missing)} of {length} frames missing, first {missing[0]}")
    gt = root / "gt" / "gt.txt"
    return MotSequence(root, name, frames, gt if gt.is_file() else None, rate, size_wh)


def seqinfo_text(*, name: str, frames: int, frame_rate: float, size_wh: tuple[int, int]) -> str:
    """``seqinfo.ini`` of a sequence whose frames are ``img1/000001.jpg ...``."""
    return (
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate={frame_rate:g}\nseqLength={frames}\n"
        f"imWidth={size_wh[0]}\nimHeight={size_wh[1]}\nimExt=.jpg\n"
    )
