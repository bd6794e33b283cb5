"""``rtdetr-serve`` for real: Ray Serve on 127.0.0.1, answers compared with ``Detector`` on the same photographs.

One service (one replica, batches up to the model's 4) serves the whole module and is shut down after it. The
photographs are the shared test set (``shared/testdata/images`` beside the repository, as CI lays it out).
Every request has a timeout, so a hung service fails the test instead of hanging it.
"""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="needs Ray Serve: pip install 'rtdetr-deploy[serve]'")

from rtdetr_deploy.runtime import Detector  # noqa: E402
from rtdetr_deploy.runtime.sources import read_image  # noqa: E402
from rtdetr_deploy.serve.config import ServeConfig  # noqa: E402

IMAGES = Path(__file__).parents[2].parent / "shared" / "testdata" / "images"
TIMEOUT_S = 120
# The verification's tolerances (export.verify.Tolerances): scores, and boxes as a fraction of the larger side.
SCORE_TOL, BOX_FRACTION = 1e-4, 1e-4
MAX_BODY = 8 << 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, *, data: bytes | None = None, method: str = "GET", content_type: str = "") -> tuple[int, dict]:
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read())
        if exc.code == 405:
            body["allow"] = exc.headers.get("Allow")
        return exc.code, body


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    if not IMAGES.is_dir():
        pytest.skip(f"the shared test photographs are not at {IMAGES}")
    files = sorted(p for p in IMAGES.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    assert len(files) == 4
    return {p.name: p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def reference(tiny_onnx: Path, photos: dict[str, bytes]) -> dict[str, list[dict]]:
    """What ``Detector`` finds on each photograph (every top-k detection), as plain dicts."""
    with Detector(tiny_onnx, conf=0.0) as detector:
        found = {}
        for name in photos:
            image, _ = read_image(IMAGES / name)
            d = detector(image)
            found[name] = [
                {"box": box, "score": s, "name": n, "category": c}
                for box, s, n, c in zip(d.boxes_xyxy, d.scores, d.class_names, d.category_ids, strict=True)
            ]
    return found


@pytest.fixture(scope="module")
def service(tiny_onnx: Path) -> Iterator[str]:
    from rtdetr_deploy.serve.service import start_service, stop_service

    config = ServeConfig(
        model=tiny_onnx, port=_free_port(), conf=0.0, threads=1, max_wait_ms=20, max_body_bytes=MAX_BODY
    )
    try:
        yield start_service(config)
    finally:
        stop_service()


def _assert_same(answer: list[dict], expected: list[dict], size: int) -> None:
    """Every served detection is one of the reference's (same class and category, score and box within the
    verification's tolerances), one to one; the order of near-equal scores may differ between batch sizes."""
    assert len(answer) == len(expected)
    unused = list(range(len(expected)))
    for got in answer:
        match = next(
            (
                i
                for i in unused
                if expected[i]["name"] == got["class_name"]
                and expected[i]["category"] == got["category_id"]
                and abs(expected[i]["score"] - got["score"]) <= SCORE_TOL
                and np.abs(expected[i]["box"] - np.asarray(got["box_xyxy"])).max() <= BOX_FRACTION * size
            ),
            None,
        )
        assert match is not None, f"served detection {got} is not among the Detector's"
        unused.remove(match)


def _size(data: bytes) -> int:
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return max(image.shape[:2])


def _batched_images(service: str) -> int:
    """Images the (one) replica has run so far, from the batch sizes that ``GET /model`` reports."""
    batches = _request(f"{service}/model")[1]["batches"]
    return sum(int(size) * count for size, count in batches.items())


def test_each_photograph_gets_what_detector_finds(service: str, photos: dict, reference: dict) -> None:
    for name, data in photos.items():
        status, body = _request(f"{service}/detect", data=data, method="POST", content_type="image/jpeg")
        assert status == 200
        _assert_same(body["detections"], reference[name], _size(data))


def test_conf_query_thresholds_the_answer(service: str, photos: dict, reference: dict) -> None:
    name, data = next(iter(photos.items()))
    median = float(np.median([d["score"] for d in reference[name]]))
    status, body = _request(f"{service}/detect?conf={median}", data=data, method="POST")
    assert status == 200
    kept = [d for d in reference[name] if d["score"] >= median]
    assert abs(len(body["detections"]) - len(kept)) <= 1  # a score within float rounding of the threshold
    assert all(d["score"] >= median for d in body["detections"])


def test_json_batch_answers_each_image_in_order(service: str, photos: dict, reference: dict) -> None:
    names = list(photos)
    payload = json.dumps({"images": [base64.b64encode(photos[n]).decode() for n in names]}).encode()
    status, body = _request(f"{service}/detect", data=payload, method="POST", content_type="application/json")
    assert status == 200 and len(body["results"]) == len(names)
    for name, result in zip(names, body["results"], strict=True):
        _assert_same(result["detections"], reference[name], _size(photos[name]))


def test_100_concurrent_requests_each_get_their_own_answer(service: str, photos: dict, reference: dict) -> None:
    names = [list(photos)[i % len(photos)] for i in range(100)]

    def send(name: str) -> tuple[str, int, dict]:
        status, body = _request(f"{service}/detect", data=photos[name], method="POST", content_type="image/png")
        return name, status, body

    before = _batched_images(service)
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(send, names))
    assert _batched_images(service) - before == 100  # every image went through the batch queue exactly once
    assert [status for _, status, _ in answers] == [200] * 100
    for name, _, body in answers:
        _assert_same(body["detections"], reference[name], _size(photos[name]))


def test_bad_requests_get_their_status_and_the_service_keeps_answering(service: str, photos: dict) -> None:
    status, body = _request(f"{service}/detect", data=b"not an image at all", method="POST", content_type="image/png")
    assert status == 400 and "not an image" in body["error"] and "\n" not in body["error"]
    status, body = _request(f"{service}/detect", data=b"{oops", method="POST", content_type="application/json")
    assert status == 400
    status, body = _request(f"{service}/detect", data=b"\0" * (MAX_BODY + 1), method="POST")
    assert status == 413 and "limit" in body["error"]
    status, body = _request(f"{service}/detect")
    assert status == 405 and body["allow"] == "POST"
    status, body = _request(f"{service}/model", data=b"x", method="POST")
    assert status == 405 and body["allow"] == "GET"
    status, _ = _request(f"{service}/detect?conf=3", data=next(iter(photos.values())), method="POST")
    assert status == 400
    assert _request(f"{service}/nowhere")[0] == 404
    assert _request(f"{service}/healthz") == (200, {"status": "ok"})
    status, body = _request(f"{service}/detect", data=next(iter(photos.values())), method="POST")
    assert status == 200 and body["detections"]


def test_model_facts(service: str, tiny_onnx: Path) -> None:
    status, facts = _request(f"{service}/model")
    assert status == 200
    assert facts["model"] == tiny_onnx.name and facts["max_batch"] == 4 and facts["dynamic_batching"]
    assert facts["metadata"]["class_names"] == ["circle", "square", "triangle"]
    assert facts["metadata"]["category_ids"] == [1, 5, 9]
