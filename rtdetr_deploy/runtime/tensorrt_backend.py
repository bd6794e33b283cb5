"""Native TensorRT backend: a serialized engine plus its ``model.engine.json`` sidecar.

Only the TensorRT >= 10 named-tensor API is used (``num_io_tensors``, ``get_tensor_*``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``). Before deserializing, the sidecar is checked against the installed
TensorRT and the GPU, because an engine only runs on the TensorRT version and GPU model it was built for.
Device buffers are allocated once for the largest batch of the optimisation profile, host buffers are pinned,
and everything runs on one stream; optionally the inference is captured once per batch size as a CUDA graph.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from ..errors import BackendError
from ..metadata import ModelMetadata
from .config import parse_device
from .cuda_memory import CudaApi, load_cuda
from .tensors import TensorSpec

__all__ = ["TrtBackend", "EngineSidecar", "read_sidecar", "check_engine_compatible", "sidecar_path"]

logger = logging.getLogger(__name__)

MIN_TENSORRT_MAJOR = 10


def sidecar_path(engine_path: str | os.PathLike[str]) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


@dataclass(frozen=True)
class EngineSidecar:
    """What the builder recorded beside an engine.

    Attributes:
        metadata: the model's self-description (as in the ONNX file it was built from).
        tensorrt_version: version of the TensorRT that built it, e.g. ``"10.7.0"``.
        gpu_name: name of the GPU it was built on (``None`` when the builder could not tell).
        compute_capability: ``(major, minor)`` of that GPU (``None`` when the builder could not tell).
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        io: tensor name to ``{"dtype": ..., "shape": [...]}`` as built.
        batch: ``(min, opt, max)`` batch of the optimisation profile.
    """

    metadata: ModelMetadata
    tensorrt_version: str
    gpu_name: str | None
    compute_capability: tuple[int, int] | None
    precision: str
    io: dict[str, dict[str, Any]]
    batch: tuple[int, int, int]


def read_sidecar(engine_path: str | os.PathLike[str]) -> EngineSidecar:
    """Read and validate ``<engine>.json``.

    Raises:
        FileNotFoundError: no engine, or no sidecar beside it.
        BackendError: the sidecar is not the builder's JSON.
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise FileNotFoundError(f"engine not found: {engine_path}")
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{engine_path}: its sidecar {path.name} is missing; engines built by rtdetr-export have one beside them"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        trt_info = raw["tensorrt"]
        metadata = ModelMetadata.from_props(raw["metadata"])
        low, opt, high = (int(b) for b in trt_info.get("batch", metadata.batch))
        capability = trt_info["compute_capability"]
        if capability is not None:
            major, minor = (int(v) for v in capability)
            capability = (major, minor)
        gpu_name = trt_info["gpu_name"]
        return EngineSidecar(
            metadata=metadata,
            tensorrt_version=str(trt_info["version"]),
            gpu_name=None if gpu_name is None else str(gpu_name),
            compute_capability=capability,
            precision=str(trt_info.get("precision", metadata.precision)),
            io=dict(trt_info.get("io", {})),
            batch=(low, opt, high),
        )
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BackendError(f"{path}: not a valid engine sidecar ({type(exc).__name__}: {exc})") from None


def check_engine_compatible(
    sidecar: EngineSidecar,
    *,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
    engine_path: str | os.PathLike[str] = "engine",
) -> None:
    """Refuse an engine built by another TensorRT major version or on another GPU.

    Engines are not portable across TensorRT versions (unless built version-compatible) nor across GPU models,
    and deserializing such an engine fails with an obscure message or not at all; this check names both sides.
    A different minor/patch version of the same major is left to the deserializer, which reports the mismatch.

    Raises:
        BackendError: one line naming what the engine was built for and what this machine has.
    """
    rebuild = "rebuild it here with rtdetr-export --trt"
    built_major = sidecar.tensorrt_version.split(".")[0]
    if built_major != tensorrt_version.split(".")[0]:
        raise BackendError(
            f"{engine_path}: built with TensorRT {sidecar.tensorrt_version}, but this is TensorRT {tensorrt_version}; "
            f"{rebuild}"
        )
    if sidecar.compute_capability is None or sidecar.gpu_name is None:
        logger.warning("%s: its sidecar does not name the GPU it was built on; it may not run on this one", engine_path)
        return
    if tuple(sidecar.compute_capability) != tuple(compute_capability):
        built = ".".join(map(str, sidecar.compute_capability))
        here = ".".join(map(str, compute_capability))
        raise BackendError(
            f"{engine_path}: built for {sidecar.gpu_name} (compute capability {built}), but this GPU is {gpu_name} "
            f"(compute capability {here}); {rebuild}"
        )
    if sidecar.gpu_name.strip() != gpu_name.strip():
        raise BackendError(
            f"{engine_path}: built for {sidecar.gpu_name}, but this GPU is {gpu_name}; TensorRT engines are specific "
            f"to the GPU model; {rebuild}"
        )


