"""A Triton Inference Server model repository for an exported model (``rtdetr-export ... --triton DIR``).

``write_triton_model(path, DIR)`` takes a published file and writes::

    DIR/<name>/config.pbtxt
    DIR/<name>/1/model.onnx          platform "onnxruntime_onnx"   (an .onnx, fused-preprocessing graphs included)
    DIR/<name>/1/model.plan          platform "tensorrt_plan"      (an .engine; its I/O from the builder's sidecar)
    DIR/<name>/1/model.xml + .bin    backend "openvino"            (an OpenVINO IR; that backend needs the config)

Inputs and outputs, their dtypes and their dims (without the batch axis; ``-1`` where dynamic) are read from the
graph itself (the engine's from the sidecar, where the builder recorded them as the engine declares them), so an
engine's ``int32`` ``orig_target_sizes`` is declared as it is. Triton batches requests along the first axis and
may form a batch of any size from 1 to ``max_batch_size``: the model's batch range must therefore be dynamic and
start at 1; a fixed-batch export is refused. The model's metadata travels in ``parameters`` under ``rtdetr.<key>``
(the ONNX ``metadata_props`` strings), so a client reads names, category ids, input size and preprocessing from the
server (``GET v2/models/<name>/config``).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..artifacts import openvino_weights_path
from ..atomic import atomic_path
from ..engine_format import read_sidecar, sidecar_path
from ..errors import ModelFileError
from ..metadata import ModelMetadata
from ..runtime.onnxruntime_backend import read_onnx_metadata
from ..runtime.openvino_backend import check_ir_files, metadata_of
from .tensorrt import onnx_io

__all__ = [
    "INSTANCE_KINDS",
    "PARAMETER_PREFIX",
    "TritonModel",
    "TritonOptions",
    "TritonTensor",
    "check_servable_batch",
    "preferred_batch_sizes",
    "render_config",
    "served_files",
    "write_triton_model",
    "write_triton_repository",
]

PARAMETER_PREFIX = "rtdetr."
INSTANCE_KINDS = {"auto": "KIND_AUTO", "cpu": "KIND_CPU", "gpu": "KIND_GPU"}
# numpy dtype name -> Triton DataType (model_config.proto).
_TRITON_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "bfloat16": "TYPE_BF16",
}
# Suffix -> (platform, backend, file name in the version folder).
_SERVING = {
    ".onnx": ("onnxruntime_onnx", "", "model.onnx"),
    ".engine": ("tensorrt_plan", "", "model.plan"),
    ".xml": ("", "openvino", "model.xml"),
}


@dataclass(frozen=True)
class TritonOptions:
    """How Triton should run the model.

    Attributes:
        instances: model instances per device (``instance_group.count``), at least 1.
        kind: ``"auto"`` (Triton's choice), ``"cpu"`` or ``"gpu"`` (``instance_group.kind``).
        max_queue_delay_us: how long the dynamic batcher waits for more requests, in microseconds.
    """

    instances: int = 1
    kind: str = "auto"
    max_queue_delay_us: int = 2000

    def __post_init__(self) -> None:
        if isinstance(self.instances, bool) or not isinstance(self.instances, int) or self.instances < 1:
            raise ValueError(f"Triton instances must be a positive integer, got {self.instances!r}")
        if self.kind not in INSTANCE_KINDS:
            raise ValueError(f"unknown Triton instance kind {self.kind!r}; choose from {', '.join(INSTANCE_KINDS)}")
        if isinstance(self.max_queue_delay_us, bool) or self.max_queue_delay_us < 0:
            raise ValueError(f"Triton queue delay must be >= 0 microseconds, got {self.max_queue_delay_us!r}")


@dataclass(frozen=True)
class TritonTensor:
    """One model input or output as Triton declares it.

    Attributes:
        name: tensor name in the graph.
        data_type: Triton ``DataType`` name (``TYPE_FP32``, ``TYPE_INT64``, ...).
        dims: shape without the batch axis, ``-1`` where dynamic (``images`` -> ``(3, H, W)``).
    """

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class TritonModel:
    """One model written into a repository.

    Attributes:
        name: the model's name (its folder under the repository).
        config: ``DIR/<name>/config.pbtxt``.
        files: the model files in ``DIR/<name>/1/``.
        source: the exported file it serves.
        max_batch_size: the model's largest batch.
        inputs: the declared inputs.
        outputs: the declared outputs.
    """

    name: str
    config: Path
    files: tuple[Path, ...]
    source: Path
    max_batch_size: int
    inputs: tuple[TritonTensor, ...]
    outputs: tuple[TritonTensor, ...]


def _tensor(name: str, dtype: str, shape: Iterable[object], *, source: Path) -> TritonTensor:
    if dtype not in _TRITON_TYPES:
        raise ModelFileError(f"{source}: tensor {name!r} has dtype {dtype}, which Triton's config cannot declare")
    dims = [d if isinstance(d, int) and d > 0 else -1 for d in shape]
    if not dims:
        raise ModelFileError(f"{source}: tensor {name!r} has no axis besides the batch; Triton needs at least one")
    return TritonTensor(name=name, data_type=_TRITON_TYPES[dtype], dims=tuple(dims))


def _onnx_io(path: Path) -> tuple[ModelMetadata, list[TritonTensor], list[TritonTensor], list[int]]:
    metadata = read_onnx_metadata(path)
    io = onnx_io(onnx.load(str(path), load_external_data=False))
    return metadata, *_split(io, path)


def _engine_io(path: Path) -> tuple[ModelMetadata, list[TritonTensor], list[TritonTensor], list[int]]:
    sidecar = read_sidecar(path)
    if not sidecar.io:
        raise ModelFileError(f"{sidecar_path(path)} records no I/O tensors; rebuild the engine with rtdetr-export")
    return dataclasses.replace(sidecar.metadata, batch=sidecar.batch), *_split(sidecar.io, path)


def _openvino_io(path: Path) -> tuple[ModelMetadata, list[TritonTensor], list[TritonTensor], list[int]]:
    import openvino

    path = check_ir_files(path)
    model = openvino.Core().read_model(str(path))
    metadata = metadata_of(model, path)
    io: dict[str, dict[str, object]] = {}
    for mode, ports in (("input", model.inputs), ("output", model.outputs)):
        for port in ports:
            shape = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
            dtype = np.dtype(port.get_element_type().to_dtype()).name
            io[port.get_any_name()] = {"mode": mode, "dtype": dtype, "shape": shape}
    return metadata, *_split(io, path)


def _split(io: dict[str, dict], source: Path) -> tuple[list[TritonTensor], list[TritonTensor], list[int]]:
    """Inputs and outputs without their batch axis, and the batch dims of every tensor (-1 where dynamic)."""
    inputs, outputs, batch_dims = [], [], []
    for name, spec in io.items():
        shape = list(spec["shape"])
        if not shape:
            raise ModelFileError(f"{source}: tensor {name!r} is a scalar; RT-DETR's tensors have a batch axis")
        batch_dims.append(shape[0] if isinstance(shape[0], int) and shape[0] > 0 else -1)
        tensor = _tensor(name, str(spec["dtype"]), shape[1:], source=source)
        (inputs if spec["mode"] == "input" else outputs).append(tensor)
    return inputs, outputs, batch_dims


def check_servable_batch(batch: tuple[int, int, int], what: str) -> None:
    """Raise ``ValueError`` (one line) unless Triton can drive the batch range: dynamic, and starting at 1."""
    low, _, high = batch
    if low == high:
        raise ValueError(
            f"{what} has a fixed batch of {high}; Triton batches requests along the first axis: "
            "export with --dynamic-batch 1,OPT,MAX"
        )
    if low != 1:
        raise ValueError(
            f"{what} accepts batches from {low}, but Triton sends batches of any size from 1: "
            f"export with --dynamic-batch 1,OPT,{high}"
        )


def _check_batch(metadata: ModelMetadata, batch_dims: list[int], source: Path) -> None:
    fixed = sorted({d for d in batch_dims if d > 0})
    if fixed:
        check_servable_batch((fixed[0],) * 3, source.name)
    check_servable_batch(metadata.batch, source.name)


def _quote(text: str) -> str:
    """A protobuf text-format string literal (UTF-8 kept as is; backslash, quote and control characters escaped)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + escaped.replace("\t", "\\t") + '"'


def _tensor_block(kind: str, tensors: Iterable[TritonTensor]) -> list[str]:
    lines = [f"{kind} ["]
    blocks = [
        f"  {{ name: {_quote(t.name)} data_type: {t.data_type} dims: [ {', '.join(str(d) for d in t.dims)} ] }}"
        for t in tensors
    ]
    lines.append(",\n".join(blocks))
    lines.append("]")
    return lines


def preferred_batch_sizes(batch: tuple[int, int, int]) -> list[int]:
    """The dynamic batcher's preferred sizes: the export's optimum and its maximum (both in ``[1, max]``)."""
    _, opt, high = batch
    return sorted({opt, high} - {1}) or [high]


def render_config(
    name: str,
    *,
    suffix: str,
    metadata: ModelMetadata,
    inputs: Iterable[TritonTensor],
    outputs: Iterable[TritonTensor],
    options: TritonOptions,
) -> str:
    """The text of ``config.pbtxt`` (protobuf text format of Triton's ``ModelConfig``)."""
    platform, backend, filename = _SERVING[suffix]
    lines = [f"name: {_quote(name)}"]
    lines.append(f"platform: {_quote(platform)}" if platform else f"backend: {_quote(backend)}")
    lines += [f"default_model_filename: {_quote(filename)}", f"max_batch_size: {metadata.batch[2]}"]
    lines += _tensor_block("input", inputs) + _tensor_block("output", outputs)
    sizes = ", ".join(str(s) for s in preferred_batch_sizes(metadata.batch))
    lines += [
        "dynamic_batching {",
        f"  preferred_batch_size: [ {sizes} ]",
        f"  max_queue_delay_microseconds: {options.max_queue_delay_us}",
        "}",
        f"instance_group [ {{ count: {options.instances} kind: {_instance_kind(options.kind, backend)} }} ]",
    ]
    params = {f"{PARAMETER_PREFIX}{key}": value for key, value in metadata.to_props().items()}
    if backend == "openvino" and metadata.precision == "bf16":
        # The backend's one precision key: a BF16 IR runs in bf16, as the runtime runs it.
        params["HINT_BF16"] = "YES"
    for key, value in params.items():
        lines.append(f"parameters {{ key: {_quote(key)} value {{ string_value: {_quote(value)} }} }}")
    return "\n".join(lines) + "\n"


def _instance_kind(kind: str, backend: str) -> str:
    """Triton's instance kind; Triton's OpenVINO backend runs on the CPU only (it refuses any other kind)."""
    if backend != "openvino":
        return INSTANCE_KINDS[kind]
    if kind == "gpu":
        raise ValueError("Triton's openvino backend runs on the CPU only; use --triton-kind cpu or auto for an IR")
    return INSTANCE_KINDS["cpu"]


def _model_name(path: Path) -> str:
    """``best.fp16.engine`` -> ``best_fp16_engine``: Triton names are folder names; keep them plain."""
    stem = path.name.replace(".", "_").replace("-", "_")
    return "".join(c if c.isalnum() or c == "_" else "_" for c in stem)


def _copy(source: Path, target: Path) -> Path:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


def write_triton_model(
    path: str | Path, repository: str | Path, *, name: str | None = None, options: TritonOptions | None = None
) -> TritonModel:
    """Write ``repository/<name>/config.pbtxt`` and ``repository/<name>/1/model.*`` for the exported ``path``.

    Args:
        path: an exported ``.onnx`` (a fused-preprocessing graph serves raw ``frames``), ``.engine`` (with its
            ``.json`` sidecar) or OpenVINO ``.xml`` (with its ``.bin``).
        repository: the model repository folder (created if needed; other models in it are left alone).
        name: the model's name in the repository (default: the file name with ``.`` and ``-`` as ``_``).
        options: instances, instance kind and queue delay (default ``TritonOptions()``).

    Raises:
        FileNotFoundError: no such file (or no sidecar / ``.bin`` beside it).
        ValueError: an unsupported suffix, a model without our metadata, or a batch Triton cannot drive (fixed,
            or not starting at 1).
        ModelFileError: a tensor type Triton cannot declare, or an engine sidecar without I/O.
    """
    source, options = Path(path), options or TritonOptions()
    suffix = source.suffix.lower()
    readers = {".onnx": _onnx_io, ".engine": _engine_io, ".xml": _openvino_io}
    if suffix not in readers:
        raise ValueError(f"Triton serves .onnx, .engine or OpenVINO .xml files, got {source.name!r}")
    if not source.is_file():
        raise FileNotFoundError(f"model not found: {source}")
    metadata, inputs, outputs, batch_dims = readers[suffix](source)
    _check_batch(metadata, batch_dims, source)
    name = name or _model_name(source)
    folder = Path(repository) / name
    text = render_config(name, suffix=suffix, metadata=metadata, inputs=inputs, outputs=outputs, options=options)
    filename = _SERVING[suffix][2]
    files = [_copy(source, folder / "1" / filename)]
    if suffix == ".xml":
        files.append(_copy(openvino_weights_path(source), folder / "1" / "model.bin"))
    config = folder / "config.pbtxt"
    with atomic_path(config) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return TritonModel(
        name=name,
        config=config,
        files=tuple(files),
        source=source,
        max_batch_size=metadata.batch[2],
        inputs=tuple(inputs),
        outputs=tuple(outputs),
    )


def served_files(published: Iterable[Path]) -> list[Path]:
    """The files of an export that Triton serves: every ``.engine`` and OpenVINO ``.xml``, and every ONNX graph,
    its fused-preprocessing graph in its place when the export wrote one (clients then send raw frames)."""
    published = [Path(p) for p in published]
    names = {p.name for p in published}
    served = []
    for path in published:
        suffix = path.suffix.lower()
        if suffix == ".onnx" and not path.name.endswith((".fused.onnx", ".unsimplified.onnx")):
            fused = f"{path.stem}.fused.onnx"
            served.append(path.with_name(fused) if fused in names else path)
        elif suffix in (".engine", ".xml"):
            served.append(path)
    return served


def write_triton_repository(
    published: Iterable[Path], repository: str | Path, *, options: TritonOptions | None = None
) -> list[TritonModel]:
    """One model per served file of an export (``served_files``), all in ``repository``."""
    return [write_triton_model(path, repository, options=options) for path in served_files(published)]
