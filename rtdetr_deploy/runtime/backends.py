"""Which backend class opens a model: by the file's suffix (``artifacts.BACKEND_OF_SUFFIX``) or by name; a
transformers model folder (``artifacts.is_model_folder``) opens with the torch backend."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from ..artifacts import BACKEND_OF_SUFFIX, MODEL_SUFFIXES, backend_for, is_model_folder
from .backend import Backend
from .config import BACKEND_CHOICES
from .litert_backend import LiteRtBackend
from .mnn_backend import MnnBackend
from .onnxruntime_backend import OrtBackend
from .opencv_backend import OpenCvBackend
from .openvino_backend import OpenVinoBackend
from .rknn_backend import RknnBackend
from .tensorrt_backend import TrtBackend
from .torch_backend import TorchBackend

__all__ = ["BACKENDS", "BACKENDS_BY_NAME", "open_backend"]

BACKENDS_BY_NAME: dict[str, type[Backend]] = {
    "onnxruntime": OrtBackend,
    "tensorrt": TrtBackend,
    "torch": TorchBackend,
    "openvino": OpenVinoBackend,
    "mnn": MnnBackend,
    "litert": LiteRtBackend,
    "rknn": RknnBackend,
    "opencv": OpenCvBackend,
}
BACKENDS: dict[str, type[Backend]] = {suffix: BACKENDS_BY_NAME[name] for suffix, name in BACKEND_OF_SUFFIX.items()}


def open_backend(model: str | os.PathLike[str], *, backend: str = "auto", device: str | None = None) -> Backend:
    """Open a model file with the backend its suffix names (``backend="auto"``) or with the one given.

    Args:
        model: ``.onnx``, ``.engine`` (with its ``.json`` sidecar), OpenVINO ``.xml`` (with its ``.bin``), ``.pth``
            or ``.safetensors`` file, or a transformers ``save_pretrained`` folder (with ``config.json``).
        backend: ``"auto"``, ``"onnxruntime"``, ``"tensorrt"``, ``"torch"``, ``"openvino"`` or ``"opencv"`` (an
            ``.onnx`` with OpenCV DNN).
        device: ``"cpu"``, ``"cuda:N"``, or ``None`` for the backend's default (TensorRT ``cuda:0``, others ``cpu``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown backend name or file suffix, or a folder without ``config.json``.
        BackendError / CheckpointError: the backend cannot open the file.
    """
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if path.is_dir() and not is_model_folder(path):
        raise ValueError(
            f"model must be a file ({', '.join(MODEL_SUFFIXES)}) or a transformers model folder with config.json, "
            f"got the folder {path}"
        )
    if backend == "auto":
        try:
            name = backend_for(path)
        except ValueError as exc:
            raise ValueError(f"{exc}, or pass backend= one of {', '.join(BACKENDS_BY_NAME)}") from None
        cls = BACKENDS_BY_NAME[name]
    else:
        cls = BACKENDS_BY_NAME.get(backend)
        if cls is None:
            hint = difflib.get_close_matches(str(backend), BACKEND_CHOICES, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(f"unknown backend {backend!r}{suggestion}; choose from {', '.join(BACKEND_CHOICES)}")
    return cls.from_path(path, device=device)
