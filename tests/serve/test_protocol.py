"""The service's HTTP protocol without Ray: routes, bodies to images, thresholds, the JSON of detections."""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np
import pytest

from rtdetr_deploy.runtime.detections import Detections
from rtdetr_deploy.serve.config import ServeConfig
from rtdetr_deploy.serve.protocol import (
    HttpError,
    check_route,
    decode_body,
    detections_json,
    filter_conf,
    parse_conf,
    response_json,
)


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def _status(call) -> tuple[int, str]:  # noqa: ANN001 - a zero-argument callable
    with pytest.raises(HttpError) as info:
        call()
    return info.value.status, info.value.message


def test_routes_answer_one_method_each() -> None:
    check_route("/detect", "post")
    check_route("/model/", "GET")
    assert _status(lambda: check_route("/detect", "GET"))[0] == 405
    with pytest.raises(HttpError) as info:
        check_route("/healthz", "DELETE")
    assert info.value.allow == "GET"
    assert _status(lambda: check_route("/predict", "POST"))[0] == 404


def test_image_bodies_decode_to_the_pixels_sent() -> None:
    image = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    images, batch = decode_body(_png(image), "image/png")
    assert not batch and len(images) == 1 and np.array_equal(images[0], image)
    # The content type does not matter for an image body; PNG is lossless, so the pixels come back exactly.
    images, _ = decode_body(_png(image), "application/octet-stream")
    assert np.array_equal(images[0], image)
    gray = image[:, :, 0]
    images, _ = decode_body(_png(gray), "")
    assert images[0].shape == (17, 23, 3) and np.array_equal(images[0][:, :, 1], gray)


def test_json_batches_decode_in_order() -> None:
    first, second = np.zeros((4, 5, 3), np.uint8), np.full((6, 2, 3), 200, np.uint8)
    body = json.dumps({"images": [base64.b64encode(_png(img)).decode() for img in (first, second)]}).encode()
    images, batch = decode_body(body, "application/json; charset=utf-8")
    assert batch and [img.shape for img in images] == [(4, 5, 3), (6, 2, 3)]
    assert np.array_equal(images[1], second)


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        (b"", "image/jpeg", "empty body"),
        (b"definitely not an image", "image/jpeg", "not an image"),
        (b"{not json", "application/json", "not valid JSON"),
        (b'{"images": []}', "application/json", "at least one image"),
        (b'{"images": ["%%%"]}', "application/json", "images[0] is not valid base64"),
        (json.dumps({"images": [base64.b64encode(b"abc").decode()]}).encode(), "application/json", "images[0]"),
    ],
)
def test_bad_bodies_are_400_with_one_line(body: bytes, content_type: str, fragment: str) -> None:
    status, message = _status(lambda: decode_body(body, content_type))
    assert status == 400 and fragment in message and "\n" not in message


def test_conf_parses_or_is_400() -> None:
    assert parse_conf(None, 0.25) == 0.25 and parse_conf("0.5", 0.25) == 0.5
    for text in ("2", "-0.1", "high", "nan"):
        assert _status(lambda text=text: parse_conf(text, 0.25))[0] == 400


def _detections() -> Detections:
    return Detections(
        boxes_xyxy=np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]], np.float32),
        scores=np.array([0.9, 0.5, 0.2], np.float32),
        class_ids=np.array([2, 0, 1], np.int64),
        class_names=("triangle", "circle", "square"),
        category_ids=np.array([9, 1, 5], np.int64),
    )


def test_threshold_and_json_of_a_hand_made_case() -> None:
    kept = filter_conf(_detections(), 0.5)
    assert detections_json(kept) == [
        {"box_xyxy": [1.0, 2.0, 3.0, 4.0], "score": pytest.approx(0.9), "class_id": 2, "class_name": "triangle",
         "category_id": 9},
        {"box_xyxy": [5.0, 6.0, 7.0, 8.0], "score": 0.5, "class_id": 0, "class_name": "circle", "category_id": 1},
    ]  # fmt: skip
    assert len(filter_conf(_detections(), 0.95)) == 0
    assert response_json([kept, kept], batch=True)["results"][1]["detections"][1]["category_id"] == 1
    assert list(response_json([kept], batch=False)) == ["detections"]


def test_config_rejects_bad_values(tmp_path) -> None:  # noqa: ANN001 - pathlib.Path
    ServeConfig(model=tmp_path / "m.onnx")
    for bad in ({"replicas": 0}, {"threads": -1}, {"conf": 1.5}, {"port": 70000}, {"max_wait_ms": -1}):
        with pytest.raises(ValueError):
            ServeConfig(model=tmp_path / "m.onnx", **bad)
