"""Detector: parity with the PyTorch model on real photos, batching, raw graphs, classes, input kinds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np
import pytest

from rtdetr_deploy.errors import BackendError
from rtdetr_deploy.metadata import ModelMetadata
from rtdetr_deploy.runtime import Backend, Detections, Detector, TensorSpec

BOX_RTOL, BOX_ATOL_PX, SCORE_ATOL = 1e-3, 1e-3, 1e-5


def _torch_reference(checkpoint: Path, image_bgr: np.ndarray, metadata: ModelMetadata, *, sampling: str):
    """Official deploy pipeline in torch: RGB, plain resize, [0, 1], DeployModel with the metadata's top-k."""
    torch = pytest.importorskip("torch")
    from rtdetr_deploy import load_model
    from rtdetr_deploy.models import DeployModel, PostProcessor

    model = DeployModel(load_model(checkpoint, sampling=sampling), PostProcessor(topk=metadata.topk)).eval()
    height, width = metadata.input_size
    rgb = cv2.resize(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB), (width, height), interpolation=cv2.INTER_LINEAR)
    images = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    sizes = torch.tensor([[image_bgr.shape[1], image_bgr.shape[0]]])
    with torch.no_grad():
        labels, boxes, scores = model(images, sizes)
    return labels[0].numpy(), boxes[0].numpy(), scores[0].numpy()


