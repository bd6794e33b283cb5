"""RKNN backend: an ``.rknn`` file written by ``rtdetr-export --rknn``, on a Rockchip board's NPU.

Runs through ``rknn-toolkit-lite2`` (``rknnlite.api.RKNNLite``), which exists only for the boards' aarch64 Linux.
**Untested here**: the project's machines are x86 without an NPU; the export verifies every ``.rknn`` in
rknn-toolkit2's x86 simulator instead (``export.rknn``), and this class follows the toolkit-lite2 API as
documented (``load_rknn``, ``init_runtime``, ``inference``, ``release``, each returning 0 on success).
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

__all__ = ["RknnBackend"]

logger = logging.getLogger(__name__)


def _rknnlite_class() -> Any:
    try:
        from rknnlite.api import RKNNLite
    except ImportError:
        raise BackendError(
            "the rknn backend needs rknn-toolkit-lite2 on a Rockchip board (aarch64): pip install rknn-toolkit-lite2 "
            "there; on x86 the export verifies .rknn files in rknn-toolkit2's simulator instead"
        ) from None
    return RKNNLite


class RknnBackend(SidecarEngineBackend):
    """Runs an ``.rknn`` model on the board's NPU with rknn-toolkit-lite2 (untested on this project's machines).

    Build it with ``RknnBackend.from_path``. ``infer`` takes and returns numpy arrays keyed by tensor name.
    """

    name = "rknn"
    suffix = ".rknn"
    engine_device = "npu"
    runs_on = "the board's 'npu'"

    def __init__(self, runtime: Any, *, metadata: ModelMetadata, path: Path, platform: str) -> None:
        super().__init__(metadata=metadata, path=path)
        self._runtime = runtime
        self.description = f"rknn-toolkit-lite2 ({platform} NPU, {metadata.precision})"

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], *, device: str | None = None) -> RknnBackend:
        """Open ``path`` (its ``.json`` sidecar beside it) on the board's NPU (every core: ``NPU_CORE_AUTO``).

        Raises:
            FileNotFoundError: no such file or no sidecar.
            ValueError: a device other than ``"npu"``/None, a sidecar of another engine.
            BackendError: rknn-toolkit-lite2 is missing (any machine but a board) or refused the file.
        """
        cls._check_device(device)
        path, metadata, conversion = cls._read_sidecar(path)
        rknnlite_class = _rknnlite_class()
        runtime = rknnlite_class()
        if runtime.load_rknn(str(path)) != 0:
            raise ModelFileError(f"{path}: rknn-toolkit-lite2 cannot load the file")
        if runtime.init_runtime(core_mask=rknnlite_class.NPU_CORE_AUTO) != 0:
            runtime.release()
            raise BackendError(f"{path}: rknn-toolkit-lite2 cannot start the NPU runtime (is this the right board?)")
        backend = cls(runtime, metadata=metadata, path=path, platform=str(conversion.get("platform", "?")))
        logger.info("rknn: %s", backend.description)
        return backend

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model.

        Args:
            feed: ``images [B, 3, H, W]`` float32 and ``orig_target_sizes [B, 2]`` (width, height).

        Returns:
            ``labels [B, K]`` int64, ``boxes [B, K, 4]`` float32 xyxy pixels, ``scores [B, K]`` float32.
        """
        if self._runtime is None:
            raise BackendError(f"{self.path}: the rknn backend is closed")
        images = np.ascontiguousarray(feed["images"], dtype=np.float32)
        sizes = np.ascontiguousarray(feed["orig_target_sizes"], dtype=np.dtype(self.metadata.orig_sizes_dtype))
        results = self._runtime.inference(inputs=[images, sizes], data_format=["nchw", "nchw"])
        if results is None:
            raise BackendError(f"{self.path}: RKNN inference failed")
        return {
            spec.name: np.asarray(array).reshape(spec.shape).astype(spec.dtype)
            for spec, array in zip(self.output_specs, results, strict=True)
        }

    def close(self) -> None:
        """Release the NPU runtime."""
        if self._runtime is not None:
            self._runtime.release()
            self._runtime = None
