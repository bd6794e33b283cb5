"""A replica's batch runner without a running service: a failing image fails its own request only."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="needs Ray Serve: pip install 'rtdetr-deploy[serve]'")

from rtdetr_deploy.runtime.detections import Detections  # noqa: E402
from rtdetr_deploy.serve.app import DetectorReplica, replica_batch  # noqa: E402
from rtdetr_deploy.serve.config import ServeConfig  # noqa: E402


class _Model:
    """Fails every call that includes an image whose first pixel is 255; counts its calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        self.calls.append(len(images))
        if any(image[0, 0, 0] == 255 for image in images):
            raise RuntimeError("the model\nbroke")
        return [Detections.empty() for _ in images]


def _replica() -> DetectorReplica:
    replica = object.__new__(DetectorReplica)  # no model file: only the batch runner is under test
    replica.detector = _Model()
    return replica


def test_a_failing_image_fails_alone() -> None:
    replica = _replica()
    good, bad = np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)
    results = replica._run([good, bad, good])
    assert isinstance(results[0], Detections) and isinstance(results[2], Detections)
    assert results[1] == "inference failed: the model broke"
    assert replica.detector.calls == [3, 1, 1, 1]  # the batch, then each image again


def test_batch_size_per_call(tmp_path) -> None:  # noqa: ANN001 - pathlib.Path
    model = tmp_path / "m.onnx"
    assert replica_batch(ServeConfig(model=model), 8) == 8
    assert replica_batch(ServeConfig(model=model, max_batch=4), 8) == 4
    assert replica_batch(ServeConfig(model=model, max_batch=16), 8) == 8
    assert replica_batch(ServeConfig(model=model, dynamic_batching=False), 8) == 1


def test_replica_model_uses_the_threads_asked_for(tiny_onnx) -> None:  # noqa: ANN001 - pathlib.Path
    from rtdetr_deploy.runtime import OrtBackend
    from rtdetr_deploy.serve.app import open_detector

    with open_detector(ServeConfig(model=tiny_onnx, threads=1)) as detector:
        assert isinstance(detector.backend, OrtBackend) and detector.conf == 0.0
        assert detector.backend._session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(ValueError, match="threads"):
        OrtBackend.from_path(tiny_onnx, threads=0)
