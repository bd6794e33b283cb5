"""LiteRT (TensorFlow Lite) backend: a ``.tflite`` file written by ``rtdetr-export --tflite``, on the CPU.

The model's inputs carry the deploy names (``images``, ``orig_target_sizes``); its outputs either carry theirs
(``labels``, ``boxes``, ``scores``) or, as onnx2tf writes them, ``Identity``, ``Identity_1``, ``Identity_2`` in the
ONNX's output order. A converter may have laid the image input
out channels-last (``[B, H, W, 3]``); ``infer`` always takes ``[B, 3, H, W]`` and transposes where the model wants
it, and gives each input the dtype the model declares. ``ai_edge_litert`` (pip ``ai-edge-litert``) is imported
only when a model is opened.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, ModelFileError
from ..metadata import ModelMetadata
from .sidecar_backend import SidecarEngineBackend

__all__ = ["LiteRtBackend"]

OUTPUTS = ("labels", "boxes", "scores")

logger = logging.getLogger(__name__)


def _interpreter_class() -> tuple[Any, str]:
    try:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise BackendError("the litert backend needs ai-edge-litert: pip install 'rtdetr-deploy[litert]'") from None
    return Interpreter, getattr(ai_edge_litert, "__version__", "?")


def _output_order(names: list[str]) -> list[int]:
    """Positions of ``labels``, ``boxes``, ``scores`` among the interpreter's output names: by name, or (onnx2tf
    names them ``Identity``, ``Identity_1``, ``Identity_2`` in the ONNX's output order) by that numbering."""
    if set(OUTPUTS) <= set(names):
        return [names.index(name) for name in OUTPUTS]
    numbered = [int(name.rsplit("_", 1)[1]) if "_" in name else 0 for name in names]
    if len(names) != len(OUTPUTS) or sorted(numbered) != list(range(len(OUTPUTS))):
        raise ValueError(f"outputs {names} are neither named {', '.join(OUTPUTS)} nor Identity, Identity_1, ...")
    return [numbered.index(i) for i in range(len(OUTPUTS))]


class LiteRtBackend(SidecarEngineBackend):
    """Runs a ``.tflite`` model exported by ``rtdetr-export --tflite`` with the LiteRT CPU interpreter.

    Build it with ``LiteRtBackend.from_path``. ``infer`` takes and returns numpy arrays keyed by tensor name.
    """

    name = "litert"
    suffix = ".tflite"

    def __init__(self, interpreter: Any, *, metadata: ModelMetadata, path: Path, version: str) -> None:
        super().__init__(metadata=metadata, path=path)
        self._interpreter = interpreter
        self._inputs = {detail["name"]: detail for detail in interpreter.get_input_details()}
        outputs = interpreter.get_output_details()
        try:
            order = _output_order([detail["name"] for detail in outputs])
        except ValueError as exc:
            raise ModelFileError(f"{path}: {exc}") from None
        self._output_indices = [outputs[position]["index"] for position in order]
        wanted = {spec.name for spec in self.input_specs}
        if set(self._inputs) != wanted:
            raise ModelFileError(f"{path}: the model's inputs are {sorted(self._inputs)}, not {sorted(wanted)}")
        shape = tuple(int(d) for d in self._inputs["images"]["shape"])
        self._channels_last = shape[-1] == 3 and shape[1] != 3
        layout = "NHWC" if self._channels_last else "NCHW"
        self.description = f"litert {version} (CPU interpreter, {layout} images)"

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], *, device: str | None = None, threads: int | None = None
    ) -> LiteRtBackend:
        """Open ``path`` (its ``.json`` sidecar beside it) on the CPU.

        Args:
            path: the ``.tflite`` file.
            device: ``"cpu"`` or None.
            threads: interpreter threads (None: LiteRT's default).

        Raises:
            FileNotFoundError: no such file or no sidecar.
            ValueError: a device other than the CPU, bad threads, a sidecar of another engine.
            BackendError: ai-edge-litert is missing or cannot load the file.
        """
        cls._check_device(device)
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be positive, got {threads}")
        path, metadata, _ = cls._read_sidecar(path)
        interpreter_class, version = _interpreter_class()
        try:
            interpreter = interpreter_class(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{path}: LiteRT cannot load the file ({exc})") from None
        backend = cls(interpreter, metadata=metadata, path=path, version=version)
        logger.info("litert: %s", backend.description)
        return backend

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model.

        Args:
            feed: ``images [B, 3, H, W]`` float32 and ``orig_target_sizes [B, 2]`` (width, height), B the batch
                the model was exported for.

        Returns:
            ``labels [B, K]`` int64, ``boxes [B, K, 4]`` float32 xyxy pixels, ``scores [B, K]`` float32.
        """
        checked = self._checked_feed(feed, self._interpreter)
        interpreter = self._interpreter
        for spec, array in checked:
            if spec.name == "images" and self._channels_last:
                array = array.transpose(0, 2, 3, 1)
            detail = self._inputs[spec.name]
            interpreter.set_tensor(detail["index"], np.ascontiguousarray(array, dtype=detail["dtype"]))
        try:
            interpreter.invoke()
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"{self.path}: LiteRT inference failed ({exc})") from None
        return {
            spec.name: np.array(interpreter.get_tensor(index), dtype=spec.dtype, copy=True)
            for spec, index in zip(self.output_specs, self._output_indices, strict=True)
        }

    def close(self) -> None:
        """Release the interpreter."""
        self._interpreter = None
