"""OpenCV DNN backend: runs an exported ``.onnx`` with ``cv2.dnn`` on the CPU, with no ONNX Runtime at all.

OpenCV is already the runtime's image library, so this is a deployment with nothing beyond numpy and OpenCV (and
``onnx`` to read the file's metadata). Both release lines are supported: OpenCV 5 runs the graph as exported;
OpenCV 4 keeps integer tensors as float, so it takes ``orig_target_sizes`` as float32 and returns ``labels`` as
float, which this backend turns back into int64. The default export is written for OpenCV 4's importer (see
``docs/portable-graph.md``: float index arithmetic, no multi-axis Unsqueeze, no BOOL constants).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import BackendError, ModelFileError
from ..metadata import ModelMetadata
from .backend import BackendBase
from .config import parse_device
from .onnxruntime_backend import read_onnx_metadata
from .tensors import TensorSpec

__all__ = ["MIN_OPENCV", "OpenCvBackend", "opencv_version"]

MIN_OPENCV = (4, 14)
"""Oldest OpenCV whose DNN module runs the exported graph correctly. Measured: 4.10 has no TopK; 4.11 to 4.13 refuse
a TopK that keeps every element (K equal to the axis size) and run the raw-output graph with wrong results."""

# ONNX TensorProto element types of the inputs and outputs an exported detector has.
_ONNX_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 10: np.float16}


def opencv_version(cv2: ModuleType) -> tuple[int, int]:
    """``(major, minor)`` of an imported ``cv2`` (``"4.14.0"``, ``"5.1.0-dev"``, ...)."""
    match = re.match(r"(\d+)\.(\d+)", str(cv2.__version__))
    if match is None:
        raise BackendError(f"cannot read the OpenCV version {cv2.__version__!r}")
    return int(match.group(1)), int(match.group(2))


def _import_cv2() -> ModuleType:
    try:
        import cv2
    except ImportError:
        raise BackendError("the opencv backend needs OpenCV: pip install opencv-python-headless") from None
    if not hasattr(cv2, "dnn"):
        raise BackendError(f"this OpenCV build ({cv2.__version__}) has no dnn module; install opencv-python-headless")
    if opencv_version(cv2) < MIN_OPENCV:
        raise BackendError(
            f"the opencv backend needs OpenCV {'.'.join(map(str, MIN_OPENCV))} or newer, found {cv2.__version__}: "
            "pip install -U opencv-python-headless"
        )
    return cv2


def _message(exc: BaseException) -> str:
    """OpenCV's own message: ``(-215:Assertion failed) ... in function 'f'`` without the source file path."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return text.split(" error: ", 1)[-1] if " error: " in text else text or type(exc).__name__


def _graph_specs(path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and outputs declared by the ONNX graph (dtype as declared, ``None`` for symbolic dimensions)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}

    def spec(value: Any) -> TensorSpec:
        tensor = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        return TensorSpec(value.name, shape, np.dtype(_ONNX_DTYPES.get(tensor.elem_type, np.float32)))

    inputs = tuple(spec(value) for value in graph.input if value.name not in initializers)
    return inputs, tuple(spec(value) for value in graph.output)


class OpenCvBackend(BackendBase):
    """Runs an exported ONNX model with OpenCV's DNN module on the CPU.

    Build it with ``OpenCvBackend.from_path``. ``infer`` takes and returns numpy arrays keyed by tensor name, in
    the dtypes of ``input_specs`` and ``output_specs``, whatever the OpenCV release computes in.
    """

    name = "opencv"

    def __init__(
        self, net: Any, *, metadata: ModelMetadata, path: Path, specs: tuple[tuple[TensorSpec, ...], ...], cv2: Any
    ) -> None:
        self._net = net
        self.metadata = metadata
        self.path = path
        self.device = "cpu"
        self.major = opencv_version(cv2)[0]
        declared_inputs, self.output_specs = specs
        # OpenCV 4 holds integer tensors as float: it takes the sizes as float32 (exact below 2**24).
        self.input_specs = tuple(
            TensorSpec(s.name, s.shape, np.dtype(np.float32)) if self.major < 5 and s.dtype.kind == "i" else s
            for s in declared_inputs
        )
        self._output_names = [spec.name for spec in self.output_specs]
        self.description = f"OpenCV {cv2.__version__} DNN (CPU)"

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], *, device: str | None = None) -> OpenCvBackend:
        """Open the ONNX at ``path`` with ``cv2.dnn`` (CPU only).

        Raises:
            FileNotFoundError: no such file.
            ValueError: not an ``.onnx`` file, no rtdetr-export metadata, or a device other than the CPU.
            BackendError: OpenCV missing or too old (``MIN_OPENCV``), or it refused the graph.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model not found: {path}")
        if path.suffix.lower() != ".onnx":
            raise ValueError(f"the opencv backend runs ONNX files written by rtdetr-export, not {path.name}")
        kind, _ = parse_device(device or "cpu")
        if kind != "cpu":
            raise ValueError(f"the opencv backend runs on the CPU only, got device {device!r}")
        metadata = read_onnx_metadata(path)
        if metadata.precision != "fp32" or metadata.preprocessing.fused:
            raise ModelFileError(
                f"{path.name}: the opencv backend runs the FP32 graph without fused preprocessing; this file is "
                f"{metadata.precision}{' with fused preprocessing' if metadata.preprocessing.fused else ''}"
            )
        cv2 = _import_cv2()
        try:
            net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as exc:
            raise BackendError(f"{path}: OpenCV {cv2.__version__} could not load the model ({_message(exc)})") from None
        if opencv_version(cv2)[0] < 5:
            # OpenCV 5's graph engine chooses for itself and warns when told.
            net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        return cls(net, metadata=metadata, path=path, specs=_graph_specs(path), cv2=cv2)

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model.

        Args:
            feed: one array per input spec (``images [B, 3, H, W]`` float32, ``orig_target_sizes [B, 2]``).

        Returns:
            One array per output name, in the graph's declared dtype (``labels`` int64 also on OpenCV 4).
        """
        import cv2

        try:
            for spec in self.input_specs:
                self._net.setInput(np.ascontiguousarray(feed[spec.name], dtype=spec.dtype), spec.name)
            outputs = self._net.forward(self._output_names)
        except cv2.error as exc:
            raise BackendError(f"{self.path}: OpenCV inference failed ({_message(exc)})") from None
        result = {}
        for spec, output in zip(self.output_specs, outputs, strict=True):
            output = np.asarray(output)
            if spec.dtype.kind == "i" and output.dtype.kind == "f":
                output = np.rint(output)
            result[spec.name] = output.astype(spec.dtype, copy=False)
        return result

    def close(self) -> None:
        """Release the network."""
        self._net = None
