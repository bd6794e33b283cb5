"""ONNX Runtime backend: CPU, CUDA or TensorRT execution provider, chosen by device and availability."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..cache import cache_dir
from ..errors import BackendError, ModelFileError
from ..metadata import ModelMetadata
from .backend import BackendBase
from .config import parse_device
from .tensors import TensorSpec, dtype_from_onnx

__all__ = ["OrtBackend", "read_onnx_metadata"]

logger = logging.getLogger(__name__)

_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _import_onnxruntime() -> ModuleType:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendError(f"the onnxruntime backend needs onnxruntime: pip install onnxruntime ({exc})") from None
    return onnxruntime


def read_onnx_metadata(path: str | os.PathLike[str]) -> ModelMetadata:
    """The ``ModelMetadata`` stored in an ONNX file's ``metadata_props``.

    Raises:
        FileNotFoundError: no such file.
        BackendError: not an ONNX model.
        ValueError: an ONNX model without our metadata (not exported by ``rtdetr-export``).
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: not a valid ONNX model ({_first_line(exc)})") from None
    if not model.graph.node:
        raise ModelFileError(f"{path}: not a valid ONNX model (the file holds no graph)")
    props = {p.key: p.value for p in model.metadata_props}
    try:
        return ModelMetadata.from_props(props)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}; re-export it with rtdetr-export") from None


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _providers(kind: str, index: int, available: list[str], metadata: ModelMetadata) -> list[Any]:
    """Execution providers to ask for, best first, for ``device`` among those this onnxruntime build has."""
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if not any(p in available for p in _GPU_PROVIDERS):
        raise BackendError(
            f"device cuda:{index} needs onnxruntime with CUDA (pip install onnxruntime-gpu); this build has only "
            f"{', '.join(available)}: pass --device cpu, or use a TensorRT .engine"
        )
    providers: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        low, opt, high = metadata.batch
        height, width = metadata.input_size

        def shapes(n: int) -> str:
            return f"images:{n}x3x{height}x{width},orig_target_sizes:{n}x2"

        trt_options = {
            "device_id": index,
            "trt_fp16_enable": metadata.precision == "fp16",
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir() / "ort-tensorrt"),
            "trt_profile_min_shapes": shapes(low),
            "trt_profile_opt_shapes": shapes(opt),
            "trt_profile_max_shapes": shapes(high),
        }
        providers.append(("TensorrtExecutionProvider", trt_options))
    if "CUDAExecutionProvider" in available:
        providers.append(("CUDAExecutionProvider", {"device_id": index}))
    providers.append("CPUExecutionProvider")
    return providers


class OrtBackend(BackendBase):
    """Runs an exported ONNX model with ONNX Runtime.

    Build it with ``OrtBackend.from_path``. ``infer`` takes and returns numpy arrays keyed by tensor name.
    """

    name = "onnxruntime"

    def __init__(self, session: Any, *, metadata: ModelMetadata, path: Path, device: str) -> None:
        self._session = session
        self.metadata = metadata
        self.path = path
        self.device = device
        self.input_specs = tuple(
            TensorSpec(i.name, _dims(i.shape), dtype_from_onnx(i.type)) for i in session.get_inputs()
        )
        self.output_specs = tuple(
            TensorSpec(o.name, _dims(o.shape), dtype_from_onnx(o.type)) for o in session.get_outputs()
        )
        self._output_names = [spec.name for spec in self.output_specs]
        import onnxruntime

        self.providers = tuple(session.get_providers())
        self.description = f"onnxruntime {onnxruntime.__version__} ({self.providers[0]})"

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], *, device: str | None = None, threads: int | None = None
    ) -> OrtBackend:
        """Open ``path`` on ``device`` (``"cpu"``, the default, or ``"cuda:N"``).

        ``threads`` sets ONNX Runtime's intra-op thread count (``None``: its own choice, one per physical core).

        On CUDA the TensorRT execution provider is preferred when this onnxruntime build has it (its engines are
        cached under ``cache_dir()/ort-tensorrt``), then the CUDA provider.

        Raises:
            FileNotFoundError, ValueError (no metadata, bad device), BackendError (not ONNX, no CUDA provider,
            or onnxruntime refused the model).
        """
        path = Path(path)
        kind, index = parse_device(device or "cpu")
        metadata = read_onnx_metadata(path)
        ort = _import_onnxruntime()
        providers = _providers(kind, index, ort.get_available_providers(), metadata)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise ValueError(f"threads must be a positive integer, got {threads!r}")
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own pybind exception types, none of them exported
            raise BackendError(f"{path}: onnxruntime could not load the model ({_first_line(exc)})") from None
        used = session.get_providers()
        if kind == "cuda" and not any(p in used for p in _GPU_PROVIDERS):
            raise BackendError(
                f"{path}: onnxruntime could not start a CUDA provider on cuda:{index} (it fell back to "
                f"{', '.join(used)}); check the CUDA and cuDNN libraries, or pass --device cpu"
            )
        backend = cls(session, metadata=metadata, path=path, device=f"{kind}:{index}" if kind == "cuda" else kind)
        logger.info("onnxruntime providers: %s", ", ".join(backend.providers))
        return backend

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model.

        Args:
            feed: one array per input spec, in its dtype (``images [B, 3, H, W]``, ``orig_target_sizes [B, 2]``).

        Returns:
            One array per output name.
        """
        try:
            outputs = self._session.run(self._output_names, dict(feed))
        except Exception as exc:  # see from_path
            raise BackendError(f"{self.path}: onnxruntime inference failed ({_first_line(exc)})") from None
        return dict(zip(self._output_names, outputs, strict=True))

    def close(self) -> None:
        """Release the session."""
        self._session = None


def _dims(shape: list[Any]) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else None for d in shape)
