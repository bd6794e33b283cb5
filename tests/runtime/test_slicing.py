"""Sliced inference: an object cut by a tile border is reported once and whole, detections of one tile are never
merged with each other, and bad slice settings are refused."""

from __future__ import annotations

import numpy as np
import pytest

from rtdetr_deploy.runtime.detections import Detections
from rtdetr_deploy.runtime.slicing import SliceConfig, merge_across_tiles, parse_slice

# trackers and supervision without opencv-python, installed for the session if missing (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("track_packages")


def test_a_cut_object_merges_into_its_union() -> None:
    # Tile 0 ends at x = 100 and sees the left part of the object; tile 1 sees it whole.
    boxes = np.array([[80, 10, 100, 30], [80, 10, 120, 30]], np.float32)
    rows, merged = merge_across_tiles(boxes, np.array([0.9, 0.7]), np.array([0, 0]), np.array([0, 1]))
    assert rows.tolist() == [0]
    np.testing.assert_array_equal(merged, [[80, 10, 120, 30]])


def test_one_tile_classes_and_distant_boxes_stay_apart() -> None:
    boxes = np.array([[0, 0, 40, 40], [2, 2, 42, 42], [0, 0, 40, 40], [200, 0, 240, 40]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([0, 0, 1, 0])
    tiles = np.array([0, 0, 1, 1])
    rows, merged = merge_across_tiles(boxes, scores, classes, tiles)
    # Two boxes of tile 0 are the model's own output (NMS-free): both stay; the other class and the far box too.
    assert rows.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(merged, boxes)


class _WhitePixelDetector:
    """Stands in for ``Detector``: one detection per tile, the extent of the tile's white pixels."""

    max_batch = 4

    class metadata:  # noqa: N801 - mirrors Detector.metadata
        class_names = ("box",)
        category_ids = (5,)

    def __init__(self) -> None:
        self.calls: list[int] = []

    def detect(self, tiles: list[np.ndarray]) -> list[Detections]:
        self.calls.append(len(tiles))
        out = []
        for tile in tiles:
            ys, xs = np.nonzero(tile[..., 0] > 127)
            if len(xs) == 0:
                out.append(Detections.empty())
                continue
            box = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]
            out.append(
                Detections(
                    boxes_xyxy=np.asarray(box, np.float32),
                    scores=np.array([0.9], np.float32),
                    class_ids=np.zeros(1, np.int64),
                    class_names=("box",),
                    category_ids=np.array([5], np.int64),
                )
            )
        return out


def test_an_object_across_tile_borders_is_reported_once_and_whole() -> None:
    pytest.importorskip("supervision", reason="needs the supervision package (the [track] extra)")
    from rtdetr_deploy.runtime.slicing import sliced_detect

    image = np.zeros((200, 300, 3), np.uint8)
    image[90:130, 110:170] = 255  # spans the borders of several 128-px tiles (stride 96)
    detector = _WhitePixelDetector()
    found = sliced_detect(detector, image, SliceConfig((128, 128), overlap=0.25))  # type: ignore[arg-type]
    assert len(found) == 1
    np.testing.assert_array_equal(found.boxes_xyxy, [[110, 90, 170, 130]])
    assert found.category_ids.tolist() == [5]
    # 3 x 2 tiles in batches of at most max_batch.
    assert sum(detector.calls) == 6 and max(detector.calls) <= 4


def test_bad_slices_are_refused() -> None:
    assert parse_slice("320,480") == (320, 480) and parse_slice("256") == (256, 256)
    for text in ("abc", "10,10", "1,2,3"):
        with pytest.raises(ValueError, match="--slice"):
            parse_slice(text)
    for overlap in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            SliceConfig((64, 64), overlap=overlap)
    with pytest.raises(ValueError, match="larger than the 100x300 image"):
        SliceConfig((128, 128)).check_image(100, 300)
