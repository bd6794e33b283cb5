"""The JSON sidecar beside a third-party engine file (``.mnn``, ``.tflite``, ``.rknn``): the model's metadata.

An engine written as a folder (``best.ncnn/``, ``artifacts.ENGINE_FOLDER_SUFFIXES``) holds its sidecar inside,
as ``model.json``.

These formats have no place for the ONNX ``metadata_props`` that the runtime reads (input size, classes,
preprocessing, top-k), so the exporter writes them beside the engine as ``<engine file>.json``::

    {"metadata": {ModelMetadata.to_props()}, "engine": "mnn", "conversion": {...what converted it, and how}}

The engine file itself stays untouched, so each engine's own tools still open it. The same file also fixes the
tensors the engine is fed and returns (``deploy_specs``): the official deploy I/O, batch fixed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..artifacts import is_engine_folder
from ..atomic import atomic_path
from ..errors import ModelFileError
from ..metadata import ModelMetadata
from .tensors import TensorSpec

__all__ = ["deploy_specs", "engine_sidecar_path", "read_engine_sidecar", "write_engine_sidecar"]

SIDECAR_SUFFIX = ".json"
FOLDER_SIDECAR = "model.json"


def engine_sidecar_path(path: str | os.PathLike[str]) -> Path:
    """``model.mnn`` -> ``model.mnn.json``; an engine folder ``model.ncnn`` -> ``model.ncnn/model.json``."""
    path = Path(path)
    if is_engine_folder(path):
        return path / FOLDER_SIDECAR
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_engine_sidecar(
    path: str | os.PathLike[str], metadata: ModelMetadata, *, engine: str, conversion: dict[str, object]
) -> Path:
    """Write the sidecar of the engine file ``path`` atomically; returns the sidecar's path."""
    record = {"metadata": metadata.to_props(), "engine": engine, "conversion": conversion}
    sidecar = engine_sidecar_path(path)
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    return sidecar


def read_engine_sidecar(path: str | os.PathLike[str], *, engine: str) -> tuple[ModelMetadata, dict[str, object]]:
    """The ``ModelMetadata`` and conversion record beside the ``engine`` file ``path``.

    Raises:
        FileNotFoundError: no engine file, or no sidecar beside it.
        ModelFileError: a sidecar that is not ours, names another engine, or holds bad metadata.
    """
    path = Path(path)
    folder = is_engine_folder(path)
    if not (path.is_dir() if folder else path.is_file()):
        raise FileNotFoundError(f"model not found: {path}")
    sidecar = engine_sidecar_path(path)
    if not sidecar.is_file():
        where = "into the engine folder" if folder else "beside the engine file"
        raise FileNotFoundError(f"metadata of {path.name} not found: {sidecar} (rtdetr-export writes it {where})")
    try:
        record = json.loads(sidecar.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("metadata"), dict):
            raise ValueError("no 'metadata' object")
        metadata = ModelMetadata.from_props(record["metadata"])
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{sidecar}: not an rtdetr-deploy engine sidecar ({exc})") from None
    if record.get("engine") != engine:
        raise ModelFileError(f"{sidecar}: the sidecar describes a {record.get('engine')!r} engine, not {engine!r}")
    return metadata, dict(record.get("conversion") or {})


def deploy_specs(metadata: ModelMetadata) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and outputs of a fixed-batch engine with the official deploy I/O.

    Returns:
        ``(images [B, 3, H, W] float32, orig_target_sizes [B, 2] in metadata.orig_sizes_dtype)`` and
        ``(labels [B, K] int64, boxes [B, K, 4] float32 xyxy pixels, scores [B, K] float32)``.
    """
    batch, (height, width), topk = metadata.batch[2], metadata.input_size, metadata.topk
    inputs = (
        TensorSpec("images", (batch, 3, height, width), np.dtype(np.float32)),
        TensorSpec("orig_target_sizes", (batch, 2), np.dtype(metadata.orig_sizes_dtype)),
    )
    outputs = (
        TensorSpec("labels", (batch, topk), np.dtype(np.int64)),
        TensorSpec("boxes", (batch, topk, 4), np.dtype(np.float32)),
        TensorSpec("scores", (batch, topk), np.dtype(np.float32)),
    )
    return inputs, outputs