def _assert_same(det: Detections, labels: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> None:
    np.testing.assert_array_equal(det.class_ids, labels)
    np.testing.assert_allclose(det.scores, scores, rtol=0, atol=SCORE_ATOL)
    np.testing.assert_allclose(det.boxes_xyxy, boxes, rtol=BOX_RTOL, atol=BOX_ATOL_PX)


def test_onnx_detector_reproduces_pytorch_on_real_photos(
    onnx_detector: Detector, tiny_checkpoint: Path, real_image_paths: list[Path]
) -> None:
    metadata = onnx_detector.metadata
    for path in real_image_paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        det = onnx_detector(image)
        assert len(det) == metadata.topk
        labels, boxes, scores = _torch_reference(tiny_checkpoint, image, metadata, sampling=metadata.sampling)
        _assert_same(det, labels, boxes, scores)
        assert det.class_names == tuple(metadata.class_names[i] for i in labels)
        np.testing.assert_array_equal(det.category_ids, [metadata.category_ids[i] for i in labels])


def test_torch_detector_matches_the_torch_model(tiny_checkpoint: Path, real_images: list[np.ndarray]) -> None:
    pytest.importorskip("torch")
    with Detector(tiny_checkpoint, conf=0.0) as detector:
        assert detector.backend.description.startswith("torch")
        det = detector(real_images[1])
        labels, boxes, scores = _torch_reference(
            tiny_checkpoint, real_images[1], detector.metadata, sampling="bilinear"
        )
    _assert_same(det, labels, boxes, scores)


def test_raw_graph_gets_numpy_topk(tiny_checkpoint: Path, tmp_path: Path, onnx_detector: Detector) -> None:
    """A graph that stops at pred_logits/pred_boxes yields the same detections through the numpy top-k."""
    pytest.importorskip("torch")
    import onnx

    from rtdetr_deploy import load_model
    from rtdetr_deploy.export.onnx_export import RAW_OUTPUT_NAMES, export_probe, strip_probe

    metadata = onnx_detector.metadata
    model = load_model(tiny_checkpoint, sampling=metadata.sampling)
    model.set_eval_size(metadata.input_size)
    probe = export_probe(model, tmp_path / "probe.onnx", metadata=metadata)
    raw = tmp_path / "raw.onnx"
    onnx.save(strip_probe(onnx.load(str(probe.path)), outputs=RAW_OUTPUT_NAMES), str(raw))
    image = cv2.imread(str(Path(__file__).parent.parent / "data" / "rocket.jpg"))
    with Detector(raw, conf=0.0) as detector:
        assert {s.name for s in detector.backend.output_specs} == {"pred_logits", "pred_boxes"}
        det = detector(image)
    ref = onnx_detector(image)
    _assert_same(det, ref.class_ids, ref.boxes_xyxy, ref.scores)


def test_batches_match_single_images(onnx_detector: Detector, real_images: list[np.ndarray]) -> None:
    images = [*real_images, real_images[0][:120, :200], real_images[1][::2, ::2], real_images[0]]
    assert onnx_detector.max_batch == 4 and len(images) == 5
    batched = onnx_detector(images)
    assert len(batched) == len(images)
    for image, det in zip(images, batched, strict=True):
        single = onnx_detector(image)
        _assert_same(det, single.class_ids, single.boxes_xyxy, single.scores)
        assert det.boxes_xyxy[:, 2].max() < image.shape[1] * 1.5
    with pytest.raises(ValueError, match="batch limit 4"):
        onnx_detector.preprocess(images)


def test_grayscale_rgba_and_16bit_arrays(onnx_detector: Detector, real_images: list[np.ndarray]) -> None:
    image = real_images[0]
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    deep = image.astype(np.uint16) * 257
    for variant in (gray, bgra, deep):
        det = onnx_detector(variant)
        assert len(det) == onnx_detector.metadata.topk
    ref = onnx_detector(image)
    _assert_same(onnx_detector(bgra), ref.class_ids, ref.boxes_xyxy, ref.scores)
    _assert_same(onnx_detector(deep), ref.class_ids, ref.boxes_xyxy, ref.scores)
    with pytest.raises(ValueError, match="H, W > 0"):
        onnx_detector(np.zeros((0, 0, 3), np.uint8))


def test_threshold_and_classes(tiny_onnx: Path, real_images: list[np.ndarray]) -> None:
    with Detector(tiny_onnx, conf=0.0) as everything:
        all_dets = everything(real_images[0])
    cut = float(np.median(all_dets.scores))
    names = ("circle", "square", "triangle")
    present = int(np.bincount(all_dets.class_ids[all_dets.scores >= cut]).argmax())
    other = (present + 1) % 3
    with Detector(tiny_onnx, conf=cut, classes=[names[present], str(other)]) as detector:
        det = detector(real_images[0])
        assert len(det) > 0 and (det.scores >= cut).all()
        assert set(det.class_names) <= {names[present], names[other]}
        expected = (all_dets.scores >= cut) & np.isin(all_dets.class_ids, [present, other])
        assert len(det) == int(expected.sum())
    with pytest.raises(ValueError, match="did you mean 'square'"):
        Detector(tiny_onnx, classes=["sqare"])
    with pytest.raises(ValueError, match="indices 0..2"):
        Detector(tiny_onnx, classes=["3"])
    with pytest.raises(ValueError, match="conf"):
        Detector(tiny_onnx, conf=-0.1)
    with pytest.raises(ValueError, match="unknown device"):
        Detector(tiny_onnx, device="gpu0")


def test_detector_accepts_a_torch_module(tiny_checkpoint: Path, real_images: list[np.ndarray]) -> None:
    pytest.importorskip("torch")
    from rtdetr_deploy import load_model

    with Detector(load_model(tiny_checkpoint), conf=0.0) as detector:
        assert len(detector(real_images[0])) == detector.metadata.topk
    with pytest.raises(ValueError, match="torch backend"):
        Detector(load_model(tiny_checkpoint), backend="onnxruntime")


class _FixedBatchDouble:
    """A backend test double with a fixed batch of 3 and int32 sizes, as a TensorRT engine may declare.

    It reports each image's (width, height) as one box, so the test sees exactly what the Detector fed it.
    """

    def __init__(self, *, outputs: tuple[str, ...] = ("labels", "boxes", "scores")) -> None:
        self.metadata = ModelMetadata(preset="tiny", input_size=(32, 32), class_names=("a", "b"), category_ids=(7, 9))
        self.input_specs = (
            TensorSpec("images", (3, 3, 32, 32), np.dtype(np.float32)),
            TensorSpec("orig_target_sizes", (3, 2), np.dtype(np.int32)),
        )
        self.output_specs = tuple(TensorSpec(name, (3, 1), np.dtype(np.float32)) for name in outputs)
        self.name = "double"
        self.description = "double"
        self.feeds: list[dict[str, np.ndarray]] = []
        self.closed = False

    @classmethod
    def from_path(cls, path: str, *, device: str | None = None) -> _FixedBatchDouble:
        raise NotImplementedError

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.feeds.append(dict(feed))
        sizes = feed["orig_target_sizes"].astype(np.float32)
        boxes = np.concatenate([np.zeros_like(sizes), sizes], axis=1)[:, None, :]
        return {"labels": np.ones((3, 1), np.int64), "boxes": boxes, "scores": np.full((3, 1), 0.5, np.float32)}

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> _FixedBatchDouble:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None):
        self.close()


def test_fixed_batch_is_padded_and_inputs_take_the_declared_dtype() -> None:
    double = _FixedBatchDouble()
    assert isinstance(double, Backend)
    detector = Detector(double)
    images = [np.zeros((10 + i, 20 + i, 3), np.uint8) for i in range(4)]
    results = detector(images)
    assert [feed["images"].shape[0] for feed in double.feeds] == [3, 3]
    assert all(feed["orig_target_sizes"].dtype == np.int32 for feed in double.feeds)
    assert len(results) == 4
    for image, det in zip(images, results, strict=True):
        np.testing.assert_array_equal(det.boxes_xyxy[0], [0, 0, image.shape[1], image.shape[0]])
        assert det.class_names == ("b",) and det.category_ids.tolist() == [9]
    detector.close()
    assert double.closed


def test_outputs_that_are_not_rtdetr_are_refused() -> None:
    double = _FixedBatchDouble(outputs=("logits",))
    with pytest.raises(BackendError, match="not RT-DETR's"):
        Detector(double)
    assert double.closed
