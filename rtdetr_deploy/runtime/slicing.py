"""Sliced inference for images larger than the model's input: tiles in batches, merged across tile borders only.

supervision's ``InferenceSlicer`` cuts the image into overlapping tiles of ``slice_hw`` (the last row and column
of tiles are shifted back to end at the border), hands them to the ``Detector`` in batches of up to its
``max_batch`` and moves each tile's boxes back into image pixels. The model stays NMS-free: detections of one
tile are never merged with each other. Only across tiles, a detection is merged with same-class detections of
*other* tiles whose boxes overlap it by ``match_threshold`` or more, measured as intersection over the smaller
box (an object cut by a border is a part of the same object seen whole, or in part, by the neighbouring tile:
its IoU can be small, its intersection over the smaller box is about 1). A merged group keeps its best score and
class and the union of its boxes, so an object cut by a border is reported once, whole.

Optional dependency: ``supervision`` (``pip install 'rtdetr-deploy[track]'``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .detections import Detections
from .detector import Detector
from .pipeline import PipelineResult
from .sources import Frame

__all__ = ["SliceConfig", "parse_slice", "merge_across_tiles", "sliced_detect", "run_sliced"]

INSTALL_HINT = "sliced inference needs the supervision package: pip install 'rtdetr-deploy[track]'"


def parse_slice(text: str) -> tuple[int, int]:
    """``"H,W"`` or ``"N"`` (square) to ``(height, width)`` in pixels.

    Raises:
        ValueError: anything else, or a size below 32 pixels.
    """
    parts = str(text).replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"--slice takes H,W or N in pixels, got {text!r}") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 32:
        raise ValueError(f"--slice takes H,W or N, each at least 32 pixels, got {text!r}")
    return values[0], values[1]


@dataclass(frozen=True)
class SliceConfig:
    """How to slice.

    Attributes:
        slice_hw: ``(height, width)`` of a tile in pixels.
        overlap: share of a tile that neighbouring tiles overlap, in [0, 1).
        match_threshold: intersection over the smaller box at which detections of two tiles merge, in (0, 1].
    """

    slice_hw: tuple[int, int]
    overlap: float = 0.2
    match_threshold: float = 0.5

    def __post_init__(self) -> None:
        if len(self.slice_hw) != 2 or min(self.slice_hw) < 32:
            raise ValueError(f"slice size must be two sizes of at least 32 pixels, got {self.slice_hw}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"--overlap must lie in [0, 1), got {self.overlap}")
        if not 0.0 < self.match_threshold <= 1.0:
            raise ValueError(f"match threshold must lie in (0, 1], got {self.match_threshold}")

    def check_image(self, height: int, width: int) -> None:
        """Refuse a tile larger than the image (``ValueError``)."""
        if self.slice_hw[0] > height or self.slice_hw[1] > width:
            raise ValueError(
                f"--slice {self.slice_hw[0]},{self.slice_hw[1]} is larger than the {height}x{width} image; "
                "use a smaller slice, or no --slice"
            )


def _intersection_over_smaller(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(np.minimum(area, areas), 1e-9)


def merge_across_tiles(
    boxes_xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, tile_ids: np.ndarray, *, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy class-wise merging of detections from different tiles (never two of the same tile).

    Args:
        boxes_xyxy: ``[N, 4]`` pixels of the whole image. scores: ``[N]``. class_ids: ``[N]``.
        tile_ids: ``[N]`` the tile each detection came from.
        threshold: intersection over the smaller box needed to merge.

    Returns:
        ``rows``: ``[M]`` index of each group's best detection (descending score); ``boxes_xyxy``: ``[M, 4]`` the
        union of each group's boxes.
    """
    order = np.argsort(-scores, kind="stable")
    taken = np.zeros(len(scores), bool)
    rows, merged = [], []
    for i in order:
        if taken[i]:
            continue
        taken[i] = True
        group_tiles, box = {int(tile_ids[i])}, boxes_xyxy[i].astype(np.float64).copy()
        candidates = np.flatnonzero(~taken & (class_ids == class_ids[i]) & (tile_ids != tile_ids[i]))
        if len(candidates):
            close = candidates[_intersection_over_smaller(boxes_xyxy[i], boxes_xyxy[candidates]) >= threshold]
            for j in close[np.argsort(-scores[close], kind="stable")]:
                if int(tile_ids[j]) in group_tiles:
                    continue
                group_tiles.add(int(tile_ids[j]))
                taken[j] = True
                box[:2] = np.minimum(box[:2], boxes_xyxy[j, :2])
                box[2:] = np.maximum(box[2:], boxes_xyxy[j, 2:])
        rows.append(i)
        merged.append(box)
    return np.asarray(rows, np.int64), np.asarray(merged, np.float32).reshape(-1, 4)


