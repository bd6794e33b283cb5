"""TensorRT engine builder: a strongly typed network from a precision-decided ONNX, plus a JSON sidecar.

Precision is decided in the ONNX (``precision.convert_fp16``, ``quantize.quantize_int8``), so the builder sets
no precision flags: it creates a strongly typed network, where every tensor keeps the type the ONNX gives it.
That is the only mode TensorRT 11 has (its FP16/INT8 builder flags and calibrators are gone) and an opt-in
mode of TensorRT 10, so one code path serves both. TF32 is switched off unless asked for, so the FP32
islands of an FP16 model compute in FP32 as the ONNX says.

The sidecar ``<engine>.json`` records the ONNX metadata, the TensorRT version, the GPU, the batch range and
the type TensorRT declares for each I/O tensor (an engine may want ``orig_target_sizes`` as int32 or int64;
feeding the other gives all-zero or huge boxes), so the runtime can refuse a mismatched engine and feed
what the engine wants. Everything but ``build_engine`` works without TensorRT.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from ..atomic import atomic_path
from ..contract import check_batch_range
from ..engine_format import (
    create_trt,
    import_cudart,
    import_tensorrt,
    installed_pair,
    make_logger,
    normalize_gpu_name,
    sidecar_dict,
    write_engine,
)
from ..errors import EngineBuildError

__all__ = [
    "build_engine",
    "engine_sidecar",
    "gpu_description",
    "onnx_io",
    "onnx_precision",
    "profile_shapes",
]

_LOG = logging.getLogger(__name__)


def _dims(info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in info.type.tensor_type.shape.dim]


def onnx_io(model: onnx.ModelProto) -> dict[str, dict[str, Any]]:
    """Inputs and outputs of an ONNX graph: ``{name: {"mode", "dtype", "shape"}}``, symbolic dims as strings."""
    initializers = {init.name for init in model.graph.initializer}
    io: dict[str, dict[str, Any]] = {}
    for mode, infos in (("input", model.graph.input), ("output", model.graph.output)):
        for info in infos:
            if info.name in initializers:
                continue
            dtype = onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type).name
            io[info.name] = {"mode": mode, "dtype": dtype, "shape": _dims(info)}
    return io


def profile_shapes(
    model: onnx.ModelProto, batch: tuple[int, int, int]
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """Optimization-profile shapes ``{input: (min, opt, max)}``: the batch range on dim 0, the ONNX's other dims.

    Raises:
        ValueError: a bad batch range, an input whose non-batch dims are not fixed (the input size, e.g.
            ``images`` H and W, comes from the ONNX), or a fixed-batch ONNX asked for another batch.
    """
    low, opt, high = check_batch_range(batch)
    shapes = {}
    for name, spec in onnx_io(model).items():
        if spec["mode"] != "input":
            continue
        dims = spec["shape"]
        if not dims or not all(isinstance(d, int) and d > 0 for d in dims[1:]):
            raise ValueError(f"input {name!r} has shape {dims}: only the batch (first) dimension may be dynamic")
        if isinstance(dims[0], int) and dims[0] > 0 and (low, opt, high) != (dims[0],) * 3:
            raise ValueError(
                f"the ONNX has a fixed batch of {dims[0]} on {name!r}, so the batch range must be "
                f"{dims[0]},{dims[0]},{dims[0]}, got {low},{opt},{high}; export with a dynamic batch instead"
            )
        rest = tuple(dims[1:])
        shapes[name] = ((low, *rest), (opt, *rest), (high, *rest))
    return shapes


def onnx_precision(model: onnx.ModelProto) -> str:
    """``"int8"``, ``"fp16"`` or ``"fp32"``: the metadata's ``precision``, else what the graph holds."""
    props = {p.key: p.value for p in model.metadata_props}
    if props.get("precision") in ("fp32", "fp16", "int8"):
        return props["precision"]
    if any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node):
        return "int8"
    if any(init.data_type == TensorProto.FLOAT16 for init in model.graph.initializer) or any(
        node.op_type == "Cast" and any(a.name == "to" and a.i == TensorProto.FLOAT16 for a in node.attribute)
        for node in model.graph.node
    ):
        return "fp16"
    return "fp32"


