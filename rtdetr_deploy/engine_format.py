"""The TensorRT engine's format as this package writes and reads it, shared by the builder and the runtime.

An engine is a plain serialized TensorRT plan (so ``trtexec`` and Polygraphy open it) with a JSON sidecar
``<engine>.json`` beside it: the ONNX metadata it was built from, the TensorRT version, the GPU (name and
compute capability), the precision, the batch range and each I/O tensor as the engine declares it. Here live
the sidecar's schema, its path rule, reading and writing, the minimum TensorRT version, the TensorRT and
cuda-python imports, the TensorRT logger and the GPU-name rule, so that the builder and the runtime cannot
drift apart. Nothing here imports TensorRT or CUDA at module import time.

TensorRT and cuda-python come in pairs built for one CUDA major version: ``rtdetr-deploy[trt-cu12]`` (TensorRT
``tensorrt-cu12`` with cuda-python 12.x, for any driver of CUDA 12 or newer, R525+) and ``rtdetr-deploy[trt-cu13]``
(``tensorrt-cu13`` with cuda-python 13.x, for drivers of CUDA 13, R580+); ``[trt]`` is ``[trt-cu12]``.
``installed_pair`` names what is installed, for the error messages of both layers.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .atomic import atomic_path
from .errors import BackendError, EngineBuildError, ModelFileError
from .metadata import ModelMetadata

__all__ = [
    "MIN_TENSORRT_MAJOR",
    "TENSORRT_INSTALL",
    "EngineSidecar",
    "create_trt",
    "import_cudart",
    "import_tensorrt",
    "installed_pair",
    "make_logger",
    "normalize_gpu_name",
    "read_sidecar",
    "sidecar_dict",
    "sidecar_path",
    "write_engine",
]

MIN_TENSORRT_MAJOR = 10
TENSORRT_INSTALL = (
    "pip install 'rtdetr-deploy[trt]' (TensorRT with cuda-python 12.x, for drivers of CUDA 12 or newer, R525+; "
    "'rtdetr-deploy[trt-cu13]' for CUDA 13, drivers R580+)"
)
# Distributions that provide the ``tensorrt`` module, and cuda-python's (``cuda-bindings`` holds the code since 12.6).
TENSORRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-cu11")
CUDA_PYTHON_DISTRIBUTIONS = ("cuda-python", "cuda-bindings")
SIDECAR_SUFFIX = ".json"
_LOG = logging.getLogger(__name__)


def sidecar_path(engine_path: str | os.PathLike[str]) -> Path:
    """The sidecar of an engine: ``model.engine`` -> ``model.engine.json``."""
    path = Path(engine_path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def normalize_gpu_name(name: str | bytes | None) -> str | None:
    """A GPU name as both sides compare it: decoded, NUL padding and surrounding blanks removed."""
    if name is None:
        return None
    text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    return text.rstrip("\x00").strip()


@dataclass(frozen=True)
class EngineSidecar:
    """What the builder recorded beside an engine.

    Attributes:
        metadata: the model's self-description (as in the ONNX file it was built from).
        tensorrt_version: version of the TensorRT that built it, e.g. ``"10.7.0"``.
        gpu_name: name of the GPU it was built on (``None`` when the builder could not tell).
        compute_capability: ``(major, minor)`` of that GPU (``None`` when the builder could not tell).
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        io: tensor name to ``{"mode", "dtype", "shape"}`` (inputs also ``"profile"``) as built.
        batch: ``(min, opt, max)`` batch of the optimisation profile.
    """

    metadata: ModelMetadata
    tensorrt_version: str
    gpu_name: str | None
    compute_capability: tuple[int, int] | None
    precision: str
    io: dict[str, dict[str, Any]]
    batch: tuple[int, int, int]


def sidecar_dict(
    metadata_props: dict[str, str],
    *,
    tensorrt_version: str,
    gpu_name: str | None,
    compute_capability: tuple[int, int] | list[int] | None,
    precision: str,
    input_size_hw: list[int] | None,
    batch: tuple[int, int, int],
    io: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The JSON sidecar: ``{"metadata": {...}, "tensorrt": {"version", "gpu_name", "compute_capability",
    "precision", "input_size", "batch", "io"}}`` (``input_size`` is ``[height, width]``)."""
    metadata = {**metadata_props, "precision": precision}
    return {
        "metadata": metadata,
        "tensorrt": {
            "version": tensorrt_version,
            "gpu_name": normalize_gpu_name(gpu_name),
            "compute_capability": list(compute_capability) if compute_capability is not None else None,
            "precision": precision,
            "input_size": input_size_hw,
            "batch": list(batch),
            "io": io,
        },
    }


def write_engine(engine_path: str | os.PathLike[str], plan: Any, sidecar: dict[str, Any]) -> Path:
    """Write the serialized ``plan`` and its sidecar, each atomically; neither appears if either write fails."""
    engine_path = Path(engine_path)
    # Both land together: an engine without a sidecar is refused, a sidecar without its engine would lie.
    with atomic_path(sidecar_path(engine_path)) as tmp_sidecar, atomic_path(engine_path) as tmp_engine:
        tmp_engine.write_bytes(memoryview(plan))
        tmp_sidecar.write_text(json.dumps(sidecar, indent=2))
    return engine_path


