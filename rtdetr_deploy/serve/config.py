"""``ServeConfig``: what ``rtdetr-serve`` was asked to do, validated once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..runtime.config import check_conf, parse_device
from ..runtime.registry import check_backend_name

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ServeConfig"]

DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ServeConfig:
    """Options of one service (the CLI maps its flags onto this and nothing else).

    Attributes:
        model: ``.onnx``, ``.xml``, ``.engine`` or ``.pth`` file (or a transformers model folder).
        host: address the HTTP proxy binds to (``127.0.0.1``: this machine only).
        port: HTTP port.
        conf: default score threshold in [0, 1] (a request's ``?conf=`` overrides it).
        backend: ``"auto"`` (by file suffix) or a backend name.
        device: ``"cpu"``, ``"cuda:N"`` or ``None`` for the backend's default.
        replicas: model replicas (each a Ray actor holding its own ``Detector``).
        threads: inference threads per replica (ONNX Runtime / OpenVINO / torch), and the CPUs Ray reserves for it.
        max_batch: most images per model call; ``None`` for the model's maximum batch.
        max_wait_ms: how long a replica waits to fill a batch, in milliseconds.
        dynamic_batching: batch requests across clients (``False``: one image per model call).
        address: an existing Ray cluster (``ray://host:10001`` or ``auto``); ``None`` starts Ray on this machine.
        max_body_bytes: the largest request body accepted (larger: 413).
    """

    model: Path
    host: str = "127.0.0.1"
    port: int = 8000
    conf: float = 0.25
    backend: str = "auto"
    device: str | None = None
    replicas: int = 1
    threads: int = 1
    max_batch: int | None = None
    max_wait_ms: float = 5.0
    dynamic_batching: bool = True
    address: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __post_init__(self) -> None:
        check_conf(self.conf)
        check_backend_name(self.backend)
        if self.device is not None:
            parse_device(self.device)
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port!r}")
        for name in ("replicas", "threads", "max_body_bytes"):
            _positive(name, getattr(self, name))
        if self.max_batch is not None:
            _positive("max batch", self.max_batch)
        if not 0.0 <= float(self.max_wait_ms) <= 10_000.0:
            raise ValueError(f"max wait must be in 0..10000 ms, got {self.max_wait_ms!r}")
        if not str(self.host).strip():
            raise ValueError("host is empty; pass an address such as 127.0.0.1")
