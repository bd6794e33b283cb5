"""Media sources: every kind that can be made here, and every bad input the issue lists."""

from __future__ import annotations

import functools
import http.server
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtdetr_deploy.runtime.sources import ImageSource, VideoSource, open_source


def _frames(source: ImageSource | VideoSource) -> list:
    with source:
        return list(source)


def test_single_image(real_image_paths: list[Path]) -> None:
    source = open_source(str(real_image_paths[1]))
    assert isinstance(source, ImageSource) and source.total == 1
    (frame,) = _frames(source)
    assert frame.image.shape == (427, 640, 3) and frame.image.dtype == np.uint8
    assert frame.name == "rocket.jpg" and frame.image_id == 0


def test_folder_skips_non_images_and_corrupt_files_with_warnings(
    real_image_paths: list[Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for path in real_image_paths:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / ".hidden.jpg").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="rtdetr_deploy"):
        source = open_source(tmp_path)
        frames = _frames(source)
    assert [f.name for f in frames] == ["chelsea.png", "rocket.jpg"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("1 non-image files" in m and "notes.txt" in m for m in messages)
    assert any("broken.jpg" in m and "not a decodable image" in m for m in messages)
    assert any("empty.png" in m and "empty file" in m for m in messages)
    assert sorted(p.name for p in source.skipped) == ["broken.jpg", "empty.png"]


def test_glob_and_numeric_image_ids(real_image_paths: list[Path], tmp_path: Path) -> None:
    shutil.copy(real_image_paths[0], tmp_path / "000000000139.png")
    shutil.copy(real_image_paths[1], tmp_path / "000000000785.jpg")
    shutil.copy(real_image_paths[1], tmp_path / "other.jpg")
    frames = _frames(open_source(str(tmp_path / "0000*")))
    assert [f.image_id for f in frames] == [139, 785]
    frames = _frames(open_source(str(tmp_path / "*.jpg")))
    assert [(f.name, f.image_id) for f in frames] == [("000000000785.jpg", 0), ("other.jpg", 1)]


def test_grayscale_rgba_and_16bit_files_are_converted(tmp_path: Path) -> None:
    base = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), cv2.cvtColor(base, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(base, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(tmp_path / "deep.png"), base.astype(np.uint16) * 257)
    frames = {f.name: f.image for f in _frames(open_source(tmp_path))}
    assert set(frames) == {"gray.png", "rgba.png", "deep.png"}
    for image in frames.values():
        assert image.shape == (24, 32, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(frames["rgba.png"], base)
    np.testing.assert_array_equal(frames["deep.png"], base)


def test_video_file(video_factory: Callable[..., Path]) -> None:
    path = video_factory("clip.mp4", frames=15, size=(96, 64), fps=12.0)
    source = open_source(str(path))
    assert isinstance(source, VideoSource) and source.kind == "video"
    assert (source.total, source.fps, source.size, source.name) == (15, 12.0, (96, 64), "clip")
    frames = _frames(source)
    assert [f.image_id for f in frames] == list(range(15))
    assert frames[3].name == "frame_000003" and frames[0].image.shape == (64, 96, 3)
    assert not source.stopped_early


def test_video_that_stops_decoding_midway(video_factory: Callable[..., Path], caplog: pytest.LogCaptureFixture) -> None:
    path = video_factory("clip.avi", frames=40, size=(96, 64), fps=10.0, fourcc="MJPG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="rtdetr_deploy"):
        source = open_source(str(path))
        frames = _frames(source)
    assert 0 < len(frames) < 40
    assert source.stopped_early
    assert any("decoding stopped at frame" in r.getMessage() for r in caplog.records)


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    """A static file server on 127.0.0.1 (loopback only), serving ``tmp_path``."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base-class signature
        pass


def test_http_stream_on_loopback(video_factory: Callable[..., Path], http_server: str) -> None:
    video_factory("live.mp4", frames=9, size=(96, 64), fps=9.0)
    source = open_source(f"{http_server}/live.mp4")
    assert isinstance(source, VideoSource) and source.kind == "stream"
    assert source.name == "live" and source.fps == 9.0 and source.total is None
    assert len(_frames(source)) == 9


def test_unreachable_stream_is_one_clear_error(http_server: str) -> None:
    with pytest.raises(ValueError, match="cannot open stream"):
        open_source(f"{http_server}/missing.mp4")


def test_missing_sources(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="source not found"):
        open_source(str(tmp_path / "nope.jpg"))
    with pytest.raises(FileNotFoundError, match="no files match"):
        open_source(str(tmp_path / "*.jpg"))


def test_folder_without_images(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no images in folder"):
        open_source(tmp_path)
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=r"found 1 other files"):
        open_source(tmp_path)


def test_corrupt_single_image_and_corrupt_video(tmp_path: Path) -> None:
    image = tmp_path / "broken.png"
    image.write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="cannot read image .*broken.png"):
        _frames(open_source(str(image)))
    zero = tmp_path / "zero.jpg"
    zero.write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        _frames(open_source(str(zero)))
    video = tmp_path / "broken.mp4"
    video.write_bytes(os.urandom(2048))
    with pytest.raises(ValueError, match="cannot open video file"):
        open_source(str(video))


def test_camera_that_does_not_exist() -> None:
    with pytest.raises(ValueError, match="cannot open camera 97"):
        open_source("97")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(real_image_paths: list[Path], tmp_path: Path) -> None:
    locked = tmp_path / "locked.jpg"
    shutil.copy(real_image_paths[1], locked)
    locked.chmod(0)
    with pytest.raises(PermissionError, match="not readable"):
        open_source(str(locked))