def _import_tensorrt() -> ModuleType:
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendError(f"the tensorrt backend needs TensorRT: pip install tensorrt ({exc})") from None
    major = int(str(tensorrt.__version__).split(".")[0])
    if major < MIN_TENSORRT_MAJOR:
        raise BackendError(
            f"TensorRT {tensorrt.__version__} is too old: the runtime uses the TensorRT >= {MIN_TENSORRT_MAJOR} "
            "named-tensor API"
        )
    return tensorrt


def _make_logger(trt: ModuleType) -> Any:
    """A TensorRT logger that keeps error messages for our exceptions and forwards warnings to ``logging``."""

    base: Any = trt.ILogger

    class _Logger(base):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
            elif severity == trt.ILogger.Severity.WARNING:
                logger.warning("TensorRT: %s", msg)

    return _Logger()


@dataclass
class _Binding:
    """One I/O tensor: its device buffer and pinned host buffer, both sized for the profile's largest shape."""

    spec: TensorSpec
    is_input: bool
    device: int
    host: np.ndarray


class TrtBackend:
    """Runs a serialized TensorRT engine (build it with ``TrtBackend.from_path``).

    Owns the runtime, engine, execution context, the stream, every buffer and any CUDA graphs; ``close()``
    releases them (``__del__`` only as a fallback).
    """

    def __init__(
        self,
        *,
        trt: ModuleType,
        cuda: CudaApi,
        runtime: Any,
        engine: Any,
        sidecar: EngineSidecar,
        path: Path,
        device: str,
        cuda_graph: bool,
    ) -> None:
        self._closed = False
        self._trt = trt
        self._cuda = cuda
        self._runtime = runtime
        self._engine = engine
        self._context: Any = None
        self._stream = 0
        self._bindings: dict[str, _Binding] = {}
        self._graphs: dict[tuple[tuple[int, ...], ...], tuple[Any, Any]] = {}
        self._shapes: tuple[tuple[int, ...], ...] | None = None
        self._use_graph = cuda_graph
        # The engine's optimisation profile and precision, not the ONNX's, bound what this backend accepts.
        self.metadata = replace(sidecar.metadata, batch=sidecar.batch, precision=sidecar.precision)
        self.sidecar = sidecar
        self.path = path
        self.device = device
        self.description = f"TensorRT {trt.__version__} ({cuda.device_info()[0]}, {sidecar.precision})"
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        self.input_specs = tuple(b.spec for b in self._bindings.values() if b.is_input)
        self.output_specs = tuple(b.spec for b in self._bindings.values() if not b.is_input)

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], *, device: str | None = None, cuda_graph: bool = False
    ) -> TrtBackend:
        """Deserialize ``path`` on ``device`` (``"cuda:N"``, default ``cuda:0``) after checking its sidecar.

        Args:
            path: a ``.engine`` file with ``<path>.json`` beside it.
            device: the GPU to run on.
            cuda_graph: capture each batch size's inference as a CUDA graph on first use and replay it.

        Raises:
            FileNotFoundError: no engine or no sidecar.
            BackendError: TensorRT or cuda-python/pycuda missing, device not a GPU, engine built for another
                TensorRT or GPU, or deserialization failed.
        """
        path = Path(path)
        kind, index = parse_device(device or "cuda:0")
        if kind != "cuda":
            raise BackendError(
                f"{path}: TensorRT engines run on CUDA GPUs only, not on {device!r}; pass --device cuda:0, or run the "
                ".onnx with onnxruntime on the CPU"
            )
        sidecar = read_sidecar(path)
        trt = _import_tensorrt()
        cuda = load_cuda(index)
        gpu_name, capability = cuda.device_info()
        check_engine_compatible(
            sidecar,
            tensorrt_version=str(trt.__version__),
            gpu_name=gpu_name,
            compute_capability=capability,
            engine_path=path,
        )
        trt_logger = _make_logger(trt)
        with cuda.activate():
            runtime = trt.Runtime(trt_logger)
            if runtime is None:
                raise BackendError("TensorRT could not create a runtime: " + "; ".join(trt_logger.errors))
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            detail = "; ".join(trt_logger.errors) or "no message"
            raise BackendError(
                f"{path}: TensorRT {trt.__version__} could not deserialize the engine (built with TensorRT "
                f"{sidecar.tensorrt_version}): {detail}"
            )
        return cls(
            trt=trt,
            cuda=cuda,
            runtime=runtime,
            engine=engine,
            sidecar=sidecar,
            path=path,
            device=f"cuda:{index}",
            cuda_graph=cuda_graph,
        )

    def _setup(self) -> None:
        trt, engine, cuda = self._trt, self._engine, self._cuda
        with cuda.activate():
            self._context = engine.create_execution_context()
            if self._context is None:
                raise BackendError(f"{self.path}: TensorRT could not create an execution context (out of GPU memory?)")
            self._stream = cuda.stream_create()
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            for name in inputs:
                max_shape = tuple(engine.get_tensor_profile_shape(name, 0)[2])
                self._set_input_shape(name, max_shape)
            for name in names:
                is_input = name in inputs
                dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
                declared = tuple(int(d) for d in engine.get_tensor_shape(name))
                max_shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
                if any(d < 0 for d in max_shape):
                    raise BackendError(f"{self.path}: output {name!r} has a data-dependent shape {max_shape}")
                size = int(np.prod(max_shape))
                spec = TensorSpec(name, tuple(d if d >= 0 else None for d in declared), dtype)
                binding = _Binding(spec, is_input, device=cuda.malloc(size * dtype.itemsize), host=np.empty(0))
                self._bindings[name] = binding
                binding.host = cuda.host_empty(size, dtype)
                if not self._context.set_tensor_address(name, binding.device):
                    raise BackendError(f"{self.path}: TensorRT refused the device address of {name!r}")

    def _set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        if not self._context.set_input_shape(name, shape):
            low, _, high = (tuple(s) for s in self._engine.get_tensor_profile_shape(name, 0))
            raise BackendError(
                f"{self.path}: input {name!r} shape {shape} is outside the engine's profile {low}..{high}"
            )

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy inputs to the GPU, execute on the stream, copy outputs back and synchronise.

        Args:
            feed: one array per input; converted to the engine's declared dtype (e.g. int64 -> int32 sizes).

        Returns:
            One array per output, shaped for this batch.
        """
        if self._closed:
            raise BackendError(f"{self.path}: the backend is closed")
        cuda, stream = self._cuda, self._stream
        inputs = {name: b for name, b in self._bindings.items() if b.is_input}
        missing = set(inputs) - set(feed)
        if missing:
            raise BackendError(f"{self.path}: missing inputs {sorted(missing)}")
        shapes = tuple(tuple(np.shape(feed[name])) for name in inputs)
        with cuda.activate():
            if shapes != self._shapes:
                for name, shape in zip(inputs, shapes, strict=True):
                    self._set_input_shape(name, shape)
                self._shapes = shapes
            for name, binding in inputs.items():
                array = np.asarray(feed[name])
                if array.size > binding.host.size:
                    raise BackendError(f"{self.path}: input {name!r} of shape {array.shape} exceeds the engine's max")
                view = binding.host[: array.size].reshape(array.shape)
                np.copyto(view, array, casting="same_kind")
                cuda.copy_to_device(binding.device, view, stream)
            self._execute(shapes)
            results = {}
            for name, binding in self._bindings.items():
                if binding.is_input:
                    continue
                shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
                view = binding.host[: int(np.prod(shape))].reshape(shape)
                cuda.copy_to_host(view, binding.device, stream)
                results[name] = view
            cuda.stream_sync(stream)
        return {name: view.copy() for name, view in results.items()}

    def _execute(self, shapes: tuple[tuple[int, ...], ...]) -> None:
        if not self._use_graph:
            if not self._context.execute_async_v3(self._stream):
                raise BackendError(f"{self.path}: TensorRT execute_async_v3 failed")
            return
        graph = self._graphs.get(shapes)
        if graph is None:
            # The first enqueue after a shape change does setup work that must not be captured.
            if not self._context.execute_async_v3(self._stream):
                raise BackendError(f"{self.path}: TensorRT execute_async_v3 failed")
            self._cuda.begin_capture(self._stream)
            try:
                ok = self._context.execute_async_v3(self._stream)
            finally:
                captured = self._cuda.end_capture(self._stream)
            if not ok:
                raise BackendError(f"{self.path}: TensorRT could not be captured into a CUDA graph; run without it")
            graph = (captured, self._cuda.graph_instantiate(captured))
            self._graphs[shapes] = graph
        self._cuda.graph_launch(graph[1], self._stream)

    def close(self) -> None:
        """Free graphs, buffers, the stream, the context and the engine, in that order (idempotent)."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        cuda = self._cuda
        with cuda.activate():
            for graph, graph_exec in self._graphs.values():
                cuda.graph_destroy(graph, graph_exec)
            self._graphs.clear()
            if self._stream:
                cuda.stream_sync(self._stream)
            for binding in self._bindings.values():
                cuda.free(binding.device)
                if binding.host.size:
                    cuda.host_free(binding.host)
            self._bindings.clear()
            if self._stream:
                cuda.stream_destroy(self._stream)
                self._stream = 0
            self._context = None
            self._engine = None
            self._runtime = None

    def __enter__(self) -> TrtBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: CUDA may already be gone; nothing useful to report
            pass
