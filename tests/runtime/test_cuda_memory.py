"""The cuda-python memory layer of the TensorRT backend, on a stub ``cudart`` shaped like cuda-python's: every call
returns ``(cudaError_t, *results)``, and its signatures are checked against the committed lists of every
supported cuda-python release (``tools/tensorrt_api/data``; the conformance of our own calls is tested in
``tests/test_engine_format.py``)."""

from __future__ import annotations

import ctypes
import enum
import inspect
import logging
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tensorrt_stubs import fake_distributions, load_conformance

from rtdetr_deploy.errors import BackendError
from rtdetr_deploy.runtime import cuda_memory
from rtdetr_deploy.runtime.cuda_memory import _CudaPython, load_cuda

ROOT = Path(__file__).resolve().parents[2]
PAIR_12 = {"tensorrt-cu12": "10.7.0", "cuda-python": "12.1.0"}


conformance = load_conformance()
CUDA_APIS = conformance.load("cuda-*.json")


class cudaError_t(enum.IntEnum):  # noqa: N801 - cuda-python's names; values from driver_types.h
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorStreamCaptureInvalidated = 901


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class cudaStreamCaptureMode(enum.IntEnum):  # noqa: N801
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1


class cudaStreamCaptureStatus(enum.IntEnum):  # noqa: N801
    cudaStreamCaptureStatusNone = 0
    cudaStreamCaptureStatusActive = 1
    cudaStreamCaptureStatusInvalidated = 2


DESCRIPTIONS = {
    cudaError_t.cudaErrorMemoryAllocation: b"out of memory",
    cudaError_t.cudaErrorInsufficientDriver: b"CUDA driver version is insufficient for CUDA runtime version",
    cudaError_t.cudaErrorStreamCaptureInvalidated: b"operation failed due to a previous error during capture",
}


