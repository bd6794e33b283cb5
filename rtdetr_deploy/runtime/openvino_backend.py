"""OpenVINO backend: an IR (``.xml`` + ``.bin``) written by ``rtdetr-export --openvino``, on the CPU by default.

The IR carries the same ``ModelMetadata`` as the ONNX it was converted from, in its ``rt_info`` under
``RT_INFO_SECTION``. The precision OpenVINO computes in is set from that metadata, never left to the device's
default: on a CPU with BF16 OpenVINO's default inference precision is ``bf16``, which would run an "FP32" model
in BF16. FP32 and INT8 IRs (whose layers left unquantized are FP32) run with the ``f32`` hint, BF16 IRs with
``bf16`` (``INFERENCE_PRECISION``). ``openvino`` is imported only when a model is opened.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..artifacts import openvino_weights_path
from ..errors import BackendError, ModelFileError
from ..metadata import ModelMetadata
from .backend import BackendBase
from .tensors import TensorSpec

__all__ = ["INFERENCE_PRECISION", "OpenVinoBackend", "RT_INFO_SECTION", "read_openvino_metadata"]

logger = logging.getLogger(__name__)

RT_INFO_SECTION = "rtdetr_deploy"
"""``rt_info`` section of an IR holding ``ModelMetadata.to_props()`` (plus ``openvino``: JSON of the conversion)."""
INFERENCE_PRECISION: dict[str, str] = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
"""Metadata precision -> OpenVINO ``INFERENCE_PRECISION_HINT`` the IR runs with."""
# OpenVINO device families passed through (untested here); "cpu" is the project's own spelling of CPU.
_PASSED_DEVICES = ("CPU", "GPU", "NPU")


def _import_openvino() -> ModuleType:
    try:
        import openvino
    except ImportError:
        raise BackendError("the openvino backend needs OpenVINO: pip install 'rtdetr-deploy[openvino]'") from None
    return openvino


def _message(exc: BaseException) -> str:
    """OpenVINO's message: the last line (its first names the C++ source file that threw)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def check_ir_files(path: str | os.PathLike[str]) -> Path:
    """``path`` as a ``Path`` once it is an ``.xml`` with its ``.bin`` beside it.

    Raises:
        FileNotFoundError: no such file, or its weights file is missing.
        ValueError: not an ``.xml`` file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {path}")
    if path.suffix.lower() != ".xml":
        raise ValueError(
            f"the openvino backend runs OpenVINO IRs (.xml + .bin) written by rtdetr-export --openvino, not {path.name}"
        )
    weights = openvino_weights_path(path)
    if not weights.is_file():
        raise FileNotFoundError(
            f"weights of {path.name} not found: {weights} (an OpenVINO IR is the .xml and its .bin)"
        )
    return path


def _read_model(core: Any, path: Path) -> Any:
    try:
        return core.read_model(str(path))
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: not a valid OpenVINO IR ({_message(exc)})") from None


def metadata_of(model: Any, path: Path) -> ModelMetadata:
    """The ``ModelMetadata`` in the ``rt_info`` of an ``openvino.Model`` read from ``path``.

    Raises:
        ValueError: no metadata of ours (not written by ``rtdetr-export --openvino``), or a precision an IR
            cannot have.
    """
    if not model.has_rt_info([RT_INFO_SECTION]):
        raise ValueError(f"{path}: the IR has no rtdetr-deploy metadata; export it with rtdetr-export --openvino")
    props = {key: value.astype(str) for key, value in model.get_rt_info([RT_INFO_SECTION]).astype(dict).items()}
    try:
        metadata = ModelMetadata.from_props(props)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}; re-export it with rtdetr-export --openvino") from None
    if metadata.precision not in INFERENCE_PRECISION:
        raise ModelFileError(
            f"{path}: an OpenVINO IR runs in {', '.join(INFERENCE_PRECISION)}, but its metadata says "
            f"{metadata.precision}"
        )
    return metadata


def read_openvino_metadata(path: str | os.PathLike[str]) -> ModelMetadata:
    """The ``ModelMetadata`` stored in an IR's ``rt_info`` (see ``RT_INFO_SECTION``).

    Raises:
        FileNotFoundError: no such ``.xml``, or no ``.bin`` beside it.
        ValueError / ModelFileError: not an IR, or an IR without our metadata.
        BackendError: OpenVINO is not installed.
    """
    path = check_ir_files(path)
    openvino = _import_openvino()
    return metadata_of(_read_model(openvino.Core(), path), path)


def device_name(device: str | None) -> str:
    """OpenVINO's name of ``device``: ``None``/``"cpu"`` -> ``CPU``; ``GPU``, ``GPU.1``, ``NPU`` pass through.

    Raises:
        ValueError: ``cuda:N`` or any other spelling.
    """
    text = "cpu" if device is None else str(device).strip()
    name = text.upper()
    if name.split(".")[0] not in _PASSED_DEVICES or (name.startswith("CPU") and name != "CPU"):
        raise ValueError(
            f"unknown device {device!r} for the openvino backend; use 'cpu' (or an OpenVINO device name: GPU, "
            "GPU.N, NPU)"
        )
    return name


def _check_available(name: str, available: list[str]) -> None:
    if name == "CPU" or name in available or any(a.startswith(f"{name}.") for a in available):
        return
    raise ValueError(f"OpenVINO device {name} is not available here; this machine has {', '.join(available)}")


def _check_count(what: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"OpenVINO {what} must be a positive integer, got {value!r}")


def _count_property(compiled: Any, key: str) -> int | None:
    """A count the compiled model reports (``None`` where the device has no such property, e.g. threads on GPU)."""
    try:
        return int(compiled.get_property(key))
    except (RuntimeError, TypeError, ValueError):
        return None


def _spec(port: Any) -> TensorSpec:
    dims = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return TensorSpec(port.get_any_name(), dims, np.dtype(port.get_element_type().to_dtype()))


class OpenVinoBackend(BackendBase):
    """Runs an OpenVINO IR exported by ``rtdetr-export --openvino`` (FP32, BF16 or NNCF INT8).

    Build it with ``OpenVinoBackend.from_path``. ``infer`` takes and returns numpy arrays keyed by tensor name.
    """

    name = "openvino"

    def __init__(self, compiled: Any, *, metadata: ModelMetadata, path: Path, device: str, version: str) -> None:
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self.metadata = metadata
        self.path = path
        self.device = device
        self.input_specs = tuple(_spec(port) for port in compiled.inputs)
        self.output_specs = tuple(_spec(port) for port in compiled.outputs)
        self.inference_precision: str = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        self.streams = _count_property(compiled, "NUM_STREAMS")
        self.threads = _count_property(compiled, "INFERENCE_NUM_THREADS")
        self.description = (
            f"openvino {version} ({device}, {self.inference_precision} inference precision, {self.streams} "
            f"stream(s), {self.threads} thread(s))"
        )

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | None = None,
        threads: int | None = None,
        streams: int | None = None,
        inference_precision: str | None = None,
    ) -> OpenVinoBackend:
        """Open the IR ``path`` (its ``.bin`` beside it) on ``device``.

        Args:
            path: the ``.xml``.
            device: ``"cpu"`` (the default), or an OpenVINO device name (``GPU``, ``GPU.N``, ``NPU``) that this
                machine has.
            threads: OpenVINO's ``INFERENCE_NUM_THREADS`` (None: OpenVINO's choice, every core).
            streams: OpenVINO's ``NUM_STREAMS`` (None: the latency hint, one stream).
            inference_precision: OpenVINO's ``INFERENCE_PRECISION_HINT`` (``"f32"`` or ``"bf16"``) instead of the
                metadata's (``INFERENCE_PRECISION``); for checks, not for deployment.

        Raises:
            FileNotFoundError: no such ``.xml`` or no ``.bin``.
            ValueError: an IR without our metadata, an unknown or absent device, bad threads or streams.
            BackendError: OpenVINO is missing or refused the model.
        """
        name = device_name(device)
        _check_count("threads", threads)
        _check_count("streams", streams)
        if inference_precision not in (None, "f32", "bf16"):
            raise ValueError(f"inference_precision must be 'f32' or 'bf16', got {inference_precision!r}")
        path = check_ir_files(path)
        openvino = _import_openvino()
        core = openvino.Core()
        _check_available(name, list(core.available_devices))
        model = _read_model(core, path)
        metadata = metadata_of(model, path)
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": inference_precision or INFERENCE_PRECISION[metadata.precision]
        }
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        # An explicit performance hint overrides NUM_STREAMS, so the latency hint is only the default.
        config.update({"NUM_STREAMS": streams} if streams is not None else {"PERFORMANCE_HINT": "LATENCY"})
        try:
            compiled = core.compile_model(model, name, config)
        except RuntimeError as exc:
            raise BackendError(f"{path}: OpenVINO could not compile the model for {name} ({_message(exc)})") from None
        version = openvino.__version__.split("-")[0]
        backend = cls(compiled, metadata=metadata, path=path, device="cpu" if name == "CPU" else name, version=version)
        logger.info("openvino: %s", backend.description)
        return backend

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model.

        Args:
            feed: one array per input spec, in its dtype (``images [B, 3, H, W]``, ``orig_target_sizes [B, 2]``).

        Returns:
            One array per output name (copies: the request's buffers are reused by the next call).
        """
        if self._request is None:
            raise BackendError(f"{self.path}: the openvino backend is closed")
        try:
            results = self._request.infer(dict(feed))
        except (RuntimeError, TypeError, ValueError) as exc:
            raise BackendError(f"{self.path}: OpenVINO inference failed ({_message(exc)})") from None
        return {
            spec.name: np.array(results[port], copy=True)
            for spec, port in zip(self.output_specs, self._compiled.outputs, strict=True)
        }

    def close(self) -> None:
        """Release the infer request and the compiled model."""
        self._request = None
        self._compiled = None
