"""The backend registry: which backend class opens a model, by the file's suffix or by the backend's name.

Each entry names a backend, its class, the model-file suffixes it opens and whether it is the default for them.
Several backends may open one suffix (ONNX Runtime and OpenCV both read ``.onnx``); exactly one is the default,
and the others are chosen by name (``--backend NAME``). A transformers model folder (``artifacts.is_model_folder``)
opens with the entry that takes ``folders``. Adding a backend is its own module plus one line in ``REGISTRY``.

Every backend module imports its runtime (onnxruntime, tensorrt, openvino, torch) only when a model is opened, so
importing this registry needs none of them. The file-name rules themselves (which suffixes are model files, what
an export names its files) live in ``artifacts``.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import MODEL_FOLDER_FILE, MODEL_SUFFIXES, is_engine_folder, is_model_folder
from .backend import Backend
from .litert_backend import LiteRtBackend
from .mnn_backend import MnnBackend
from .ncnn_backend import NcnnBackend
from .onnxruntime_backend import OrtBackend
from .opencv_backend import OpenCvBackend
from .openvino_backend import OpenVinoBackend
from .rknn_backend import RknnBackend
from .tensorrt_backend import TrtBackend
from .torch_backend import TorchBackend

__all__ = [
    "AUTO",
    "BACKEND_CHOICES",
    "BackendEntry",
    "REGISTRY",
    "backend_class",
    "backend_entry",
    "backend_name_for",
    "backend_names",
    "check_backend_name",
    "open_backend",
]

AUTO = "auto"


@dataclass(frozen=True)
class BackendEntry:
    """One backend the runtime can open a model with.

    Attributes:
        name: what ``--backend`` / ``backend=`` calls it.
        cls: the ``Backend`` class (its module imports the backend's runtime lazily).
        suffixes: lower-case model-file suffixes it opens, each one of ``artifacts.MODEL_SUFFIXES``.
        default: it opens its suffixes when no backend is named (one default per suffix).
        requires: the module the backend imports when it opens a model.
        extra: the package extra that installs ``requires`` (``None``: a core dependency).
        folders: it opens transformers model folders (``artifacts.is_model_folder``).
        package: the pip package that provides ``requires`` when its name differs (``cv2``: opencv-python-headless).
        board: the runtime installs on the target device only (rknn-toolkit-lite2 on a Rockchip board).
    """

    name: str
    cls: type[Backend]
    suffixes: tuple[str, ...]
    requires: str
    extra: str | None
    default: bool = True
    folders: bool = False
    package: str | None = None
    board: bool = False

    @property
    def install(self) -> str:
        """How to install what the backend needs."""
        if self.board:
            return f"pip install {self.package or self.requires} (on the target board)"
        if self.extra is None:
            return f"pip install {self.package or self.requires} (a core dependency of rtdetr-deploy)"
        return f"pip install 'rtdetr-deploy[{self.extra}]'"

    def __post_init__(self) -> None:
        unknown = [suffix for suffix in self.suffixes if suffix not in MODEL_SUFFIXES]
        if unknown or not self.suffixes:
            raise ValueError(
                f"backend {self.name!r}: suffixes {self.suffixes} must be model-file suffixes "
                f"({', '.join(MODEL_SUFFIXES)}; the file-name rules live in artifacts)"
            )


def _checked(entries: tuple[BackendEntry, ...]) -> tuple[BackendEntry, ...]:
    """``entries`` once each name is unique and each suffix has exactly one default (else ``ValueError``)."""
    names = [entry.name for entry in entries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates or AUTO in names:
        raise ValueError(f"backend names must be unique and not {AUTO!r}: {', '.join(duplicates) or AUTO}")
    for suffix in dict.fromkeys(s for entry in entries for s in entry.suffixes):
        defaults = [entry.name for entry in entries if entry.default and suffix in entry.suffixes]
        if len(defaults) != 1:
            raise ValueError(f"suffix {suffix!r} needs exactly one default backend, has {defaults or 'none'}")
    if sum(entry.folders for entry in entries) > 1:
        raise ValueError("only one backend may open model folders")
    return entries


REGISTRY: tuple[BackendEntry, ...] = _checked(
    (
        BackendEntry("onnxruntime", OrtBackend, (".onnx",), "onnxruntime", None),
        BackendEntry("tensorrt", TrtBackend, (".engine",), "tensorrt", "trt"),
        BackendEntry("torch", TorchBackend, (".pth", ".safetensors"), "torch", "torch", folders=True),
        BackendEntry("openvino", OpenVinoBackend, (".xml",), "openvino", "openvino"),
        BackendEntry("opencv", OpenCvBackend, (".onnx",), "cv2", None, default=False, package="opencv-python-headless"),
        BackendEntry("mnn", MnnBackend, (".mnn",), "MNN", "mnn"),
        BackendEntry("litert", LiteRtBackend, (".tflite",), "ai_edge_litert", "litert"),
        BackendEntry("rknn", RknnBackend, (".rknn",), "rknnlite", None, package="rknn-toolkit-lite2", board=True),
        BackendEntry("ncnn", NcnnBackend, (".ncnn",), "ncnn", "ncnn"),
    )
)


def backend_names() -> tuple[str, ...]:
    """Every registered backend's name, in registry order."""
    return tuple(entry.name for entry in REGISTRY)


BACKEND_CHOICES: tuple[str, ...] = (AUTO, *backend_names())


def _suffixes() -> tuple[str, ...]:
    return tuple(dict.fromkeys(s for entry in REGISTRY for s in entry.suffixes))


def check_backend_name(name: str) -> str:
    """``name`` if it is ``"auto"`` or a registered backend.

    Raises:
        ValueError: any other name (with a close-match hint).
    """
    if name in BACKEND_CHOICES:
        return name
    hint = difflib.get_close_matches(str(name), BACKEND_CHOICES, n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise ValueError(f"unknown backend {name!r}{suggestion}; choose from {', '.join(BACKEND_CHOICES)}")


def backend_entry(name: str) -> BackendEntry:
    """The registry entry of backend ``name`` (``ValueError`` for ``"auto"`` or an unknown name)."""
    check_backend_name(name)
    for entry in REGISTRY:
        if entry.name == name:
            return entry
    raise ValueError(f"{AUTO!r} names no backend: pass a model file to choose one by its suffix")


def backend_class(name: str) -> type[Backend]:
    """The class of the registered backend ``name`` (``ValueError`` for ``"auto"`` or an unknown name)."""
    return backend_entry(name).cls


def backend_name_for(path: str | os.PathLike[str]) -> str:
    """The default backend of a model file, by its suffix; a model folder opens with the ``folders`` backend.

    Raises:
        ValueError: a suffix no backend opens (with a close-match hint), or a folder without ``config.json``.
    """
    suffixes = _suffixes()
    if Path(path).is_dir() and not is_engine_folder(path):
        folder_backends = [entry.name for entry in REGISTRY if entry.folders]
        if is_model_folder(path) and folder_backends:
            return folder_backends[0]
        raise ValueError(
            f"the folder {path} has no {MODEL_FOLDER_FILE}: a model folder is a transformers save_pretrained folder "
            f"(otherwise pass a {', '.join(suffixes)} file)"
        )
    suffix = Path(path).suffix.lower()
    for entry in REGISTRY:
        if entry.default and suffix in entry.suffixes:
            return entry.name
    hint = difflib.get_close_matches(suffix, suffixes, n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise ValueError(
        f"cannot tell the backend for {Path(path).name!r} from its suffix {suffix!r}{suggestion}; expected one of "
        f"{', '.join(suffixes)}"
    )


def open_backend(model: str | os.PathLike[str], *, backend: str = AUTO, device: str | None = None) -> Backend:
    """Open a model file with its suffix's default backend (``backend="auto"``) or with the one named.

    Args:
        model: a model file (``.onnx``, ``.engine`` with its ``.json`` sidecar, OpenVINO ``.xml`` with its ``.bin``,
            ``.pth``, ``.safetensors``), an engine folder (``.ncnn``) or a transformers ``save_pretrained`` folder
            (with ``config.json``).
        backend: ``"auto"`` or a name in ``backend_names()``.
        device: ``"cpu"``, ``"cuda:N"``, or ``None`` for the backend's default (TensorRT ``cuda:0``, others ``cpu``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown backend name or file suffix, or a folder without ``config.json``.
        BackendError / CheckpointError: the backend cannot open the file.
    """
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if path.is_dir() and not (is_model_folder(path) or is_engine_folder(path)):
        raise ValueError(
            f"model must be a file ({', '.join(_suffixes())}) or a transformers model folder with config.json, "
            f"got the folder {path}"
        )
    if check_backend_name(backend) == AUTO:
        try:
            backend = backend_name_for(path)
        except ValueError as exc:
            raise ValueError(f"{exc}, or pass backend= one of {', '.join(backend_names())}") from None
    return backend_class(backend).from_path(path, device=device)
