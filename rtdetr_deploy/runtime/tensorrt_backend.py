"""Native TensorRT backend: a serialized engine plus its ``model.engine.json`` sidecar.

Only the TensorRT >= 10 named-tensor API is used (``num_io_tensors``, ``get_tensor_*``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``). Before deserializing, the sidecar is checked against the installed
TensorRT and the GPU, because an engine only runs on the TensorRT version and GPU model it was built for.
Device buffers are allocated once for the largest batch of the optimisation profile, host buffers are pinned,
and everything runs on one stream.

With ``cuda_graph`` each input shape's inference is captured once as a CUDA graph and replayed. A graph holds
the work enqueued for its context's shapes at capture time, and TensorRT allows no replay after
``set_input_shape`` changed them, so every captured shape gets an execution context (and activation memory) of
its own whose shapes never change. As in trtexec, the stream is synchronised before a capture; a failed capture
is ended, its graph freed, and what TensorRT logged is raised.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..engine_format import (
    EngineSidecar,
    create_trt,
    import_tensorrt,
    make_logger,
    normalize_gpu_name,
    read_sidecar,
)
from ..errors import BackendError
from .backend import BackendBase
from .config import parse_device
from .cuda_memory import CudaApi, load_cuda
from .tensors import TensorSpec

__all__ = ["TrtBackend", "check_engine_compatible"]

logger = logging.getLogger(__name__)


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
    if normalize_gpu_name(sidecar.gpu_name) != normalize_gpu_name(gpu_name):
        raise BackendError(
            f"{engine_path}: built for {sidecar.gpu_name}, but this GPU is {gpu_name}; TensorRT engines are specific "
            f"to the GPU model; {rebuild}"
        )


@dataclass
class _Binding:
    """One I/O tensor: its device buffer and pinned host buffer, both sized for the profile's largest shape."""

    spec: TensorSpec
    is_input: bool
    device: int
    host: np.ndarray


@dataclass
class _Graph:
    """One input shape's CUDA graph, its executable instance, and the context it was captured on (kept as is)."""

    context: Any
    graph: Any
    graph_exec: Any