def sliced_detect(detector: Detector, image: np.ndarray, config: SliceConfig) -> Detections:
    """Detections of ``image`` (``[H, W, 3]`` BGR uint8) from its tiles, merged across tile borders.

    Raises:
        ValueError: a tile larger than the image. ImportError: supervision is not installed.
    """
    try:
        import supervision as sv
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    height, width = image.shape[:2]
    config.check_image(height, width)
    tile_counter = itertools.count()

    def detect_tiles(tiles: list[np.ndarray]) -> list[sv.Detections]:
        out = []
        for image_tile, found in zip(tiles, detector.detect(tiles), strict=True):
            tile = next(tile_counter)
            # A tile sees only its own pixels: boxes reaching past its border are cut at it.
            tile_h, tile_w = image_tile.shape[:2]
            boxes = found.boxes_xyxy.astype(np.float32).reshape(-1, 4).clip(0, [tile_w, tile_h, tile_w, tile_h])
            out.append(
                sv.Detections(
                    xyxy=boxes,
                    confidence=found.scores.astype(np.float32),
                    class_id=found.class_ids.astype(int),
                    data={"tile": np.full(len(found), tile, np.int64)},
                )
            )
        return out

    slice_h, slice_w = config.slice_hw
    slicer = sv.InferenceSlicer(
        callback=detect_tiles,
        slice_wh=(slice_w, slice_h),
        overlap_wh=(int(round(config.overlap * slice_w)), int(round(config.overlap * slice_h))),
        overlap_filter="none",
        batch_size=detector.max_batch,
        thread_workers=1,
    )
    found = slicer(image)
    if len(found) == 0:
        return Detections.empty()
    class_ids = np.asarray(found.class_id, np.int64)
    rows, boxes = merge_across_tiles(
        np.asarray(found.xyxy, np.float32),
        np.asarray(found.confidence, np.float32),
        class_ids,
        np.asarray(found.data["tile"], np.int64),
        threshold=config.match_threshold,
    )
    names, categories = detector.metadata.class_names, np.asarray(detector.metadata.category_ids, np.int64)
    kept = class_ids[rows]
    return Detections(
        boxes_xyxy=boxes,
        scores=np.asarray(found.confidence, np.float32)[rows],
        class_ids=kept,
        class_names=tuple(names[c] for c in kept),
        category_ids=categories[kept],
    )


def run_sliced(
    source: Iterable[Frame],
    detector: Detector,
    consume: Callable[[Frame, Detections], bool | None],
    config: SliceConfig,
) -> PipelineResult:
    """Sliced detection of each frame in order (tiles batched per frame), then ``consume(frame, detections)``."""
    result = PipelineResult()
    start = time.perf_counter()
    try:
        for frame in source:
            tick = time.perf_counter()
            detections = sliced_detect(detector, frame.image, config)
            result.times.inference += time.perf_counter() - tick
            tick = time.perf_counter()
            keep_going = consume(frame, detections) is not False
            result.times.draw_write += time.perf_counter() - tick
            result.frames += 1
            if not keep_going:
                result.stopped = True
                break
    except KeyboardInterrupt:
        result.interrupted = True
    result.wall_s = time.perf_counter() - start
    return result
