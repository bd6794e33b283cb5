"""What the backends of sidecar-described engines (MNN, LiteRT, RKNN) share: device and file checks, the sidecar's
metadata, the fixed-batch deploy I/O and the checked feed.

Each such engine is one file written by ``rtdetr-export --<suffix>`` with a JSON sidecar beside it
(``engine_sidecar``); its backend runs on one device kind only and takes the official deploy inputs at the
exported batch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import BackendError
from ..metadata import ModelMetadata
from .backend import BackendBase
from .engine_sidecar import deploy_specs, read_engine_sidecar
from .tensors import TensorSpec

__all__ = ["SidecarEngineBackend"]


class SidecarEngineBackend(BackendBase):
    """Base of the backends whose engine file carries its metadata in a JSON sidecar.

    Subclasses set ``name`` (the backend, also the sidecar's engine name), ``suffix`` (the engine file's, e.g.
    ``".mnn"``; ``rtdetr-export`` writes it with the flag of the same name), ``engine_device`` (the one device it
    runs on) and ``runs_on`` (that device, as the error for another one names it).
    """

    name: ClassVar[str]
    suffix: ClassVar[str]
    engine_device: ClassVar[str] = "cpu"
    runs_on: ClassVar[str] = "'cpu'"

    def __init__(self, *, metadata: ModelMetadata, path: Path) -> None:
        self.metadata = metadata
        self.path = path
        self.device = self.engine_device
        self.input_specs, self.output_specs = deploy_specs(metadata)

    @classmethod
    def _check_device(cls, device: str | None) -> None:
        """Raises ValueError for a device other than the engine's own (None: the engine's own)."""
        if device not in (None, cls.engine_device):
            raise ValueError(f"unknown device {device!r} for the {cls.name} backend; it runs on {cls.runs_on}")

    @classmethod
    def _read_sidecar(cls, path: str | os.PathLike[str]) -> tuple[Path, ModelMetadata, dict[str, object]]:
        """The engine file's path, and the metadata and conversion record of its sidecar.

        Raises:
            ValueError: a file of another suffix, a sidecar of another engine.
            FileNotFoundError: no such file or no sidecar.
        """
        path = Path(path)
        if path.suffix.lower() != cls.suffix:
            raise ValueError(
                f"the {cls.name} backend runs {cls.suffix} files written by rtdetr-export --{cls.suffix[1:]}, "
                f"not {path.name}"
            )
        metadata, conversion = read_engine_sidecar(path, engine=cls.name)
        return path, metadata, conversion

    def _checked_feed(self, feed: Mapping[str, np.ndarray], engine: Any) -> list[tuple[TensorSpec, np.ndarray]]:
        """Each input spec with its array from ``feed``, in spec order, the shape checked.

        Args:
            feed: ``images [B, 3, H, W]`` and ``orig_target_sizes [B, 2]``, B the exported batch.
            engine: the engine's open handle; None once the backend is closed.

        Raises:
            BackendError: the backend is closed.
            ValueError: an input of another shape.
        """
        if engine is None:
            raise BackendError(f"{self.path}: the {self.name} backend is closed")
        checked = []
        for spec in self.input_specs:
            array = np.asarray(feed[spec.name])
            if array.shape != spec.shape:
                raise ValueError(f"{spec.name} must have the shape {spec.shape}, got {array.shape}")
            checked.append((spec, array))
        return checked
