"""Named input/output tensor descriptions shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TensorSpec", "dtype_from_onnx"]

_ONNX_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a model.

    Attributes:
        name: tensor name in the graph or engine (``images``, ``orig_target_sizes``, ``labels``, ...).
        shape: one entry per dimension; ``None`` where the dimension is dynamic (usually the batch).
        dtype: the numpy dtype the backend expects or returns, e.g. ``int32`` for an engine's
            ``orig_target_sizes`` where the ONNX file declares ``int64``.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    @property
    def fixed_batch(self) -> int | None:
        """The batch size when the first dimension is static, else ``None``."""
        return self.shape[0] if self.shape else None


def dtype_from_onnx(type_name: str) -> np.dtype:
    """Numpy dtype of an ONNX Runtime type string such as ``"tensor(float)"``.

    Raises:
        ValueError: a type the runtime has no use for (strings, sequences, maps, ...).
    """
    try:
        return np.dtype(_ONNX_TYPES[type_name])
    except KeyError:
        raise ValueError(f"unsupported tensor type {type_name!r}; expected one of {', '.join(_ONNX_TYPES)}") from None