class Handle:
    """An opaque cuda-python handle (``cudaStream_t``, ``cudaGraph_t``, ...): ``int()`` gives the address."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value


class StubCudart:
    """cuda-python's ``cudart`` on a pretend device whose memory is host memory.

    Async copies run at once, except while their stream captures: then they are recorded into the graph, and a
    graph launch runs them. ``fail[name] = error`` makes a call return that error; ``raises`` makes every call
    raise it (cuda-python 12.1 without libcuda).
    """

    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind
    cudaStreamCaptureMode = cudaStreamCaptureMode
    cudaStreamCaptureStatus = cudaStreamCaptureStatus

    def __init__(self, *, devices: int = 1, driver: int = 12080, runtime: int = 12080) -> None:
        self.devices, self.driver, self.runtime = devices, driver, runtime
        self.fail: dict[str, cudaError_t] = {}
        self.raises: Exception | None = None
        self.buffers: dict[int, Any] = {}
        self.capturing: dict[int, list[Any]] = {}
        self.invalidated: set[int] = set()
        self.graphs: dict[int, list[Any]] = {}
        self.execs: dict[int, list[Any]] = {}
        self.calls: list[str] = []
        self.last_error = cudaError_t.cudaSuccess
        self._next = 0x1000

    def _enter(self, name: str) -> cudaError_t:
        self.calls.append(name)
        if self.raises is not None:
            raise self.raises
        return self.fail.get(name, cudaError_t.cudaSuccess)

    def _handle(self) -> Handle:
        self._next += 0x100
        return Handle(self._next)

    def cudaGetDeviceCount(self) -> tuple[Any, ...]:
        return self._enter("cudaGetDeviceCount"), self.devices

    def cudaSetDevice(self, device: int) -> tuple[Any, ...]:
        return (self._enter("cudaSetDevice"),)

    def cudaGetDeviceProperties(self, device: int) -> tuple[Any, ...]:
        props = types.SimpleNamespace(name=b"NVIDIA H100 80GB HBM3" + b"\x00" * 235, major=9, minor=0)
        return self._enter("cudaGetDeviceProperties"), props

    def cudaGetErrorString(self, error: cudaError_t) -> tuple[Any, ...]:
        return self._enter("cudaGetErrorString"), DESCRIPTIONS.get(error, b"unknown error")

    def cudaDriverGetVersion(self) -> tuple[Any, ...]:
        return self._enter("cudaDriverGetVersion"), self.driver

    def cudaRuntimeGetVersion(self) -> tuple[Any, ...]:
        return self._enter("cudaRuntimeGetVersion"), self.runtime

    def cudaGetLastError(self) -> tuple[Any, ...]:
        self._enter("cudaGetLastError")
        error, self.last_error = self.last_error, cudaError_t.cudaSuccess
        return (error,)

    def _alloc(self, name: str, size: int) -> tuple[Any, ...]:
        err = self._enter(name)
        if err != cudaError_t.cudaSuccess:
            return err, 0
        buffer = ctypes.create_string_buffer(size)
        self.buffers[ctypes.addressof(buffer)] = buffer
        return err, ctypes.addressof(buffer)

    def cudaMalloc(self, size: int) -> tuple[Any, ...]:
        return self._alloc("cudaMalloc", size)

    def cudaMallocHost(self, size: int) -> tuple[Any, ...]:
        return self._alloc("cudaMallocHost", size)

    def cudaFree(self, ptr: int) -> tuple[Any, ...]:
        del self.buffers[ptr]
        return (self._enter("cudaFree"),)

    def cudaFreeHost(self, ptr: int) -> tuple[Any, ...]:
        del self.buffers[ptr]
        return (self._enter("cudaFreeHost"),)

    def cudaStreamCreate(self) -> tuple[Any, ...]:
        return self._enter("cudaStreamCreate"), self._handle()

    def cudaStreamDestroy(self, stream: Any) -> tuple[Any, ...]:
        return (self._enter("cudaStreamDestroy"),)

    def cudaStreamSynchronize(self, stream: Any) -> tuple[Any, ...]:
        return (self._enter("cudaStreamSynchronize"),)

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: cudaMemcpyKind, stream: Any) -> tuple[Any, ...]:
        err = self._enter("cudaMemcpyAsync")
        op = (ctypes.memmove, int(dst), int(src), int(count))
        if int(stream) in self.capturing:
            self.capturing[int(stream)].append(op)
        elif err == cudaError_t.cudaSuccess:
            op[0](*op[1:])
        return (err,)

    def cudaStreamBeginCapture(self, stream: Any, mode: cudaStreamCaptureMode) -> tuple[Any, ...]:
        self.capturing[int(stream)] = []
        return (self._enter("cudaStreamBeginCapture"),)

    def cudaStreamIsCapturing(self, stream: Any) -> tuple[Any, ...]:
        err = self._enter("cudaStreamIsCapturing")
        if int(stream) in self.invalidated:
            return err, cudaStreamCaptureStatus.cudaStreamCaptureStatusInvalidated
        active = int(stream) in self.capturing
        return err, cudaStreamCaptureStatus(int(active))

    def cudaStreamEndCapture(self, stream: Any) -> tuple[Any, ...]:
        err = self._enter("cudaStreamEndCapture")
        ops = self.capturing.pop(int(stream))
        if int(stream) in self.invalidated:
            self.invalidated.discard(int(stream))
            self.last_error = cudaError_t.cudaErrorStreamCaptureInvalidated
            return cudaError_t.cudaErrorStreamCaptureInvalidated, None
        graph = self._handle()
        self.graphs[int(graph)] = ops
        return err, graph

    def cudaGraphInstantiate(self, graph: Any, flags: int) -> tuple[Any, ...]:
        err = self._enter("cudaGraphInstantiate")
        if err != cudaError_t.cudaSuccess:
            return err, None
        graph_exec = self._handle()
        self.execs[int(graph_exec)] = list(self.graphs[int(graph)])
        return err, graph_exec

    def cudaGraphLaunch(self, graph_exec: Any, stream: Any) -> tuple[Any, ...]:
        for fn, *args in self.execs[int(graph_exec)]:
            fn(*args)
        return (self._enter("cudaGraphLaunch"),)

    def cudaGraphExecDestroy(self, graph_exec: Any) -> tuple[Any, ...]:
        del self.execs[int(graph_exec)]
        return (self._enter("cudaGraphExecDestroy"),)

    def cudaGraphDestroy(self, graph: Any) -> tuple[Any, ...]:
        del self.graphs[int(graph)]
        return (self._enter("cudaGraphDestroy"),)


def _stub_functions() -> dict[str, int]:
    stub = StubCudart()
    return {
        name: len(inspect.signature(getattr(stub, name)).parameters)
        for name in dir(StubCudart)
        if name.startswith("cuda") and inspect.isfunction(getattr(StubCudart, name))
    }


@pytest.mark.parametrize("release", sorted(CUDA_APIS))
def test_the_stub_is_shaped_like_cuda_python(release: str) -> None:
    module = conformance.runtime_module(CUDA_APIS[release])
    for name, count in _stub_functions().items():
        required, total = module["functions"][name]
        assert required <= count <= total, (name, count, (required, total))
    for enum_class in (cudaError_t, cudaMemcpyKind, cudaStreamCaptureMode, cudaStreamCaptureStatus):
        assert {m.name for m in enum_class} <= set(module["enums"][enum_class.__name__])
    assert {"name", "major", "minor"} <= set(module["structs"]["cudaDeviceProp"])


def test_device_info_memory_round_trip_and_release() -> None:
    rt = StubCudart()
    cuda = _CudaPython(rt, 0)
    assert cuda.device_info() == ("NVIDIA H100 80GB HBM3", (9, 0))
    with cuda.activate():
        stream = cuda.stream_create()
        host_in = cuda.host_empty(64, np.dtype(np.float32))
        host_out = cuda.host_empty(64, np.dtype(np.float32))
        device = cuda.malloc(host_in.nbytes)
        host_in[:] = np.arange(64, dtype=np.float32) * 0.5
        cuda.copy_to_device(device, host_in, stream)
        cuda.copy_to_host(host_out, device, stream)
        cuda.stream_sync(stream)
        np.testing.assert_array_equal(host_out, np.arange(64, dtype=np.float32) * 0.5)
        for array in (host_in, host_out):
            cuda.host_free(array)
        cuda.free(device)
        cuda.stream_destroy(stream)
    assert rt.buffers == {}


def test_a_device_that_is_not_there() -> None:
    with pytest.raises(BackendError, match=r"^no CUDA device cuda:2; this machine has 1$"):
        _CudaPython(StubCudart(devices=1), 2)


def test_dlopen_failure_is_one_line_naming_the_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distributions(monkeypatch, PAIR_12)
    rt = StubCudart()
    rt.raises = RuntimeError("Failed to dlopen libcuda.so")
    monkeypatch.setattr(cuda_memory, "import_cudart", lambda: rt)
    with pytest.raises(BackendError) as info:
        load_cuda(0)
    assert str(info.value) == (
        "CUDA cudaGetDeviceCount failed: Failed to dlopen libcuda.so (installed: tensorrt-cu12 10.7.0, "
        "cuda-python 12.1.0)"
    )


def test_a_too_old_driver_names_both_cuda_versions_and_the_mismatched_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distributions(monkeypatch, {"tensorrt-cu12": "10.7.0", "cuda-python": "13.0.1", "cuda-bindings": "13.0.1"})
    rt = StubCudart(driver=12040, runtime=13000)
    rt.fail["cudaGetDeviceCount"] = cudaError_t.cudaErrorInsufficientDriver
    with pytest.raises(BackendError) as info:
        _CudaPython(rt, 0)
    assert str(info.value) == (
        "CUDA cudaGetDeviceCount failed: cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA "
        "runtime version (the driver supports CUDA 12.4, cuda-python needs 13.0) (installed: tensorrt-cu12 10.7.0, "
        "cuda-python 13.0.1, cuda-bindings 13.0.1; tensorrt-cu12 pairs with cuda-python 12.x: pip install "
        "'rtdetr-deploy[trt-cu12]')"
    )


def test_an_error_code_names_the_call_even_when_its_description_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distributions(monkeypatch, PAIR_12)
    rt = StubCudart()
    cuda = _CudaPython(rt, 0)
    rt.fail["cudaMalloc"] = cudaError_t.cudaErrorMemoryAllocation
    with pytest.raises(BackendError) as info:
        cuda.malloc(1 << 40)
    expected = "CUDA cudaMalloc failed: cudaErrorMemoryAllocation: out of memory (installed: tensorrt-cu12 10.7.0, "
    assert str(info.value) == expected + "cuda-python 12.1.0)"
    rt.fail["cudaGetErrorString"] = cudaError_t.cudaErrorInsufficientDriver
    with pytest.raises(BackendError, match=r"^CUDA cudaMalloc failed: cudaErrorMemoryAllocation \(installed: "):
        cuda.malloc(1 << 40)


def test_a_captured_graph_replays_what_was_captured() -> None:
    rt = StubCudart()
    cuda = _CudaPython(rt, 0)
    stream = cuda.stream_create()
    host = cuda.host_empty(8, np.dtype(np.int32))
    device = cuda.malloc(host.nbytes)
    host[:] = 7
    cuda.begin_capture(stream)
    cuda.copy_to_device(device, host, stream)
    graph = cuda.end_capture(stream)
    graph_exec = cuda.graph_instantiate(graph)
    host[:] = 3
    back = cuda.host_empty(8, np.dtype(np.int32))
    cuda.copy_to_host(back, device, stream)
    assert back.tolist() == [0] * 8  # captured, not run
    cuda.graph_launch(graph_exec, stream)
    cuda.copy_to_host(back, device, stream)
    assert back.tolist() == [3] * 8  # the replay reads the host buffer as it is now
    cuda.graph_destroy(graph, graph_exec)
    assert rt.graphs == {} and rt.execs == {}


def test_abort_ends_an_open_capture_and_frees_its_graph() -> None:
    rt = StubCudart()
    cuda = _CudaPython(rt, 0)
    stream = cuda.stream_create()
    cuda.begin_capture(stream)
    cuda.abort_capture(stream)
    assert int(stream) not in rt.capturing and rt.graphs == {}
    assert rt.calls[-3:] == ["cudaStreamEndCapture", "cudaGraphDestroy", "cudaGetLastError"]
    rt.calls.clear()
    cuda.abort_capture(stream)  # nothing open: only the last error is cleared
    assert rt.calls == ["cudaStreamIsCapturing", "cudaGetLastError"]


def test_an_invalidated_capture_raises_its_error_and_abort_clears_it(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distributions(monkeypatch, PAIR_12)
    rt = StubCudart()
    cuda = _CudaPython(rt, 0)
    stream = cuda.stream_create()
    cuda.begin_capture(stream)
    rt.invalidated.add(int(stream))
    with pytest.raises(BackendError, match=r"^CUDA cudaStreamEndCapture failed: cudaErrorStreamCaptureInvalidated: "):
        cuda.end_capture(stream)
    cuda.abort_capture(stream)
    assert rt.graphs == {} and rt.last_error == cudaError_t.cudaSuccess


def test_abort_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    rt = StubCudart()
    cuda = _CudaPython(rt, 0)
    stream = cuda.stream_create()
    rt.raises = RuntimeError("Failed to dlopen libcuda.so")
    with caplog.at_level(logging.WARNING):
        cuda.abort_capture(stream)
    assert "could not end a failed CUDA graph capture cleanly: Failed to dlopen libcuda.so" in caplog.text


def test_without_cuda_python(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distributions(monkeypatch, {"tensorrt-cu12": "10.7.0"})
    monkeypatch.setattr(cuda_memory, "import_cudart", lambda: None)
    with pytest.raises(
        BackendError, match=r"needs cuda-python .* \(installed: tensorrt-cu12 10\.7\.0, no cuda-python\)"
    ):
        load_cuda(0)