def engine_sidecar(
    model: onnx.ModelProto,
    *,
    tensorrt_version: str,
    gpu_name: str | None,
    compute_capability: tuple[int, int] | list[int] | None,
    batch: tuple[int, int, int],
    io: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The JSON sidecar of an engine built from ``model``.

    Args:
        model: the ONNX the engine was built from (its ``metadata_props`` are copied, ``precision`` included).
        tensorrt_version: ``tensorrt.__version__`` of the builder.
        gpu_name: name of the GPU the engine was built on (engines only run on that GPU model).
        compute_capability: ``(major, minor)`` of that GPU.
        batch: ``(min, opt, max)`` batch sizes of the optimization profile.
        io: per I/O tensor, as the engine declares it: ``{"mode", "dtype", "shape"}`` and, for inputs,
            ``"profile": [min, opt, max]`` shapes.

    Returns:
        ``{"metadata": {...}, "tensorrt": {"version", "gpu_name", "compute_capability", "precision",
        "input_size", "batch", "io"}}``.
    """
    images = onnx_io(model).get("images", {}).get("shape", [])
    return sidecar_dict(
        {p.key: p.value for p in model.metadata_props},
        tensorrt_version=tensorrt_version,
        gpu_name=gpu_name,
        compute_capability=compute_capability,
        precision=onnx_precision(model),
        input_size_hw=list(images[2:4]) if len(images) == 4 else None,
        batch=check_batch_range(batch),
        io=io,
    )


def _cudart_description(device: int | None) -> tuple[str | None, tuple[int, int] | None]:
    """``gpu_description`` through cuda-python; ``(None, None)``, with a warning saying why, when it cannot tell."""
    cudart = import_cudart()
    if cudart is None:
        return None, None
    err = success = cudart.cudaError_t.cudaSuccess
    try:
        if device is None:
            err, device = cudart.cudaGetDevice()
        if err == success:
            err, props = cudart.cudaGetDeviceProperties(device)
    except RuntimeError as exc:  # what cuda-python 12.1 raises when it cannot load libcuda
        reason = " ".join(str(exc).split())
    else:
        if err == success:
            return normalize_gpu_name(props.name), (int(props.major), int(props.minor))
        reason = str(getattr(err, "name", err))
    _LOG.warning("cuda-python cannot describe the GPU (%s; %s)", reason, installed_pair())
    return None, None


def gpu_description(device: int | None = None) -> tuple[str | None, tuple[int, int] | None]:
    """Name and compute capability of a CUDA device (the current one by default), via cuda-python or torch.

    Returns:
        ``(name, (major, minor))``, or ``(None, None)`` when neither cuda-python nor torch can see a GPU (a
        cuda-python that fails, e.g. one built for a newer CUDA than the driver, is named in a warning).
    """
    name, capability = _cudart_description(device)
    if name is not None:
        return name, capability
    try:
        import torch
    except ImportError:
        return None, None
    if not torch.cuda.is_available():
        return None, None
    index = torch.cuda.current_device() if device is None else device
    major, minor = torch.cuda.get_device_capability(index)
    return normalize_gpu_name(torch.cuda.get_device_name(index)), (int(major), int(minor))


def _dtype_name(trt: ModuleType, dtype: Any) -> str:
    """A TensorRT ``DataType`` as a numpy-style name (``int32``, ``float16``, ...)."""
    try:
        return np.dtype(trt.nptype(dtype)).name
    except TypeError:  # bfloat16, fp8, int4 have no numpy type
        return str(dtype).rsplit(".", 1)[-1].lower()


def _engine_io(trt: ModuleType, engine: Any) -> dict[str, dict[str, Any]]:
    """The I/O tensors as the built engine declares them (types may differ from the ONNX's)."""
    io = {}
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        spec: dict[str, Any] = {
            "mode": "input" if is_input else "output",
            "dtype": _dtype_name(trt, engine.get_tensor_dtype(name)),
            "shape": list(engine.get_tensor_shape(name)),
        }
        if is_input:
            spec["profile"] = [list(shape) for shape in engine.get_tensor_profile_shape(name, 0)]
        io[name] = spec
    return io


def _checked(value: Any, what: str, logger: Any) -> Any:
    """``value`` unless TensorRT signalled failure with None/False; then ``EngineBuildError`` naming ``what``."""
    if value is None or value is False:
        detail = f": {logger.summary(-1)}" if logger.errors else ""
        raise EngineBuildError(f"TensorRT: {what} failed{detail}")
    return value


def _parse_errors(parser: Any) -> str:
    lines = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        where = error.node_name() or f"node {error.node()}"
        lines.append(f"  {where} ({error.node_operator() or '?'}): {error.desc()} [{error.code()}]")
    return "\n".join(lines)


def _builder_config(
    trt: ModuleType,
    builder: Any,
    logger: Any,
    *,
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]],
    workspace_gib: float,
    allow_tf32: bool,
    cache_path: Path | None,
) -> Any:
    """The ``IBuilderConfig``: workspace limit, TF32 off unless allowed, one profile, the timing cache (read
    from ``cache_path`` when it exists, else empty)."""
    config = _checked(builder.create_builder_config(), "creating the builder config", logger)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if not allow_tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = _checked(builder.create_optimization_profile(), "creating an optimization profile", logger)
    for name, (low, opt, high) in shapes.items():
        profile.set_shape(name, low, opt, high)
    if config.add_optimization_profile(profile) < 0:
        raise EngineBuildError(f"TensorRT rejected the optimization profile {shapes}")
    cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    cache = _checked(config.create_timing_cache(cache_bytes), f"reading the timing cache {cache_path}", logger)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        raise EngineBuildError(
            f"timing cache {cache_path} was made by another TensorRT version or GPU; delete it or pass another file"
        )
    return config


