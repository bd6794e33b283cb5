"""Sinks publish atomically: a playable video (also when closed early), images, COCO results; abort leaves nothing."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import video_facts

from rtdetr_deploy.runtime.detections import Detections
from rtdetr_deploy.runtime.drawing import draw_detections
from rtdetr_deploy.runtime.sinks import CocoResultsWriter, ImageWriter, VideoWriter


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_video_is_published_only_on_close(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "out" / f"clip{suffix}"
    writer = VideoWriter(path, fps=7.0, size_wh=(80, 48))
    for i in range(5):
        writer.write(np.full((48, 80, 3), i * 40, np.uint8))
    writer.write(np.zeros((10, 10, 3), np.uint8))  # another size is resized, never dropped
    assert not path.exists()
    writer.close()
    assert video_facts(path) == (6, 7.0, (80, 48))
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_aborted_video_leaves_nothing(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "clip.mp4", fps=5.0, size_wh=(32, 32))
    writer.write(np.zeros((32, 32, 3), np.uint8))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_unsupported_container(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported video container '.gif'"):
        VideoWriter(tmp_path / "clip.gif", fps=5.0, size_wh=(32, 32))
    assert list(tmp_path.iterdir()) == []


def test_images_keep_names_and_avoid_clashes(tmp_path: Path) -> None:
    writer = ImageWriter(tmp_path / "out")
    image = np.full((20, 30, 3), 128, np.uint8)
    first = writer.write("a.jpg", image)
    second = writer.write("a.jpg", image)
    odd = writer.write("b.xyz", image)
    assert [first.name, second.name, odd.name] == ["a.jpg", "a_1.jpg", "b.png"]
    assert cv2.imread(str(second)).shape == (20, 30, 3)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "a_1.jpg", "b.png"]


def _detections() -> Detections:
    return Detections(
        boxes_xyxy=np.array([[5, 5, 25, 15], [-10, -10, 500, 500]], np.float32),
        scores=np.array([0.9, 0.4], np.float32),
        class_ids=np.array([0, 2]),
        class_names=("cat", "cup"),
        category_ids=np.array([17, 47]),
    )


def test_coco_results_are_written_once_and_atomically(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    writer = CocoResultsWriter(path)
    writer.add(3, _detections())
    writer.add(4, Detections.empty())
    assert not path.exists()
    writer.close()
    results = json.loads(path.read_text())
    assert [r["image_id"] for r in results] == [3, 3]
    assert [r["category_id"] for r in results] == [17, 47]
    assert results[0]["bbox"] == [5.0, 5.0, 20.0, 10.0] and results[0]["score"] == pytest.approx(0.9)
    assert writer.images == 2
    with pytest.raises(ValueError, match="file name"):
        CocoResultsWriter(tmp_path)


def test_drawing_marks_pixels_and_keeps_the_image() -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    drawn = draw_detections(image, _detections())
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert (image == 0).all()
    assert drawn.any()
    assert (draw_detections(image, Detections.empty()) == image).all()
