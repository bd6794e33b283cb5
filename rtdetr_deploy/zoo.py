"""The model zoo: the model used when none is given, the official RT-DETRv2-S COCO checkpoint, downloaded and
exported once.

The checkpoint is downloaded into ``cache_dir()/models/<name>/`` (progress bar, SHA-256, atomic write), re-saved
with the COCO class names and category ids (official checkpoints carry none), exported to a verified ONNX with
this package's exporter, and, for the TensorRT backend, built into an engine. Every later run reuses the cache.
Exporting needs PyTorch once; a machine without it, or without network access, gets one line asking for
``--model``.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from .artifacts import engine_path, onnx_path
from .cache import cache_dir
from .checksum import file_sha256
from .coco.names import COCO
from .download import download
from .errors import BackendError
from .runtime.registry import AUTO, backend_entry, check_backend_name

__all__ = [
    "DEFAULT_MODEL",
    "DefaultModel",
    "RTDETRV2_S_COCO",
    "default_model_dir",
    "resolve_default_model",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DefaultModel:
    """A downloadable checkpoint and the facts it lacks.

    Attributes:
        name: cache folder and file stem.
        url: release address of the checkpoint.
        sha256: its hex SHA-256.
        class_names: a name per contiguous label.
        category_ids: original dataset id per contiguous label.
    """

    name: str
    url: str
    sha256: str
    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.category_ids):
            raise ValueError(f"{len(self.class_names)} class names but {len(self.category_ids)} category ids")


RTDETRV2_S_COCO = DefaultModel(
    name="rtdetrv2_r18vd_coco",
    url="https://github.com/lyuwenyu/storage/releases/download/v0.2/rtdetrv2_r18vd_120e_coco_rerun_48.1.pth",
    sha256="2ace52184b620204004509b72752ac7bfe64aadaf7fc1d076b18df8ab5a5c77e",
    class_names=COCO.names,
    category_ids=COCO.category_ids,
)

DEFAULT_MODEL = RTDETRV2_S_COCO
ASK_FOR_MODEL = "pass --model PATH (.onnx, .engine or .pth)"


def default_model_dir(spec: DefaultModel | None = None) -> Path:
    """Cache folder of a default model: ``cache_dir()/models/<name>``."""
    return cache_dir() / "models" / (spec or DEFAULT_MODEL).name


def resolve_default_model(*, backend: str = "auto", spec: DefaultModel | None = None, root: Path | None = None) -> Path:
    """The default model file for ``backend``, downloading and exporting it on first use.

    Args:
        backend: ``"auto"`` or a registered backend: one that opens ``.onnx`` gets the ONNX, ``.pth`` the
            labelled checkpoint, ``.engine`` an engine built for this GPU and TensorRT.
        spec: which checkpoint; ``DEFAULT_MODEL`` (RT-DETRv2-S COCO) by default.
        root: cache folder; ``default_model_dir(spec)`` by default.

    Raises:
        OSError: the download failed (no network, say); the message asks for ``--model``.
        BackendError: PyTorch (needed once, to export) is not installed.
        ValueError: a backend that opens none of the default model's files.
    """
    kind = _default_file_kind(backend)
    spec = spec or DEFAULT_MODEL
    root = root or default_model_dir(spec)
    onnx_file = onnx_path(root, spec.name)
    labelled = root / f"{spec.name}.pth"
    wanted = labelled if kind == ".pth" else onnx_file
    if kind != ".engine" and wanted.is_file():
        return wanted
    if not labelled.is_file() or (kind != ".pth" and not onnx_file.is_file()):
        if importlib.util.find_spec("torch") is None:
            raise BackendError(
                "no --model given: preparing the default model needs PyTorch once "
                f"(pip install 'rtdetr-deploy[export]'); or {ASK_FOR_MODEL}"
            )
        weights = _download_weights(spec, root)
        if not labelled.is_file():
            _save_labelled(weights, labelled, spec)
        if kind != ".pth" and not onnx_file.is_file():
            _export(labelled, root)
    if kind == ".pth":
        return labelled
    if kind == ".engine":
        return _engine_for(onnx_file)
    return onnx_file


def _default_file_kind(backend: str) -> str:
    """Which of the default model's files ``backend`` opens (by the registry's suffixes): ``.onnx`` (also for
    ``"auto"``), ``.pth`` (the labelled checkpoint) or ``.engine``.

    Raises:
        ValueError: an unknown backend, or one that opens none of these files.
    """
    if check_backend_name(backend) == AUTO:
        return ".onnx"
    suffixes = backend_entry(backend).suffixes
    for kind in (".onnx", ".pth", ".engine"):
        if kind in suffixes:
            return kind
    raise ValueError(f"there is no default model for the {backend} backend; {ASK_FOR_MODEL}")


def _download_weights(spec: DefaultModel, root: Path) -> Path:
    weights = root / Path(spec.url).name
    if weights.is_file() and file_sha256(weights) == spec.sha256:
        return weights
    logger.info("downloading the default model %s (once) into %s", Path(spec.url).name, root)
    try:
        return download(spec.url, weights, sha256=spec.sha256)
    except OSError as exc:
        raise OSError(f"no --model given and the default model is not available: {exc}; {ASK_FOR_MODEL}") from None


def _save_labelled(weights: Path, labelled: Path, spec: DefaultModel) -> None:
    from .models.checkpoint import load_model, save_model

    model = load_model(weights)
    if model.num_classes != len(spec.class_names):
        raise ValueError(f"{weights}: {model.num_classes} classes, but the default model lists {len(spec.class_names)}")
    save_model(model, labelled, class_names=list(spec.class_names), category_ids=list(spec.category_ids))


def _export(labelled: Path, root: Path) -> None:
    from .export.config import ExportConfig
    from .export.pipeline import export

    logger.info("exporting the default model to ONNX (once)")
    export(ExportConfig(weights=labelled, out_dir=root), verbose=False)


def _engine_for(onnx_file: Path) -> Path:
    """The FP32 engine built once from the default ONNX (the runtime refuses it on another TensorRT or GPU)."""
    from .export.tensorrt import build_engine

    engine = engine_path(onnx_file.parent, onnx_file.stem, "fp32")
    if not engine.is_file():
        logger.info("building a TensorRT engine for the default model (once; this takes minutes)")
        build_engine(onnx_file, engine)
    return engine
