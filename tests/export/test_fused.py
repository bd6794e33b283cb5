"""Fused preprocessing: the in-graph preprocessing against the runtime's (OpenCV), the fused graph against its
published graph, the metadata, the runtime feeding raw frames, and faults the verification must refuse."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")

from helpers import tiny_deploy_onnx  # noqa: E402

from rtdetr_deploy.errors import ExportError  # noqa: E402
from rtdetr_deploy.export import fused  # noqa: E402
from rtdetr_deploy.export.fused import (  # noqa: E402
    fuse_preprocessing,
    fused_path,
    preprocessing_graph,
    write_fused,
)
from rtdetr_deploy.export.graphs import run_graph  # noqa: E402
from rtdetr_deploy.metadata import ModelMetadata, Preprocessing  # noqa: E402
from rtdetr_deploy.runtime.detector import Detector  # noqa: E402
from rtdetr_deploy.runtime.onnxruntime_backend import read_onnx_metadata  # noqa: E402
from rtdetr_deploy.runtime.preprocess import preprocess  # noqa: E402

DATA_DIR = Path(__file__).parents[1] / "data"
INPUT_SIZE = (160, 192)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_deploy_onnx(tmp_path_factory.mktemp("fused"), input_size=INPUT_SIZE, batch=(1, 2, 4))


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [cv2.imread(str(DATA_DIR / name)) for name in ("chelsea.png", "rocket.jpg")]


def _metadata(**preprocessing: object) -> ModelMetadata:
    return ModelMetadata(
        preset="tiny",
        input_size=INPUT_SIZE,
        class_names=("a",),
        category_ids=(1,),
        preprocessing=Preprocessing(**preprocessing),  # type: ignore[arg-type]
    )


def _run_preprocessing(metadata: ModelMetadata, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(preprocessing_graph(metadata, opset=17).SerializeToString())
    images, sizes = session.run(["images", "orig_target_sizes"], {"frames": frames})
    return images, sizes


@pytest.mark.parametrize("size_hw", [(720, 1280), (427, 640), (333, 517), INPUT_SIZE, (80, 96)])
def test_in_graph_preprocessing_is_within_one_level_of_opencv(photos: list[np.ndarray], size_hw: tuple) -> None:
    for photo in photos:
        frame = cv2.resize(photo, size_hw[::-1], interpolation=cv2.INTER_AREA)
        images, sizes = _run_preprocessing(_metadata(), frame[None])
        reference, reference_sizes = preprocess([frame], input_size=INPUT_SIZE, preprocessing=Preprocessing())
        levels = np.abs(images - reference) * 255
        assert images.shape == (1, 3, *INPUT_SIZE) and images.dtype == np.float32
        assert levels.max() <= 1 + 1e-3
        assert (levels > 1e-3).mean() <= 0.2
        if size_hw == INPUT_SIZE:
            np.testing.assert_array_equal(images, reference)
        np.testing.assert_array_equal(sizes, reference_sizes)


def test_rounding_is_half_up_like_opencv() -> None:
    """An exact 2x reduction averages 2x2 blocks: 1, 2, 3, 4 average to 2.5, which OpenCV rounds to 3 (half
    to even would give 2); every block here averages to n + 0.5."""
    block = np.array([[1, 2], [3, 4]], np.uint8)
    plane = np.kron(np.arange(0, 200, 10, dtype=np.uint8).reshape(4, 5), np.ones((2, 2), np.uint8)) + np.tile(
        block, (4, 5)
    )
    frame = np.repeat(plane[:, :, None], 3, axis=2)
    metadata = dataclasses.replace(_metadata(), input_size=(4, 5))
    images, _ = _run_preprocessing(metadata, frame[None])
    expected = np.arange(0, 200, 10).reshape(4, 5) + 3
    np.testing.assert_allclose(images[0, 0] * 255, expected, rtol=0, atol=1e-3)
    np.testing.assert_array_equal(cv2.resize(frame, (5, 4), interpolation=cv2.INTER_LINEAR)[..., 0], expected)


def test_colour_order_mean_and_std_follow_the_metadata() -> None:
    frame = np.zeros((1, 6, 8, 3), np.uint8)
    frame[..., 0] = 255  # blue
    mean, std = (0.5, 0.25, 0.125), (0.5, 0.5, 0.25)
    rgb, _ = _run_preprocessing(_metadata(mean=mean, std=std), frame)
    np.testing.assert_allclose(rgb[0, :, 0, 0], [(0 - 0.5) / 0.5, (0 - 0.25) / 0.5, (1 - 0.125) / 0.25], atol=1e-6)
    bgr, _ = _run_preprocessing(_metadata(color="bgr"), frame)
    np.testing.assert_allclose(bgr[0, :, 0, 0], [1.0, 0.0, 0.0])


def test_orig_target_sizes_come_from_the_frames_shape() -> None:
    _, sizes = _run_preprocessing(_metadata(), np.zeros((3, 37, 53, 3), np.uint8))
    assert sizes.dtype == np.int64
    np.testing.assert_array_equal(sizes, [[53, 37]] * 3)


def test_the_fused_graph_takes_frames_and_says_so(tiny: Path) -> None:
    fused_model = fuse_preprocessing(onnx.load(str(tiny)))
    (frames,) = fused_model.graph.input
    dims = [d.dim_value or d.dim_param for d in frames.type.tensor_type.shape.dim]
    assert frames.name == "frames" and frames.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert dims[1:] == ["H", "W", 3] and isinstance(dims[0], str)
    props = {p.key: p.value for p in fused_model.metadata_props}
    assert ModelMetadata.from_props(props).preprocessing.fused
    assert not read_onnx_metadata(tiny).preprocessing.fused
    with pytest.raises(ExportError, match="already does its own preprocessing"):
        fuse_preprocessing(fused_model)


def test_metadata_without_the_field_still_loads_and_unfused_files_omit_it() -> None:
    props = _metadata().to_props()
    assert '"fused"' not in props["preprocessing"]
    assert ModelMetadata.from_props(props).preprocessing == Preprocessing()
    marked = dataclasses.replace(_metadata(), preprocessing=Preprocessing(fused=True))
    assert ModelMetadata.from_props(marked.to_props()) == marked
    with pytest.raises(ValueError, match="fused must be true or false"):
        Preprocessing(fused="yes")  # type: ignore[arg-type]


@contextmanager
def _step(name: str):  # noqa: ANN202 - the export's step timer, silent
    yield {"detail": ""}


def test_write_fused_verifies_and_the_runtime_feeds_raw_frames(tiny: Path, photos: list[np.ndarray]) -> None:
    report = write_fused([tiny], photos, step=_step)
    assert report["passed"] and not report["failures"]
    pre, (graph,) = report["preprocessing"], report["graphs"]
    assert pre["max_level_delta"] <= 1 + 1e-3 and 0 < pre["off_share"] <= 0.2 and pre["sizes_equal"]
    assert graph["composition_exact"] and graph["end_to_end"]["compared"] > 0
    path = fused_path(tiny)
    assert path.name == "tiny.fused.onnx" and path.is_file()
    frames = [cv2.resize(photo, (w, h)) for photo in photos for h, w in ((360, 640), (240, 320))]
    with Detector(path, conf=0.0) as fused_detector, Detector(tiny, conf=0.0) as plain:
        assert fused_detector.fused and fused_detector.batch_key(frames[0]) == (360, 640)
        got = fused_detector(frames)
        # The same network fed the in-graph preprocessing: what the fused file must compute, exactly.
        images, sizes = _run_preprocessing(plain.metadata, np.stack(frames[0::2]))
        want = run_graph(tiny, images, sizes, batch=(1, 2, 4), outputs=["labels", "boxes", "scores"])
        for row, detections in enumerate(got[0::2]):
            np.testing.assert_array_equal(detections.scores, want["scores"][row])
            np.testing.assert_array_equal(detections.boxes_xyxy, want["boxes"][row])
        # Against the runtime's own preprocessing: random weights, so scores differ by float noise only.
        for a, b in zip(got, plain(frames), strict=True):
            np.testing.assert_allclose(a.scores[:5], b.scores[:5], atol=1e-4)


def _without_rounding(metadata: ModelMetadata, images: str, elem_type: int) -> tuple[list, list]:
    nodes, inits = original_pixel_nodes(metadata, images, elem_type)
    for node in nodes:
        if node.op_type == "Floor":
            node.op_type = "Identity"
    return nodes, inits


original_pixel_nodes = fused._pixel_nodes


def test_verification_refuses_a_resize_without_rounding(
    tiny: Path, photos: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fused, "_pixel_nodes", _without_rounding)
    with pytest.raises(ExportError, match=r"of in-graph preprocessed values differ from the runtime's \(> 20%\)"):
        write_fused([tiny], photos[:1], step=_step)


def test_verification_refuses_swapped_sizes(
    tiny: Path, photos: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = fused._size_nodes

    def swapped(sizes: str, elem_type: int) -> tuple[list, list]:
        nodes, inits = original(sizes, elem_type)
        for init in inits:
            if init.name.endswith("wh_index"):
                init.CopyFrom(onnx.numpy_helper.from_array(np.array([1, 2], np.int64), init.name))
        return nodes, inits

    monkeypatch.setattr(fused, "_size_nodes", swapped)
    with pytest.raises(ExportError, match="orig_target_sizes differ from the frames' .*does not compute what"):
        write_fused([tiny], photos[:1], step=_step)


def test_export_with_fuse_preprocess_publishes_the_verified_fused_graph(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from rtdetr_deploy.cli.export import build_parser, config_from_args
    from rtdetr_deploy.export.pipeline import export

    args = build_parser().parse_args([str(tiny_checkpoint), "-o", str(tmp_path), "--fuse-preprocess", "--topk", "50"])
    config = config_from_args(args)
    assert config.fuse_preprocess
    result = export(config, verbose=False)
    assert (tmp_path / "tiny.fused.onnx") in result.files
    assert result.report.fused["passed"]
    assert result.files.fused == {"fp32": tmp_path / "tiny.fused.onnx"}
    with Detector(tmp_path / "tiny.fused.onnx", conf=0.0) as detector:
        assert len(detector(np.zeros((90, 120, 3), np.uint8))) == 50
