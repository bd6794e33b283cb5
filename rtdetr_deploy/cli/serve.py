"""``rtdetr-serve MODEL``: an HTTP detection service on Ray Serve (``POST /detect``, ``GET /model``, ``/healthz``).

Runs until Ctrl-C (or ``--duration`` seconds), then shuts Serve and the local Ray down. Bad input ends with one
``rtdetr-serve: error:`` line and exit status 2 before Ray starts; a service that cannot start exits with 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

from ..runtime.registry import BACKEND_CHOICES
from ..serve.config import DEFAULT_MAX_BODY_BYTES, ServeConfig
from .frame import CommandParser, run_command

__all__ = ["main", "build_parser", "config_from_args"]

PROG = "rtdetr-serve"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        description=(
            "Serve an RT-DETRv2 model over HTTP on Ray Serve: POST /detect (an image body, or JSON "
            '{"images": [base64, ...]}; ?conf= sets the threshold), GET /model, GET /healthz. Requests from all '
            "clients are batched together up to the model's batch limit. Needs pip install 'rtdetr-deploy[serve]'."
        ),
    )
    parser.add_argument("model", type=Path, help=".onnx, .xml (OpenVINO), .engine (TensorRT) or .pth checkpoint")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default: 8000)")
    parser.add_argument("--conf", type=float, default=0.25, help="default score threshold in [0, 1] (default: 0.25)")
    parser.add_argument("--backend", default="auto", choices=BACKEND_CHOICES, help="runtime (default: by suffix)")
    parser.add_argument("--device", default=None, help="cpu or cuda:N (default: the backend's)")
    parser.add_argument("--replicas", type=int, default=1, help="model replicas (default: 1)")
    parser.add_argument("--threads", type=int, default=1, help="inference threads (and Ray CPUs) per replica")
    parser.add_argument("--max-batch", type=int, default=None, help="images per model call (default: the model's max)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="wait to fill a batch, ms (default: 5)")
    parser.add_argument("--no-batching", action="store_true", help="one image per model call (no dynamic batching)")
    parser.add_argument("--address", default=None, help="an existing Ray cluster (e.g. ray://head:10001 or auto)")
    parser.add_argument(
        "--max-body-mb", type=float, default=DEFAULT_MAX_BODY_BYTES / 2**20, help="largest body, MiB (default: 20)"
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: never)")
    return parser


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """Map parsed flags onto a ``ServeConfig`` (raises ``ValueError`` for bad values)."""
    if args.max_body_mb <= 0:
        raise ValueError(f"--max-body-mb must be positive, got {args.max_body_mb}")
    if args.duration is not None and args.duration <= 0:
        raise ValueError(f"--duration must be positive, got {args.duration}")
    return ServeConfig(
        model=args.model,
        host=args.host,
        port=args.port,
        conf=args.conf,
        backend=args.backend,
        device=args.device,
        replicas=args.replicas,
        threads=args.threads,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        dynamic_batching=not args.no_batching,
        address=args.address,
        max_body_bytes=int(args.max_body_mb * 2**20),
    )


def _serve(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if not Path(config.model).exists():
        raise FileNotFoundError(f"model not found: {config.model}")
    if importlib.util.find_spec("ray") is None:
        raise ImportError("No module named 'ray'", name="ray")
    from ..serve.service import start_service, stop_service

    url = start_service(config)
    try:
        batching = f"batches up to {config.max_batch or 'the model max'}" if config.dynamic_batching else "no batching"
        print(f"Serving {config.model.name} at {url} ({config.replicas} replica(s), {batching}); Ctrl-C stops")
        sys.stdout.flush()
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop_service()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``rtdetr-serve``; returns the exit status (0 done, 1 failed, 2 bad input, 130 interrupted)."""
    return run_command(PROG, build_parser(), argv, _serve, interrupted="the service was stopped")


if __name__ == "__main__":
    sys.exit(main())
