"""Video decoders: threaded decoding yields the frames single-threaded decoding yields, bit for bit and in order.

The clips are H.264 with B-frames (decode order differs from presentation order), and every frame carries its own
index as a row of black and white blocks, so the order is read back from the pixels, not from the decoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rtdetr_deploy.runtime.decoders import DecoderConfig, OpenCvDecoder, open_decoder, resolve_decoder
from rtdetr_deploy.runtime.sources import VideoSource, open_source

av = pytest.importorskip("av")

BITS = 8
BLOCK = 16


def indexed_clip(path: Path, *, frames: int, size_wh: tuple[int, int] = (320, 240), fps: int = 25) -> Path:
    """An H.264 clip (x264 ``veryfast``: B-frames) whose frame ``i`` shows ``i`` in binary as blocks on top."""
    width, height = size_wh
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (height, width + 4 * frames, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20"}
        for i in range(frames):
            image = texture[:, 4 * i : 4 * i + width].copy()
            for bit in range(BITS):
                value = 255 if (i >> bit) & 1 else 0
                image[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = value
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_index(image: np.ndarray) -> int:
    """The index a frame of ``indexed_clip`` shows (block means against mid-grey)."""
    means = [image[2 : BLOCK - 2, bit * BLOCK + 2 : (bit + 1) * BLOCK - 2].mean() for bit in range(BITS)]
    return sum(1 << bit for bit, mean in enumerate(means) if mean > 128)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return indexed_clip(tmp_path_factory.mktemp("decoders") / "indexed.mp4", frames=48)


def _decode(path: Path, decoder: str, threads: int) -> list[np.ndarray]:
    opened = open_decoder(str(path), kind="video", label=str(path), config=DecoderConfig(decoder, threads))
    try:
        return list(opened)
    finally:
        opened.close()


def test_the_clip_really_has_b_frames(clip: Path) -> None:
    """Guards the order tests below: with B-frames, packets come in another order than the frames they show."""
    with av.open(str(clip)) as container:
        pts = [packet.pts for packet in container.demux(video=0) if packet.pts is not None]
    assert pts != sorted(pts)


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
@pytest.mark.parametrize("threads", [2, 4, 0])
def test_threaded_decoding_equals_single_threaded_bit_for_bit_and_in_order(
    clip: Path, decoder: str, threads: int
) -> None:
    single = _decode(clip, decoder, 1)
    threaded = _decode(clip, decoder, threads)
    assert [frame_index(f) for f in single] == list(range(48))
    assert [frame_index(f) for f in threaded] == list(range(48))
    assert len(threaded) == len(single)
    for one, many in zip(single, threaded, strict=True):
        assert one.shape == (240, 320, 3) and one.dtype == np.uint8
        np.testing.assert_array_equal(many, one)


def test_pyav_frames_match_opencv_frames(clip: Path) -> None:
    """Both convert YUV 4:2:0 to BGR with swscale's BT.601 defaults. Equal bit for bit with the wheels tested here;
    the stated tolerance (at most 2 levels, mean under 0.05) leaves room for another FFmpeg build's rounding."""
    pyav, opencv = np.stack(_decode(clip, "pyav", 0)), np.stack(_decode(clip, "opencv", 0))
    assert pyav.shape == opencv.shape
    delta = np.abs(pyav.astype(np.int16) - opencv.astype(np.int16))
    assert delta.max() <= 2 and delta.mean() < 0.05


def test_pyav_sets_frame_threading(clip: Path) -> None:
    opened = open_decoder(str(clip), kind="video", label="clip", config=DecoderConfig("pyav", 3))
    try:
        assert opened._stream.thread_count == 3 and opened._stream.thread_type == av.codec.context.ThreadType.AUTO
        assert (opened.fps, opened.frame_count, opened.size_wh) == (25.0, 48, (320, 240))
    finally:
        opened.close()


def test_video_source_reports_the_same_facts_with_either_decoder(clip: Path) -> None:
    for name in ("pyav", "opencv"):
        with open_source(clip, decoder=DecoderConfig(name, 2)) as source:
            assert isinstance(source, VideoSource) and source.decoder == name
            assert (source.total, source.fps, source.size) == (48, 25.0, (320, 240))
            assert [frame.index for frame in source] == list(range(48))


