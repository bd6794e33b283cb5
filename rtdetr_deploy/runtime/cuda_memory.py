"""CUDA device and pinned host memory, one stream and CUDA graphs for the TensorRT backend.

Uses NVIDIA's cuda-python runtime bindings (``cuda.bindings.runtime``, or ``cuda.cudart`` in older releases), which
the ``[trt]`` extra installs. Every call is checked and raises one line
of ``BackendError`` naming the call, the CUDA error and the installed TensorRT / cuda-python pair (a cuda-python
built for a newer CUDA than the driver fails every call, and cuda-python 12.1 raises ``RuntimeError`` instead of
returning an error code when it cannot load the driver). Nothing here imports at module import time.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from ..engine_format import import_cudart, installed_pair, normalize_gpu_name
from ..errors import BackendError

__all__ = ["CudaApi", "load_cuda"]

_LOG = logging.getLogger(__name__)


class CudaApi(Protocol):
    """The few CUDA runtime operations the TensorRT backend needs, on one device.

    Device pointers and stream handles are plain ints (what TensorRT's ``set_tensor_address`` and
    ``execute_async_v3`` take); host buffers are pinned numpy arrays. ``end_capture`` raises when the capture
    failed; ``abort_capture`` then ends it and frees its graph without raising, so the caller can report the
    error that broke the capture.
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
    def abort_capture(self, stream: int) -> None: ...
    def graph_instantiate(self, graph: Any) -> Any: ...
    def graph_launch(self, graph_exec: Any, stream: int) -> None: ...
    def graph_destroy(self, graph: Any, graph_exec: Any = None) -> None: ...


def load_cuda(device_index: int) -> CudaApi:
    """cuda-python's runtime API on ``device_index``.

    Raises:
        BackendError: cuda-python is not installed, or the device cannot be used (the message names the installed
            pair).
    """
    cudart = import_cudart()
    if cudart is None:
        raise BackendError(
            f"the TensorRT backend needs cuda-python (pip install 'rtdetr-deploy[trt]') to manage GPU memory "
            f"({installed_pair()})"
        )
    return _CudaPython(cudart, device_index)


def _one_line(value: Any) -> str:
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())


def _cuda_version(number: int) -> str:
    """``12040`` -> ``"12.4"`` (how the CUDA runtime encodes versions)."""
    return f"{number // 1000}.{number % 1000 // 10}"


class _CudaPython:
    """``CudaApi`` over cuda-python's ``cudart`` (every call returns ``(error, *results)``)."""

    name = "cuda-python"
    supports_graphs = True

    def __init__(self, cudart: Any, device_index: int) -> None:
        self._rt = cudart
        self._success = cudart.cudaError_t.cudaSuccess
        self._device = device_index
        (count,) = self._call("cudaGetDeviceCount")
        if not 0 <= device_index < count:
            raise BackendError(f"no CUDA device cuda:{device_index}; this machine has {count}")
        self._call("cudaSetDevice", device_index)

    def _call(self, fn: str, *args: Any) -> tuple[Any, ...]:
        try:
            err, *results = getattr(self._rt, fn)(*args)
        except RuntimeError as exc:  # cuda-python 12.1 raises this when it cannot load libcuda
            raise BackendError(f"CUDA {fn} failed: {_one_line(exc)} ({installed_pair()})") from None
        if err != self._success:
            raise BackendError(f"CUDA {fn} failed: {self._describe(err)} ({installed_pair()})")
        return tuple(results)

    def _describe(self, err: Any) -> str:
        """``cudaErrorX: its description``, plus both CUDA versions when the driver is too old for this runtime."""
        text = str(getattr(err, "name", err))
        # Best effort: a failure to describe the error must not replace the error being described.
        with contextlib.suppress(Exception):
            code, description = self._rt.cudaGetErrorString(err)
            if code == self._success:
                text += f": {_one_line(description)}"
        if text.startswith("cudaErrorInsufficientDriver"):
            with contextlib.suppress(Exception):
                (_, driver), (_, runtime) = self._rt.cudaDriverGetVersion(), self._rt.cudaRuntimeGetVersion()
                text += (
                    f" (the driver supports CUDA {_cuda_version(driver)}, cuda-python needs {_cuda_version(runtime)})"
                )
        return text

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        # The current device is per host thread; inference may run on another thread than the one that loaded.
        self._call("cudaSetDevice", self._device)
        yield

    def device_info(self) -> tuple[str, tuple[int, int]]:
        (props,) = self._call("cudaGetDeviceProperties", self._device)
        return normalize_gpu_name(props.name), (int(props.major), int(props.minor))

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

    def abort_capture(self, stream: int) -> None:
        """End the stream's capture if one is still open, destroy the graph it yields, clear the error it left.

        Never raises: it runs while another error (the one that broke the capture) is being reported.
        """
        rt = self._rt
        try:
            err, status = rt.cudaStreamIsCapturing(stream)
            if err != self._success or status != rt.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone:
                err, graph = rt.cudaStreamEndCapture(stream)
                # An invalidated capture ends with an error and a NULL graph; a valid one yields a graph to free.
                if err == self._success and graph is not None and int(graph) != 0:
                    rt.cudaGraphDestroy(graph)
            rt.cudaGetLastError()
        except Exception as exc:  # cleanup on an error path: log, and let the original error through
            _LOG.warning("could not end a failed CUDA graph capture cleanly: %s", _one_line(exc))

    def graph_instantiate(self, graph: Any) -> Any:
        return self._call("cudaGraphInstantiate", graph, 0)[0]

    def graph_launch(self, graph_exec: Any, stream: int) -> None:
        self._call("cudaGraphLaunch", graph_exec, stream)

    def graph_destroy(self, graph: Any, graph_exec: Any = None) -> None:
        if graph_exec is not None:
            self._call("cudaGraphExecDestroy", graph_exec)
        if graph is not None:
            self._call("cudaGraphDestroy", graph)