class TrtBackend(BackendBase):
    """Runs a serialized TensorRT engine (build it with ``TrtBackend.from_path``).

    Owns the runtime, engine, execution contexts, the stream, every buffer and any CUDA graphs; ``close()``
    releases them (``__del__`` only as a fallback).
    """

    name = "tensorrt"

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
        trt_logger: Any,
    ) -> None:
        self._closed = False
        self._trt = trt
        self._cuda = cuda
        self._runtime = runtime
        self._engine = engine
        self._logger = trt_logger
        self._context: Any = None
        self._stream = 0
        self._bindings: dict[str, _Binding] = {}
        self._graphs: dict[tuple[tuple[int, ...], ...], _Graph] = {}
        self._shapes: tuple[tuple[int, ...], ...] | None = None
        self._use_graph = cuda_graph
        # The engine's optimisation profile and precision, not the ONNX's, bound what this backend accepts.
        self.metadata = replace(sidecar.metadata, batch=sidecar.batch, precision=sidecar.precision)
        self.sidecar = sidecar
        self.path = path
        self.device = device
        graph = ", CUDA graphs" if cuda_graph else ""
        self.description = f"TensorRT {trt.__version__} ({cuda.device_info()[0]}, {sidecar.precision}{graph})"
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
            cuda_graph: capture each input shape's inference as a CUDA graph on first use and replay it (each
                captured shape keeps an execution context, and so activation memory, of its own).

        Raises:
            FileNotFoundError: no engine or no sidecar.
            ValueError: a device that is not a GPU.
            BackendError: TensorRT or cuda-python missing, engine built for
                another TensorRT or GPU, or the runtime or deserialization failed.
        """
        path = Path(path)
        kind, index = parse_device(device or "cuda:0")
        if kind != "cuda":
            raise ValueError(
                f"{path}: TensorRT engines run on CUDA GPUs only, not on {device!r}; pass --device cuda:0, or run the "
                ".onnx with onnxruntime on the CPU"
            )
        sidecar = read_sidecar(path)
        trt = import_tensorrt(BackendError)
        cuda = load_cuda(index)
        if cuda_graph and not cuda.supports_graphs:
            raise BackendError(f"CUDA graphs need cuda-python, but {cuda.name} is what is installed here")
        gpu_name, capability = cuda.device_info()
        check_engine_compatible(
            sidecar,
            tensorrt_version=str(trt.__version__),
            gpu_name=gpu_name,
            compute_capability=capability,
            engine_path=path,
        )
        trt_logger = make_logger(trt)
        with cuda.activate():
            runtime = create_trt(trt.Runtime, trt_logger, what="a runtime", logger=trt_logger, error=BackendError)
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            detail = trt_logger.summary(0) or "no message"
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
            trt_logger=trt_logger,
        )

    def _create_context(self) -> Any:
        context = self._engine.create_execution_context()
        if context is None:
            detail = self._logger.summary(-3) or "out of GPU memory?"
            raise BackendError(f"{self.path}: TensorRT could not create an execution context ({detail})")
        return context

    def _bind(self, context: Any) -> None:
        for name, binding in self._bindings.items():
            if not context.set_tensor_address(name, binding.device):
                raise BackendError(f"{self.path}: TensorRT refused the device address of {name!r}")

    def _setup(self) -> None:
        """Create the first context, size every buffer for the profile's largest shapes, bind them."""
        trt, engine, cuda = self._trt, self._engine, self._cuda
        with cuda.activate():
            self._context = self._create_context()
            self._stream = cuda.stream_create()
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            for name in inputs:
                max_shape = tuple(engine.get_tensor_profile_shape(name, 0)[2])
                self._set_input_shape(self._context, name, max_shape)
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
            self._bind(self._context)

    def _set_input_shape(self, context: Any, name: str, shape: tuple[int, ...]) -> None:
        if not context.set_input_shape(name, shape):
            low, _, high = (tuple(s) for s in self._engine.get_tensor_profile_shape(name, 0))
            raise BackendError(
                f"{self.path}: input {name!r} shape {shape} is outside the engine's profile {low}..{high}"
            )

    def _set_input_shapes(self, context: Any, shapes: tuple[tuple[int, ...], ...]) -> None:
        inputs = [name for name, binding in self._bindings.items() if binding.is_input]
        for name, shape in zip(inputs, shapes, strict=True):
            self._set_input_shape(context, name, shape)

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy inputs to the GPU, execute (or replay this shape's graph) on the stream, copy outputs back.

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
            for name, binding in inputs.items():
                array = np.asarray(feed[name])
                if array.size > binding.host.size:
                    raise BackendError(f"{self.path}: input {name!r} of shape {array.shape} exceeds the engine's max")
                view = binding.host[: array.size].reshape(array.shape)
                np.copyto(view, array, casting="same_kind")
                cuda.copy_to_device(binding.device, view, stream)
            context = self._run(shapes)
            results = {}
            for name, binding in self._bindings.items():
                if binding.is_input:
                    continue
                shape = tuple(int(d) for d in context.get_tensor_shape(name))
                view = binding.host[: int(np.prod(shape))].reshape(shape)
                cuda.copy_to_host(view, binding.device, stream)
                results[name] = view
            cuda.stream_sync(stream)
        return {name: view.copy() for name, view in results.items()}

    def _enqueue(self, context: Any) -> None:
        if not context.execute_async_v3(self._stream):
            raise BackendError(
                f"{self.path}: TensorRT execute_async_v3 failed: {self._logger.summary(-3) or 'no message'}"
            )

    def _run(self, shapes: tuple[tuple[int, ...], ...]) -> Any:
        """Enqueue the inference for ``shapes``; returns the context whose output shapes describe it."""
        if not self._use_graph:
            if shapes != self._shapes:
                self._set_input_shapes(self._context, shapes)
                self._shapes = shapes
            self._enqueue(self._context)
            return self._context
        graph = self._graphs.get(shapes)
        if graph is None:
            graph = self._capture(shapes)
            self._graphs[shapes] = graph
        self._cuda.graph_launch(graph.graph_exec, self._stream)
        return graph.context

    def _capture(self, shapes: tuple[tuple[int, ...], ...]) -> _Graph:
        """Capture ``shapes``' inference as a CUDA graph on a context of its own (the first context for the first).

        Raises:
            BackendError: TensorRT or CUDA refused the capture; the message carries what TensorRT logged and the
                CUDA error, the capture is ended and whatever it created is freed.
        """
        cuda, stream = self._cuda, self._stream
        context = self._context if not self._graphs else self._create_context()
        if context is not self._context:
            self._bind(context)
        self._set_input_shapes(context, shapes)
        # The first enqueue after a shape change does setup work that must not be captured, and nothing may be
        # pending on the stream when the capture begins.
        self._enqueue(context)
        cuda.stream_sync(stream)
        logged = len(self._logger.errors)
        graph = None
        cuda.begin_capture(stream)
        try:
            if not context.execute_async_v3(stream):
                raise BackendError("execute_async_v3 returned False while capturing")
            graph = cuda.end_capture(stream)
            return _Graph(context, graph, cuda.graph_instantiate(graph))
        except BaseException as exc:
            cuda.abort_capture(stream)
            if graph is not None:
                try:
                    cuda.graph_destroy(graph)
                except BackendError as cleanup:  # report the capture's error, not the cleanup's
                    logger.warning("%s: could not free a failed CUDA graph: %s", self.path, cleanup)
            if not isinstance(exc, BackendError):
                raise
            detail = "; ".join(filter(None, [self._logger.summary(logged), str(exc)]))
            raise BackendError(
                f"{self.path}: could not capture the inference for input shapes {list(shapes)} as a CUDA graph: "
                f"{detail}; run without cuda_graph"
            ) from None

    def close(self) -> None:
        """Free graphs and their contexts, buffers, the stream, the context and the engine (idempotent)."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        cuda = self._cuda
        with cuda.activate():
            if self._stream:
                cuda.stream_sync(self._stream)
            for graph in self._graphs.values():
                cuda.graph_destroy(graph.graph, graph.graph_exec)
            self._graphs.clear()
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

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: CUDA may already be gone; nothing useful to report
            pass
