"""MNN backend: an ``.mnn`` file written by ``rtdetr-export --mnn``, on the CPU, with its JSON sidecar.

MNN keeps integer tensors as int32: the graph takes ``orig_target_sizes`` as int32 and returns int32 labels,
which ``infer`` widens to int64 (the deploy contract). ``MNN`` (pip ``MNN``) is imported only when a model is
opened; only its inference module is used (its converter tools, which try to install a logging package and send
usage logs, are never imported by the runtime).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import BackendError, ModelFileError
from ..metadata import ModelMetadata
from .sidecar_backend import SidecarEngineBackend

__all__ = ["MnnBackend"]

logger = logging.getLogger(__name__)

INPUTS = ("images", "orig_target_sizes")
OUTPUTS = ("labels", "boxes", "scores")


def _import_mnn() -> tuple[ModuleType, ModuleType, ModuleType]:
    try:
        import MNN
        import MNN.expr as expr
        import MNN.nn as nn
    except ImportError:
        raise BackendError("the mnn backend needs MNN: pip install 'rtdetr-deploy[mnn]'") from None
    return MNN, expr, nn


class MnnBackend(SidecarEngineBackend):
    """Runs an ``.mnn`` model exported by ``rtdetr-export --mnn`` with MNN's CPU backend in FP32.

    Build it with ``MnnBackend.from_path``. ``infer`` takes and returns numpy arrays keyed by tensor name.
    """

    name = "mnn"
    suffix = ".mnn"

    def __init__(self, module: Any, expr: ModuleType, *, metadata: ModelMetadata, path: Path, version: str) -> None:
        super().__init__(metadata=metadata, path=path)
        self._module = module
        self._expr = expr
        self.description = f"mnn {version} (CPU, high precision)"

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], *, device: str | None = None, threads: int = 0) -> MnnBackend:
        """Open ``path`` (its ``.json`` sidecar beside it) on the CPU.

        Args:
            path: the ``.mnn`` file.
            device: ``"cpu"`` or None.
            threads: MNN's thread count (0: one per CPU core).

        Raises:
            FileNotFoundError: no such file or no sidecar.
            ValueError: a device other than the CPU, a negative thread count, a sidecar of another engine.
            BackendError: MNN is missing or cannot load the file.
        """
        cls._check_device(device)
        if threads < 0:
            raise ValueError(f"threads must be 0 (every core) or positive, got {threads}")
        path, metadata, _ = cls._read_sidecar(path)
        mnn, expr, nn = _import_mnn()
        config = {"backend": "CPU", "precision": "high", "numThread": threads or os.cpu_count() or 1}
        try:
            runtime = nn.create_runtime_manager((config,))
            module = nn.load_module_from_file(str(path), list(INPUTS), list(OUTPUTS), runtime_manager=runtime)
        except Exception as exc:  # MNN's loader raises plain Exception/RuntimeError types
            raise ModelFileError(f"{path}: MNN cannot load the file ({exc})") from None
        if module is None:
            raise ModelFileError(f"{path}: MNN cannot load the file (not an MNN model?)")
        backend = cls(module, expr, metadata=metadata, path=path, version=str(mnn.version()))
        logger.info("mnn: %s", backend.description)
        return backend

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model.

        Args:
            feed: ``images [B, 3, H, W]`` float32 and ``orig_target_sizes [B, 2]`` (width, height), B the batch
                the model was exported for.

        Returns:
            ``labels [B, K]`` int64, ``boxes [B, K, 4]`` float32 xyxy pixels, ``scores [B, K]`` float32.
        """
        checked = self._checked_feed(feed, self._module)
        expr = self._expr
        inputs = []
        for (_, array), dtype, kind in zip(checked, (np.float32, np.int32), (expr.float, expr.int), strict=True):
            array = np.ascontiguousarray(array, dtype=dtype)
            inputs.append(expr.const(array, list(array.shape), expr.NCHW, kind))
        try:
            results = self._module.forward(inputs)
        except Exception as exc:  # MNN raises plain Exception types
            raise BackendError(f"{self.path}: MNN inference failed ({exc})") from None
        arrays = [np.array(value.read(), copy=True) for value in results]
        return {spec.name: array.astype(spec.dtype) for spec, array in zip(self.output_specs, arrays, strict=True)}

    def close(self) -> None:
        """Release the MNN module."""
        self._module = None
