"""``TargetsConfig``: which third-party engines an export converts the verified ONNX to, validated once.

The converters of two engines pin packages that clash with ours and run in an interpreter the user names:
rknn-toolkit2 (``--rknn-python`` or ``RTDETR_RKNN_PYTHON``), onnx2tf with TensorFlow (``--tflite-python`` or
``RTDETR_ONNX2TF_PYTHON``; the current interpreter when onnx2tf is importable here) and pnnx, ncnn's converter
(``--ncnn-python`` or ``RTDETR_NCNN_PYTHON``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NCNN_PYTHON_ENV", "RKNN_PLATFORMS", "RKNN_PRECISIONS", "TargetsConfig", "interpreter_from"]

# rknn-toolkit2 2.5.0's target platforms (its RKNN.config docstring).
RKNN_PLATFORMS = (
    "rk3588",
    "rk3576",
    "rk3568",
    "rk3566",
    "rk3562",
    "rv1126b",
    "rv1106",
    "rv1106b",
    "rv1103",
    "rv1103b",
    "rk2118",
)
RKNN_PRECISIONS = ("fp16", "int8")
RKNN_PYTHON_ENV = "RTDETR_RKNN_PYTHON"
ONNX2TF_PYTHON_ENV = "RTDETR_ONNX2TF_PYTHON"
NCNN_PYTHON_ENV = "RTDETR_NCNN_PYTHON"


@dataclass(frozen=True)
class TargetsConfig:
    """Third-party engines to write beside the ONNX.

    Attributes:
        mnn: write ``NAME.mnn`` (FP32) with MNN's converter, verified in MNN.
        tflite: write ``NAME.tflite`` (FP32) with onnx2tf, verified in LiteRT.
        tflite_python: interpreter that has onnx2tf (None: this one).
        rknn: RKNN target platform (``rk3588``, ...); None writes no ``.rknn``.
        rknn_precision: ``"fp16"`` or ``"int8"`` (INT8 calibrates on the export's ``calib`` images).
        rknn_python: interpreter that has rknn-toolkit2 (required with ``rknn``).
        ncnn: write the ``NAME.ncnn`` folder (FP32, bilinear sampling) with pnnx, verified in ncnn.
        ncnn_python: interpreter that has pnnx (required with ``ncnn``).
    """

    mnn: bool = False
    tflite: bool = False
    tflite_python: Path | None = None
    rknn: str | None = None
    rknn_precision: str = "fp16"
    rknn_python: Path | None = None
    ncnn: bool = False
    ncnn_python: Path | None = None

    def __post_init__(self) -> None:
        if self.rknn is not None and self.rknn not in RKNN_PLATFORMS:
            raise ValueError(f"--rknn {self.rknn!r}: choose a platform from {', '.join(RKNN_PLATFORMS)}")
        if self.rknn_precision not in RKNN_PRECISIONS:
            raise ValueError(
                f"--rknn-precision must be one of {', '.join(RKNN_PRECISIONS)}, got {self.rknn_precision!r}"
            )
        if self.rknn is not None and self.rknn_python is None:
            raise ValueError(
                f"--rknn needs the interpreter that has rknn-toolkit2: pass --rknn-python PATH or set {RKNN_PYTHON_ENV}"
            )
        if self.ncnn and self.ncnn_python is None:
            raise ValueError(
                f"--ncnn needs the interpreter that has pnnx: pass --ncnn-python PATH or set {NCNN_PYTHON_ENV}"
            )
        interpreters = (
            ("--rknn-python", self.rknn_python),
            ("--tflite-python", self.tflite_python),
            ("--ncnn-python", self.ncnn_python),
        )
        for flag, python in interpreters:
            if python is not None and not Path(python).is_file():
                raise FileNotFoundError(f"{flag}: no interpreter at {python}")

    @property
    def any(self) -> bool:
        return self.mnn or self.tflite or self.rknn is not None or self.ncnn


def interpreter_from(flag_value: Path | None, env_name: str) -> Path | None:
    """The interpreter a flag names, else the environment variable ``env_name``'s, else None."""
    if flag_value is not None:
        return flag_value
    value = os.environ.get(env_name, "").strip()
    return Path(value) if value else None
