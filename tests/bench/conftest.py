"""Fixtures for the benchmark tests: a short synthetic video."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.fixture(scope="session")
def short_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 frames of 160 x 96 pixels: a square moving over a gradient (mp4v)."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    width, height = 160, 96
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 12.0, (width, height))
    assert writer.isOpened()
    gradient = np.linspace(0, 200, width, dtype=np.uint8)[None, :, None].repeat(height, 0).repeat(3, 2)
    for i in range(12):
        frame = gradient.copy()
        frame[20:52, 8 * i : 8 * i + 32] = (40, 220, 255)
        writer.write(frame)
    writer.release()
    return path
