"""The Ray Serve deployment: one ``Detector`` per replica, requests batched across clients with ``@serve.batch``.

Each image of a request is queued on its own in the replica's batch queue; ``@serve.batch`` gathers up to the
model's maximum batch (or ``--max-batch``) from any clients within ``--max-wait-ms`` and the replica runs them as
one model call, in a worker thread so that the replica keeps accepting requests meanwhile. Pre- and
post-processing are the runtime's (``Detector.detect``). When a batch fails, its images are run again one by one,
so that only the request whose image fails gets a 500.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import RtdetrDeployError
from ..runtime import Detector, OpenVinoBackend, OrtBackend, open_backend
from ..runtime.detections import Detections
from ..runtime.registry import backend_name_for
from .config import ServeConfig
from .protocol import HttpError, check_route, decode_body, filter_conf, parse_conf, response_json

__all__ = ["DetectorReplica", "build_app", "open_detector", "replica_batch"]

# Failures of one model call that the service reports as a 500 instead of dying.
# An oversized body up to this many times the limit is read (and dropped) before the 413 goes out.
_DRAIN_FACTOR = 4
_INFERENCE_ERRORS = (RtdetrDeployError, ValueError, RuntimeError, MemoryError, OSError, FloatingPointError)


def open_detector(config: ServeConfig) -> Detector:
    """A ``Detector`` keeping every top-k detection (the threshold is applied per request), ``config.threads`` wide."""
    path = Path(config.model)
    name = backend_name_for(path) if config.backend == "auto" else config.backend
    if name == "onnxruntime":
        backend = OrtBackend.from_path(path, device=config.device, threads=config.threads)
    elif name == "openvino":
        backend = OpenVinoBackend.from_path(path, device=config.device, threads=config.threads)
    else:
        if name == "torch":
            import torch

            torch.set_num_threads(config.threads)
        backend = open_backend(path, backend=name, device=config.device)
    return Detector(backend, conf=0.0)


def replica_batch(config: ServeConfig, model_max: int) -> int:
    """Images per model call: 1 without dynamic batching, else ``--max-batch`` capped at the model's maximum."""
    if not config.dynamic_batching:
        return 1
    return min(config.max_batch or model_max, model_max)


class DetectorReplica:
    """One replica: a ``Detector`` and its batch queue, answering every route of ``protocol.ROUTES``."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.detector = open_detector(config)
        self.max_batch = replica_batch(config, self.detector.max_batch)
        self.detect_one.set_max_batch_size(self.max_batch)
        self.detect_one.set_batch_wait_timeout_s(config.max_wait_ms / 1000.0)
        # One model call at a time per replica: the backend's own threads do the parallel work.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtdetr-infer")
        # Model calls by batch size, since the replica started (what dynamic batching achieved).
        self.batch_sizes: Counter[int] = Counter()
        self.facts = {
            "model": Path(config.model).name,
            "backend": self.detector.backend.description,
            "metadata": dataclasses.asdict(self.detector.metadata),
            "max_batch": self.max_batch,
            "max_wait_ms": config.max_wait_ms,
            "dynamic_batching": config.dynamic_batching,
            "replicas": config.replicas,
            "threads": config.threads,
            "conf": config.conf,
        }

    def _run(self, images: list) -> list[Detections | str]:
        try:
            return list(self.detector.detect(images))
        except _INFERENCE_ERRORS as exc:
            if len(images) == 1:
                return [f"inference failed: {' '.join(str(exc).split()) or type(exc).__name__}"]
        return [self._run([image])[0] for image in images]

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def detect_one(self, images: list) -> list[Detections | str]:
        """``Detections`` (or a failure message) per image; ``@serve.batch`` hands over the queued images."""
        self.batch_sizes[len(images)] += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run, list(images))

    async def _body(self, request: Request) -> bytes:
        """The request body, at most ``max_body_bytes``; a larger one is 413.

        A moderately oversized body (up to ``_DRAIN_FACTOR`` times the limit) is read to its end before the 413
        goes out, so that the client, still sending, gets the answer instead of a reset connection.
        """
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        size = int(declared) if declared is not None and declared.isdigit() else None
        if size is not None and size > _DRAIN_FACTOR * limit:
            raise HttpError(413, f"body of {size} bytes exceeds the limit of {limit} bytes")
        chunks, received = [], 0
        async for chunk in request.stream():
            received += len(chunk)
            if received <= limit:
                chunks.append(chunk)
            elif received > _DRAIN_FACTOR * limit:
                break
        if received > limit:
            raise HttpError(413, f"body of {size or received} bytes exceeds the limit of {limit} bytes")
        return b"".join(chunks)

    async def _detect(self, request: Request) -> JSONResponse:
        conf = parse_conf(request.query_params.get("conf"), self.config.conf)
        images, batch = decode_body(await self._body(request), request.headers.get("content-type", ""))
        results = await asyncio.gather(*(self.detect_one(image) for image in images))
        failures = [result for result in results if isinstance(result, str)]
        if failures:
            raise HttpError(500, failures[0])
        return JSONResponse(response_json([filter_conf(r, conf) for r in results], batch=batch))

    async def __call__(self, request: Request) -> JSONResponse:
        try:
            check_route(request.url.path, request.method)
            path = request.url.path.rstrip("/")
            if path == "/healthz":
                return JSONResponse({"status": "ok"})
            if path == "/model":
                batches = {str(size): count for size, count in sorted(self.batch_sizes.items())}
                return JSONResponse({**self.facts, "batches": batches})
            return await self._detect(request)
        except HttpError as exc:
            headers = {"Allow": exc.allow} if exc.allow else None
            return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)


def build_app(config: ServeConfig) -> serve.Application:
    """The deployment bound to ``config``: ``config.replicas`` replicas of ``config.threads`` CPUs each."""
    deployment = serve.deployment(
        DetectorReplica,
        name="rtdetr",
        num_replicas=config.replicas,
        ray_actor_options={"num_cpus": config.threads},
        # Enough requests in flight per replica for full batches from every client.
        max_ongoing_requests=max(64, 4 * (config.max_batch or 1)),
    )
    return deployment.bind(config)