def build_engine(
    onnx_path: str | os.PathLike[str],
    engine_path: str | os.PathLike[str],
    *,
    batch: tuple[int, int, int] = (1, 1, 1),
    workspace_gib: float = 4.0,
    timing_cache: str | os.PathLike[str] | None = None,
    allow_tf32: bool = False,
) -> Path:
    """Build a TensorRT engine from an FP32, FP16 (FP32 islands) or Q/DQ INT8 ONNX as a strongly typed network.

    Writes ``engine_path`` and its sidecar ``engine_path + ".json"`` (see ``engine_sidecar``), each atomically;
    a failed build writes neither.

    Args:
        onnx_path: the ONNX (inputs ``images [N, 3, H, W]``, ``orig_target_sizes [N, 2]``); H and W are fixed.
        engine_path: where to write the serialized engine.
        batch: ``(min, opt, max)`` batch sizes of the optimization profile.
        workspace_gib: builder workspace limit in GiB.
        timing_cache: timing cache file, read when it exists and written back after the build.
        allow_tf32: let FP32 convolutions and matrix products use TF32 (10-bit mantissa) on Ampere and newer.

    Returns:
        ``engine_path`` as a ``Path``.

    Raises:
        FileNotFoundError: ``onnx_path`` does not exist.
        ValueError: a bad batch range or workspace, or an ONNX whose input size is not fixed.
        EngineBuildError: TensorRT is missing or too old, the ONNX does not parse (every parser error listed),
            the timing cache does not match, or the build fails.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    batch = check_batch_range(batch)
    if not workspace_gib > 0:
        raise ValueError(f"workspace must be a positive number of GiB, got {workspace_gib}")
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {onnx_path}")
    model = onnx.load(str(onnx_path), load_external_data=False)
    shapes = profile_shapes(model, batch)
    trt = import_tensorrt(EngineBuildError)

    # TensorRT >= 10 frees builder, network, parser and config when their last reference goes (its context
    # managers are deprecated no-ops), so they live exactly as long as this call.
    logger = make_logger(trt)
    builder = create_trt(
        trt.Builder, logger, what="a builder (is a CUDA GPU visible?)", logger=logger, error=EngineBuildError
    )
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = _checked(builder.create_network(flags), "creating a strongly typed network", logger)
    parser = create_trt(trt.OnnxParser, network, logger, what="the ONNX parser", logger=logger, error=EngineBuildError)
    if not parser.parse_from_file(str(onnx_path)) or parser.num_errors:
        listed = _parse_errors(parser) or f"  {logger.summary() or 'no message'}"
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path} ({parser.num_errors} errors):\n{listed}")

    cache_path = Path(timing_cache) if timing_cache is not None else None
    config = _builder_config(
        trt, builder, logger, shapes=shapes, workspace_gib=workspace_gib, allow_tf32=allow_tf32, cache_path=cache_path
    )
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        detail = logger.summary(-3) or "see the TensorRT log"
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path}: {detail}")
    runtime = create_trt(trt.Runtime, logger, what="a runtime", logger=logger, error=EngineBuildError)
    engine = _checked(runtime.deserialize_cuda_engine(plan), "loading the engine it just built", logger)
    gpu_name, capability = gpu_description()
    sidecar = engine_sidecar(
        model,
        tensorrt_version=trt.__version__,
        gpu_name=gpu_name,
        compute_capability=capability,
        batch=batch,
        io=_engine_io(trt, engine),
    )

    write_engine(engine_path, plan, sidecar)
    if cache_path is not None:
        serialized = _checked(config.get_timing_cache(), "reading back the timing cache", logger).serialize()
        with atomic_path(cache_path) as tmp_cache:
            tmp_cache.write_bytes(memoryview(serialized))
    return engine_path
