"""The ``Backend`` protocol, the suffix map that picks a backend class, and ``open_backend``.

Pre- and post-processing live in ``Detector``, outside the backends, so every backend sees the same tensors.
Each backend module imports its heavy dependency (onnxruntime, tensorrt, torch) only when a model is opened.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

from ..metadata import ModelMetadata
from .config import BACKEND_CHOICES
from .onnxruntime_backend import OrtBackend
from .tensorrt_backend import TrtBackend
from .tensors import TensorSpec
from .torch_backend import TorchBackend

__all__ = ["Backend", "BACKENDS", "BACKENDS_BY_NAME", "open_backend"]

_B = TypeVar("_B", bound="Backend")


@runtime_checkable
class Backend(Protocol):
    """One inference runtime holding one model.

    Attributes:
        metadata: the model's self-description (input size, preprocessing, classes, top-k, batch range).
        input_specs: the model's inputs, with the dtypes the backend wants (``images``, ``orig_target_sizes``).
        output_specs: the model's outputs (``labels``/``boxes``/``scores``, or ``pred_logits``/``pred_boxes``).
        description: one line naming the runtime, its version and the provider or device actually used.
    """

    metadata: ModelMetadata
    input_specs: tuple[TensorSpec, ...]
    output_specs: tuple[TensorSpec, ...]
    description: str

    @classmethod
    def from_path(cls: type[_B], path: str | os.PathLike[str], *, device: str | None = None) -> _B: ...

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...

    def __enter__(self: _B) -> _B: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


BACKENDS: dict[str, type[Backend]] = {".pth": TorchBackend, ".onnx": OrtBackend, ".engine": TrtBackend}
BACKENDS_BY_NAME: dict[str, type[Backend]] = {"onnxruntime": OrtBackend, "tensorrt": TrtBackend, "torch": TorchBackend}


def open_backend(model: str | os.PathLike[str], *, backend: str = "auto", device: str | None = None) -> Backend:
    """Open a model file with the backend its suffix names (``backend="auto"``) or with the one given.

    Args:
        model: ``.onnx``, ``.engine`` (with its ``.json`` sidecar) or ``.pth`` file.
        backend: ``"auto"``, ``"onnxruntime"``, ``"tensorrt"`` or ``"torch"``.
        device: ``"cpu"``, ``"cuda:N"``, or ``None`` for the backend's default (TensorRT ``cuda:0``, others ``cpu``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown backend name or file suffix.
        BackendError / CheckpointError: the backend cannot open the file.
    """
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if path.is_dir():
        raise ValueError(f"model must be a file (.onnx, .engine or .pth), got the folder {path}")
    if backend == "auto":
        cls = BACKENDS.get(path.suffix.lower())
        if cls is None:
            raise ValueError(
                f"cannot tell the backend for {path.name!r} from its suffix {path.suffix!r}; expected one of "
                f"{', '.join(BACKENDS)}, or pass backend= one of {', '.join(BACKENDS_BY_NAME)}"
            )
    else:
        cls = BACKENDS_BY_NAME.get(backend)
        if cls is None:
            hint = difflib.get_close_matches(str(backend), BACKEND_CHOICES, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(f"unknown backend {backend!r}{suggestion}; choose from {', '.join(BACKEND_CHOICES)}")
    return cls.from_path(path, device=device)
