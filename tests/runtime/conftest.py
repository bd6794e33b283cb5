"""Fixtures for the runtime tests: real photos, synthetic videos, a detector on the shared tiny ONNX."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

DATA_DIR = Path(__file__).parent.parent / "data"
REAL_IMAGES = ("chelsea.png", "rocket.jpg")


def write_video(
    path: Path, *, frames: int, size: tuple[int, int] = (96, 64), fps: float = 12.0, fourcc: str = "mp4v"
) -> Path:
    """A synthetic video: a bright square moving over a gradient, ``size`` = (width, height)."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, size)
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    gradient = np.linspace(0, 200, width, dtype=np.uint8)[None, :, None].repeat(height, 0).repeat(3, 2)
    for i in range(frames):
        frame = gradient.copy()
        x = (i * 5) % max(width - 16, 1)
        frame[height // 4 : height // 4 + 16, x : x + 16] = (40, 220, 255)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="session")
def real_image_paths() -> list[Path]:
    """Real photographs shipped in ``tests/data`` (see its README for provenance)."""
    return [DATA_DIR / name for name in REAL_IMAGES]


@pytest.fixture(scope="session")
def real_images(real_image_paths: list[Path]) -> list[np.ndarray]:
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in real_image_paths]
    assert all(img is not None for img in images)
    return images


@pytest.fixture
def video_factory(tmp_path: Path) -> Callable[..., Path]:
    """``video_factory(name, frames=..., size=..., fps=..., fourcc=...)`` writes a synthetic video in tmp_path."""

    def make(name: str = "clip.mp4", **kwargs: object) -> Path:
        return write_video(tmp_path / name, **kwargs)

    return make


@pytest.fixture(scope="session")
def onnx_detector(tiny_onnx: Path) -> Iterator[object]:
    """A ``Detector`` on the shared tiny ONNX, keeping every top-k detection (conf 0)."""
    from rtdetr_deploy.runtime import Detector

    with Detector(tiny_onnx, conf=0.0) as detector:
        yield detector