def read_sidecar(engine_path: str | os.PathLike[str]) -> EngineSidecar:
    """Read and validate ``<engine>.json``.

    Raises:
        FileNotFoundError: no engine, or no sidecar beside it.
        BackendError: the sidecar is not the builder's JSON.
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise FileNotFoundError(f"engine not found: {engine_path}")
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{engine_path}: its sidecar {path.name} is missing; engines built by rtdetr-export have one beside them"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        trt_info = raw["tensorrt"]
        metadata = ModelMetadata.from_props(raw["metadata"])
        low, opt, high = (int(b) for b in trt_info.get("batch", metadata.batch))
        capability = trt_info["compute_capability"]
        if capability is not None:
            major, minor = (int(v) for v in capability)
            capability = (major, minor)
        return EngineSidecar(
            metadata=metadata,
            tensorrt_version=str(trt_info["version"]),
            gpu_name=normalize_gpu_name(trt_info["gpu_name"]),
            compute_capability=capability,
            precision=str(trt_info.get("precision", metadata.precision)),
            io=dict(trt_info.get("io", {})),
            batch=(low, opt, high),
        )
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a valid engine sidecar ({type(exc).__name__}: {exc})") from None


def _installed(names: tuple[str, ...]) -> list[tuple[str, str]]:
    found = []
    for name in names:
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _cuda_major(name: str, version: str) -> int | None:
    """The CUDA major a distribution is built for: ``tensorrt-cu12`` -> 12, ``cuda-python 13.0.1`` -> 13."""
    suffix = re.search(r"-cu(\d+)$", name)
    if suffix:
        return int(suffix.group(1))
    if name in CUDA_PYTHON_DISTRIBUTIONS and version.split(".")[0].isdigit():
        return int(version.split(".")[0])
    return None


def installed_pair() -> str:
    """The installed TensorRT and cuda-python distributions with their versions, for error messages.

    Returns:
        e.g. ``"installed: tensorrt-cu12 10.7.0, cuda-python 13.0.1, cuda-bindings 13.0.1; tensorrt-cu12 pairs
        with cuda-python 12.x: pip install 'rtdetr-deploy[trt-cu12]'"``; the hint only when the CUDA majors of the
        two differ. One line.
    """
    tensorrt = _installed(TENSORRT_DISTRIBUTIONS)
    cuda = _installed(CUDA_PYTHON_DISTRIBUTIONS)
    parts = [f"{name} {version}" for name, version in tensorrt] or ["no tensorrt distribution"]
    parts += [f"{name} {version}" for name, version in cuda] or ["no cuda-python"]
    text = "installed: " + ", ".join(parts)
    trt_majors = {_cuda_major(n, v) for n, v in tensorrt} - {None}
    cuda_majors = {_cuda_major(n, v) for n, v in cuda} - {None}
    if len(trt_majors) == 1 and cuda_majors and cuda_majors != trt_majors:
        major = trt_majors.pop()
        text += f"; tensorrt-cu{major} pairs with cuda-python {major}.x: pip install 'rtdetr-deploy[trt-cu{major}]'"
    return text


def import_tensorrt(error: type[EngineBuildError] | type[BackendError]) -> ModuleType:
    """Import ``tensorrt`` (>= ``MIN_TENSORRT_MAJOR``), or raise ``error`` (the caller's layer's type) saying
    what to install."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:
        raise error(
            f"TensorRT is not installed: {TENSORRT_INSTALL}; TensorRT >= {MIN_TENSORRT_MAJOR} needs an NVIDIA GPU "
            f"[{type(exc).__name__}: {exc}]"
        ) from None
    major = int(str(trt.__version__).split(".")[0])
    if major < MIN_TENSORRT_MAJOR:
        raise error(
            f"TensorRT {trt.__version__} is too old: rtdetr-deploy needs TensorRT >= {MIN_TENSORRT_MAJOR} and its "
            f"named-tensor API: {TENSORRT_INSTALL} ({installed_pair()})"
        )
    return trt


def create_trt(
    factory: Any, *args: Any, what: str, logger: Any, error: type[EngineBuildError] | type[BackendError]
) -> Any:
    """``factory(*args)`` for the bindings' ``trt.Builder``, ``trt.OnnxParser`` and ``trt.Runtime``, which raise
    ``TypeError`` ("factory function returned nullptr") instead of returning None when TensorRT fails; then
    ``error`` (the caller's layer's type) naming ``what``, the errors ``logger`` (``make_logger``) kept and the
    installed TensorRT / cuda-python pair."""
    try:
        return factory(*args)
    except (TypeError, RuntimeError) as exc:
        detail = "; ".join(filter(None, [logger.summary(), " ".join(str(exc).split())]))
        raise error(f"TensorRT could not create {what}: {detail} ({installed_pair()})") from None


def import_cudart() -> ModuleType | None:
    """cuda-python's runtime module: ``cuda.bindings.runtime`` (cuda-python >= 12.6) or ``cuda.cudart``; or None."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            return None
    return cudart


def make_logger(trt: ModuleType) -> Any:
    """A TensorRT ``ILogger`` that keeps error messages (``errors``, ``summary()``) for the exception the caller
    raises, and forwards warnings to ``logging`` (info and verbose messages at debug level). Errors are not
    logged: they reach the user once, in the exception."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
            elif int(severity) == int(trt.ILogger.Severity.WARNING):
                _LOG.warning("TensorRT: %s", msg)
            else:
                _LOG.debug("TensorRT: %s", msg)

        def summary(self, since: int = 0) -> str:
            """The errors logged from index ``since`` on (negative: the last few), each one line, joined."""
            return "; ".join(" ".join(str(e).split()) for e in self.errors[since:])

    return _Logger()
