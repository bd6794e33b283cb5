"""Start and stop the service: Ray (local, or an existing cluster), Serve's HTTP proxy, the deployment."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..errors import RtdetrDeployError
from .config import ServeConfig

__all__ = ["APP_NAME", "ServiceError", "start_service", "stop_service"]

APP_NAME = "rtdetr"
# Ray's shared-memory object store: the service passes no large objects through it, so keep it small.
_OBJECT_STORE_BYTES = 128 * 1024 * 1024
# Serve kills an HTTP proxy that is not ready within 5 s (Ray's default), which a busy two-core machine misses
# while the proxy's process imports. A local Ray inherits these limits; a variable the user set is kept.
_PROXY_TIMEOUTS_S = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60"}


class ServiceError(RtdetrDeployError):
    """Ray or Ray Serve could not start the service."""


def start_service(config: ServeConfig) -> str:
    """Start Ray (``config.address`` or a local instance), the HTTP proxy and the deployment; returns the URL.

    Returns once every replica has opened the model. A local Ray gets as many CPUs as this machine has, or as the
    replicas reserve (``replicas * threads``) when that is more, so that the replicas never wait for CPUs.

    Raises:
        FileNotFoundError: no model file.
        ServiceError: Ray or Serve failed to start, or a replica could not open the model.
    """
    import ray
    from ray import serve

    from .app import build_app

    model = Path(config.model)
    if not model.exists():
        raise FileNotFoundError(f"model not found: {model}")
    # Replicas may run in another working directory (or on another node of a cluster): pass an absolute path.
    config = dataclasses.replace(config, model=model.resolve())
    try:
        if config.address is None:
            cpus = max(os.cpu_count() or 1, config.replicas * config.threads)
            for name, seconds in _PROXY_TIMEOUTS_S.items():
                os.environ.setdefault(name, seconds)
            # A local Ray is one node: its processes talk over loopback, whatever address the HTTP proxy binds to.
            ray.init(
                num_cpus=cpus,
                include_dashboard=False,
                object_store_memory=_OBJECT_STORE_BYTES,
                log_to_driver=False,
                _node_ip_address="127.0.0.1",
            )
        else:
            ray.init(address=config.address, log_to_driver=False)
        serve.start(http_options={"host": config.host, "port": config.port})
        serve.run(build_app(config), name=APP_NAME, route_prefix="/", blocking=False)
    except Exception as exc:  # Ray raises many types (RayActorError, DeploymentFailed, ConnectionError, ...)
        stop_service()
        message = " ".join(str(exc).split())
        raise ServiceError(f"Ray Serve could not start the service: {message[-400:]}") from None
    return f"http://{config.host}:{config.port}"


def stop_service() -> None:
    """Shut down Serve and disconnect from Ray (a local Ray instance stops with it)."""
    import ray
    from ray import serve

    if ray.is_initialized():
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
