"""Pieces of TensorRT's Python API that the TensorRT tests stand in for (no TensorRT here), written from the
API lists in ``tools/tensorrt_api/data``, and the loader of that folder's conformance checker."""

from __future__ import annotations

import enum
import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API_DATA = ROOT / "tools" / "tensorrt_api" / "data"
# What pybind11 raises when a TensorRT factory (Builder, Runtime, ...) returns a null pointer.
NULLPTR = "pybind11::init(): factory function returned nullptr"


class Severity(enum.IntEnum):
    """``nvinfer1::ILogger::Severity`` (kINTERNAL_ERROR = 0 ... kVERBOSE = 4)."""

    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    """``tensorrt.ILogger``: the base class a Python logger derives from."""

    Severity = Severity

    def __init__(self) -> None:
        pass


def load_conformance() -> types.ModuleType:
    """``tools/tensorrt_api/conformance.py`` (a script folder, not a package)."""
    name = "tensorrt_api_conformance"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "tensorrt_api" / "conformance.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def fake_distributions(monkeypatch: pytest.MonkeyPatch, versions: dict[str, str]) -> None:
    """Make ``importlib.metadata.version`` answer from ``versions`` (others: not installed)."""

    def version(name: str) -> str:
        if name not in versions:
            raise importlib.metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(importlib.metadata, "version", version)
