"""Exception hierarchy: ``ValueError``/``FileNotFoundError`` for bad input, these for toolchain failures."""

from __future__ import annotations

__all__ = ["RtdetrDeployError", "CheckpointError", "ExportError", "EngineBuildError", "BackendError", "ModelFileError"]


class RtdetrDeployError(Exception):
    """Base of the errors this package raises for failures that are not plain bad arguments."""


class CheckpointError(RtdetrDeployError, ValueError):
    """A file that cannot be read as RT-DETRv2 weights, or weights that do not fit the requested model."""


class ExportError(RtdetrDeployError):
    """ONNX export, simplification or verification failed."""


class EngineBuildError(RtdetrDeployError):
    """TensorRT could not parse the ONNX or build an engine."""


class BackendError(RtdetrDeployError):
    """An inference backend is missing, or refuses the model or the device."""


class ModelFileError(BackendError, ValueError):
    """A model file that is not what it should be: not ONNX, not an RT-DETR detector, without our metadata, or
    with a broken engine sidecar (bad input, unlike a backend that is missing or fails)."""
