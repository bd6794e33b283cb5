"""The ``Backend`` protocol every inference runtime implements, and the base class they share.

Pre- and post-processing live in ``Detector``, outside the backends, so every backend sees the same tensors.
Each backend module imports its heavy dependency (onnxruntime, tensorrt, torch) only when a model is opened;
``registry.open_backend`` picks the class.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

from ..metadata import ModelMetadata
from .tensors import TensorSpec

__all__ = ["Backend", "BackendBase"]

_B = TypeVar("_B", bound="Backend")


@runtime_checkable
class Backend(Protocol):
    """One inference runtime holding one model.

    Attributes:
        name: the runtime, as ``--backend`` names it (``onnxruntime``, ``tensorrt``, ``torch``).
        metadata: the model's self-description (input size, preprocessing, classes, top-k, batch range).
        input_specs: the model's inputs, with the dtypes the backend wants (``images``, ``orig_target_sizes``).
        output_specs: the model's outputs (``labels``/``boxes``/``scores``, or ``pred_logits``/``pred_boxes``).
        description: one line naming the runtime, its version and the provider or device actually used.
    """

    name: str
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


class BackendBase:
    """What every backend class shares: it is its own context manager, closing itself on exit."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _B) -> _B:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