def test_a_truncated_h264_stream_keeps_the_frames_before_the_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # MPEG-TS, not mp4: an mp4 cut in half loses its index (moov, at the end) and cannot be opened at all.
    path = indexed_clip(tmp_path / "cut.ts", frames=60)
    full = _decode(path, "pyav", 1)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    frames = _decode(path, "pyav", 4)
    assert 0 < len(frames) < 60
    assert [frame_index(f) for f in frames] == list(range(len(frames)))
    for got, want in zip(frames[:-2], full, strict=False):  # the last frames before a cut may be incomplete
        np.testing.assert_array_equal(got, want)


def test_auto_picks_pyav_for_files_and_opencv_for_streams_and_cameras() -> None:
    assert resolve_decoder("auto", kind="video") == "pyav"
    assert resolve_decoder("auto", kind="stream") == "opencv"
    assert resolve_decoder("auto", kind="camera") == "opencv"
    with pytest.raises(ValueError, match="cameras are read by the opencv decoder, not 'pyav'"):
        resolve_decoder("pyav", kind="camera")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decoder": "ffmpeg"}, "unknown decoder 'ffmpeg'; choose from auto, opencv, pyav, nvdec"),
        ({"threads": -1}, "decode threads must be 0 .* got -1"),
        ({"threads": 1.5}, "got 1.5"),
        ({"gpu": -2}, "device index"),
    ],
)
def test_bad_decoder_config(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DecoderConfig(**kwargs)


def test_nvdec_without_pynvvideocodec_is_one_clear_error(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)
    with pytest.raises(ImportError, match="nvdec decoder needs PyNvVideoCodec") as info:
        open_decoder(str(clip), kind="video", label="clip", config=DecoderConfig("nvdec"))
    assert info.value.name == "PyNvVideoCodec" and "\n" not in str(info.value)


def test_pyav_missing_is_one_clear_error(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match=r"pip install 'rtdetr-deploy\[video\]'"):
        open_decoder(str(clip), kind="video", label="clip", config=DecoderConfig("pyav"))


def test_unopenable_files_name_the_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 4096)
    for name in ("pyav", "opencv"):
        with pytest.raises(ValueError, match=r"cannot open video file .*junk.mp4"):
            open_decoder(str(junk), kind="video", label=str(junk), config=DecoderConfig(name))
    assert OpenCvDecoder.name == "opencv"


def test_infer_runs_with_the_decoder_and_threads_asked_for(
    clip: Path, tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import json

    from rtdetr_deploy.cli.infer import main

    results = {}
    for decoder in ("opencv", "pyav"):
        out = tmp_path / f"{decoder}.json"
        argv = [str(clip), "--model", str(tiny_onnx), "--json", str(out), "--decoder", decoder]
        assert main([*argv, "--decode-threads", "2", "--preprocess-workers", "3", "--batch", "3"]) == 0
        printed = capsys.readouterr().out
        assert "done: 48 frames" in printed and f"{decoder} decoder, 3 preprocessing workers" in printed
        results[decoder] = json.loads(out.read_text())
    # Every frame got its results under its own index, whichever decoder read it (the pixels agree, see above).
    for entries in results.values():
        assert {e["image_id"] for e in entries} == set(range(48))
    assert len(results["opencv"]) == len(results["pyav"])


@pytest.mark.parametrize(
    ("flags", "status", "message"),
    [
        (["--decoder", "nvdec"], 1, "PyNvVideoCodec is not installed: pip install PyNvVideoCodec"),
        (["--decode-threads", "-1"], 2, "decode threads must be 0 (automatic) or a positive integer, got -1"),
        (["--preprocess-workers", "0"], 2, "preprocess workers must be a positive integer, got 0"),
    ],
)
def test_infer_decoder_errors_are_one_line(
    clip: Path,
    tiny_onnx: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    status: int,
    message: str,
) -> None:
    import sys

    from rtdetr_deploy.cli.infer import main

    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)
    assert main([str(clip), "--model", str(tiny_onnx), *flags]) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == f"rtdetr-infer: error: {message}", err
