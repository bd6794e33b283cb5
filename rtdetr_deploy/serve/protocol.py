"""The HTTP protocol of ``rtdetr-serve``, free of Ray: routes, request bodies to images, detections to JSON.

Routes::

    POST /detect    body: one encoded image (JPEG, PNG, WebP, ...) -> {"detections": [...]}
                    or JSON {"images": ["<base64>", ...]}          -> {"results": [{"detections": [...]}, ...]}
                    ?conf=0.4 overrides the service's threshold
    GET  /model     the model's facts (metadata, backend, batching)
    GET  /healthz   {"status": "ok"}

A detection is ``{"box_xyxy": [x1, y1, x2, y2], "score", "class_id", "class_name", "category_id"}`` with the box
in pixels of the image sent. Errors are ``{"error": "<one line>"}`` with 400 (a body that is not an image, bad
JSON, a bad ``conf``), 404 (no such route), 405 (wrong method, with ``Allow``), 413 (body too large) or 500 (the
model failed on that request).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..runtime.config import check_conf
from ..runtime.detections import Detections
from ..runtime.sources import decode_image

__all__ = ["ROUTES", "HttpError", "decode_body", "detections_json", "parse_conf", "filter_conf"]

# Path -> the one method it answers.
ROUTES = {"/detect": "POST", "/model": "GET", "/healthz": "GET"}


@dataclass(frozen=True)
class HttpError(Exception):
    """A request the service refuses: the HTTP status and a one-line message."""

    status: int
    message: str
    allow: str = ""

    def __str__(self) -> str:
        return self.message


def check_route(path: str, method: str) -> None:
    """Raise ``HttpError`` 404 for an unknown path, 405 for a method the path does not answer."""
    path = path.rstrip("/") or "/"
    if path not in ROUTES:
        raise HttpError(404, f"no route {path}; routes: {', '.join(ROUTES)}")
    if method.upper() != ROUTES[path]:
        raise HttpError(405, f"{path} answers {ROUTES[path]}, not {method.upper()}", allow=ROUTES[path])


def parse_conf(text: str | None, default: float) -> float:
    """``?conf=`` as a threshold in [0, 1] (``None``: ``default``); ``HttpError`` 400 otherwise."""
    if text is None:
        return default
    try:
        return check_conf(float(text))
    except ValueError:
        raise HttpError(400, f"conf must be a number in [0, 1], got {text!r}") from None


def _image(data: bytes, what: str) -> np.ndarray:
    image, reason = decode_image(data)
    if image is None:
        raise HttpError(400, f"{what} is not an image: {reason}")
    return image


def decode_body(body: bytes, content_type: str) -> tuple[list[np.ndarray], bool]:
    """The images of a request body, BGR uint8, and whether the body was a JSON batch.

    Raises:
        HttpError: 400 for an empty body, undecodable image bytes, JSON without an ``images`` list of base64 strings.
    """
    if not body:
        raise HttpError(400, 'empty body; send an image (JPEG, PNG, WebP) or JSON {"images": [base64, ...]}')
    if content_type.split(";")[0].strip().lower() != "application/json":
        return [_image(body, "the body")], False
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"the body is not valid JSON ({exc.__class__.__name__})") from None
    items = payload.get("images") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not items or not all(isinstance(item, str) for item in items):
        raise HttpError(400, 'JSON body must be {"images": ["<base64 image>", ...]} with at least one image')
    images = []
    for index, item in enumerate(items):
        try:
            data = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise HttpError(400, f"images[{index}] is not valid base64") from None
        images.append(_image(data, f"images[{index}]"))
    return images, True


def filter_conf(detections: Detections, conf: float) -> Detections:
    """The detections scoring at least ``conf`` (order kept)."""
    keep = np.flatnonzero(detections.scores >= conf)
    return Detections(
        boxes_xyxy=detections.boxes_xyxy[keep],
        scores=detections.scores[keep],
        class_ids=detections.class_ids[keep],
        class_names=tuple(detections.class_names[i] for i in keep),
        category_ids=detections.category_ids[keep],
    )


def detections_json(detections: Detections) -> list[dict[str, object]]:
    """One JSON object per detection, box ``[x1, y1, x2, y2]`` in pixels of the original image."""
    return [
        {
            "box_xyxy": [float(v) for v in box],
            "score": float(score),
            "class_id": int(class_id),
            "class_name": name,
            "category_id": int(category),
        }
        for box, score, class_id, name, category in zip(
            detections.boxes_xyxy,
            detections.scores,
            detections.class_ids,
            detections.class_names,
            detections.category_ids,
            strict=True,
        )
    ]


def response_json(results: Sequence[Detections], *, batch: bool) -> dict[str, object]:
    """The ``/detect`` answer: ``{"detections": [...]}`` for one image, ``{"results": [...]}`` for a JSON batch."""
    if batch:
        return {"results": [{"detections": detections_json(d)} for d in results]}
    return {"detections": detections_json(results[0])}
