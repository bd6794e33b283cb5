"""CUDA device and pinned host memory, one stream and CUDA graphs for the TensorRT backend.

Uses NVIDIA's cuda-python runtime bindings (``cuda.bindings.runtime``, or ``cuda.cudart`` in older releases);
pycuda is accepted when cuda-python is missing (no CUDA graphs then). Every call is checked and raises
``BackendError`` naming the call and the CUDA error. Nothing here imports at module import time.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from ..errors import BackendError

__all__ = ["CudaApi", "load_cuda"]


class CudaApi(Protocol):
    """The few CUDA runtime operations the TensorRT backend needs, on one device.

    Device pointers and stream handles are plain ints (what TensorRT's ``set_tensor_address`` and
    ``execute_async_v3`` take); host buffers are pinned numpy arrays.
    """

    name: str
    supports_graphs: bool

    def activate(self) -> contextlib.AbstractContextManager[None]: ...
    def device_info(self) -> tuple[str, tuple[int, int]]: ...
    def malloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def host_empty(self, size: int, dtype: np.dtype) -> np.ndarray: ...
    def host_free(self, array: np.ndarray) -> None: ...
    def stream_create(self) -> int: ...
    def stream_destroy(self, stream: int) -> None: ...
    def stream_sync(self, stream: int) -> None: ...
    def copy_to_device(self, dst: int, src: np.ndarray, stream: int) -> None: ...
    def copy_to_host(self, dst: np.ndarray, src: int, stream: int) -> None: ...
    def begin_capture(self, stream: int) -> None: ...
    def end_capture(self, stream: int) -> Any: ...
    def graph_instantiate(self, graph: Any) -> Any: ...
    def graph_launch(self, graph_exec: Any, stream: int) -> None: ...
    def graph_destroy(self, graph: Any, graph_exec: Any) -> None: ...


def load_cuda(device_index: int) -> CudaApi:
    """cuda-python's runtime API on ``device_index``, else pycuda's.

    Raises:
        BackendError: neither is installed, or the device cannot be used.
    """
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
    except ImportError:
        cudart = None
    if cudart is not None:
        return _CudaPython(cudart, device_index)
    try:
        import pycuda.driver as pycuda_driver
    except ImportError:
        raise BackendError(
            "the TensorRT backend needs cuda-python (pip install cuda-python) or pycuda to manage GPU memory"
        ) from None
    return _PyCuda(pycuda_driver, device_index)


class _CudaPython:
    """``CudaApi`` over cuda-python's ``cudart`` (every call returns ``(error, *results)``)."""

    name = "cuda-python"
    supports_graphs = True

    def __init__(self, cudart: Any, device_index: int) -> None:
        self._rt = cudart
        self._device = device_index
        (count,) = self._call("cudaGetDeviceCount")
        if not 0 <= device_index < count:
            raise BackendError(f"no CUDA device cuda:{device_index}; this machine has {count}")
        self._call("cudaSetDevice", device_index)

    def _call(self, fn: str, *args: Any) -> tuple[Any, ...]:
        err, *results = getattr(self._rt, fn)(*args)
        if err != self._rt.cudaError_t.cudaSuccess:
            _, name = self._rt.cudaGetErrorName(err)
            raise BackendError(f"CUDA {fn} failed: {name.decode() if isinstance(name, bytes) else name}")
        return tuple(results)

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        # The current device is per host thread; inference may run on another thread than the one that loaded.
        self._call("cudaSetDevice", self._device)
        yield

    def device_info(self) -> tuple[str, tuple[int, int]]:
        (props,) = self._call("cudaGetDeviceProperties", self._device)
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return name.rstrip("\x00").strip(), (int(props.major), int(props.minor))

    def malloc(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", max(int(nbytes), 1))[0])

    def free(self, ptr: int) -> None:
        self._call("cudaFree", ptr)

    def host_empty(self, size: int, dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        ptr = int(self._call("cudaMallocHost", max(size * dtype.itemsize, 1))[0])
        buffer = (ctypes.c_byte * (size * dtype.itemsize)).from_address(ptr)
        return np.frombuffer(memoryview(buffer).cast("B"), dtype=dtype, count=size)

    def host_free(self, array: np.ndarray) -> None:
        self._call("cudaFreeHost", array.ctypes.data)

    def stream_create(self) -> int:
        return int(self._call("cudaStreamCreate")[0])

    def stream_destroy(self, stream: int) -> None:
        self._call("cudaStreamDestroy", stream)

    def stream_sync(self, stream: int) -> None:
        self._call("cudaStreamSynchronize", stream)

    def copy_to_device(self, dst: int, src: np.ndarray, stream: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync", dst, src.ctypes.data, src.nbytes, kind, stream)

    def copy_to_host(self, dst: np.ndarray, src: int, stream: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", dst.ctypes.data, src, dst.nbytes, kind, stream)

    def begin_capture(self, stream: int) -> None:
        self._call("cudaStreamBeginCapture", stream, self._rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)

    def end_capture(self, stream: int) -> Any:
        return self._call("cudaStreamEndCapture", stream)[0]

    def graph_instantiate(self, graph: Any) -> Any:
        return self._call("cudaGraphInstantiate", graph, 0)[0]

    def graph_launch(self, graph_exec: Any, stream: int) -> None:
        self._call("cudaGraphLaunch", graph_exec, stream)

    def graph_destroy(self, graph: Any, graph_exec: Any) -> None:
        self._call("cudaGraphExecDestroy", graph_exec)
        self._call("cudaGraphDestroy", graph)


class _PyCuda:
    """``CudaApi`` over pycuda, on the device's primary context (the one TensorRT's runtime API uses)."""

    name = "pycuda"
    supports_graphs = False

    def __init__(self, driver: Any, device_index: int) -> None:
        self._drv = driver
        try:
            driver.init()
            count = driver.Device.count()
            if not 0 <= device_index < count:
                raise BackendError(f"no CUDA device cuda:{device_index}; this machine has {count}")
            self._dev = driver.Device(device_index)
            self._context = self._dev.retain_primary_context()
        except driver.Error as exc:
            raise BackendError(f"pycuda could not open cuda:{device_index}: {exc}") from None
        self._allocations: dict[int, Any] = {}
        self._streams: dict[int, Any] = {}

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        # pycuda's context stack is per thread: push the primary context for the duration of each call.
        self._context.push()
        try:
            yield
        finally:
            self._drv.Context.pop()

    def _checked(self, what: str, fn: Any, *args: Any) -> Any:
        with self.activate():
            try:
                return fn(*args)
            except self._drv.Error as exc:
                raise BackendError(f"CUDA {what} failed: {exc}") from None

    def device_info(self) -> tuple[str, tuple[int, int]]:
        return str(self._dev.name()), tuple(self._dev.compute_capability())

    def malloc(self, nbytes: int) -> int:
        allocation = self._checked("mem_alloc", self._drv.mem_alloc, max(int(nbytes), 1))
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, ptr: int) -> None:
        allocation = self._allocations.pop(ptr)
        self._checked("free", allocation.free)

    def host_empty(self, size: int, dtype: np.dtype) -> np.ndarray:
        return self._checked("pagelocked_empty", self._drv.pagelocked_empty, (size,), np.dtype(dtype))

    def host_free(self, array: np.ndarray) -> None:
        base = array.base if array.base is not None else array
        free = getattr(base, "free", None)
        if free is not None:
            self._checked("free pinned memory", free)

    def stream_create(self) -> int:
        stream = self._checked("Stream", self._drv.Stream)
        self._streams[int(stream.handle)] = stream
        return int(stream.handle)

    def stream_destroy(self, stream: int) -> None:
        self._streams.pop(stream, None)

    def stream_sync(self, stream: int) -> None:
        self._checked("stream synchronize", self._streams[stream].synchronize)

    def copy_to_device(self, dst: int, src: np.ndarray, stream: int) -> None:
        self._checked("memcpy_htod_async", self._drv.memcpy_htod_async, dst, src, self._streams[stream])

    def copy_to_host(self, dst: np.ndarray, src: int, stream: int) -> None:
        self._checked("memcpy_dtoh_async", self._drv.memcpy_dtoh_async, dst, src, self._streams[stream])

    def _no_graphs(self, *args: Any) -> Any:
        raise BackendError("CUDA graphs need cuda-python (pip install cuda-python); pycuda cannot capture them")

    begin_capture = end_capture = graph_instantiate = graph_launch = graph_destroy = _no_graphs
