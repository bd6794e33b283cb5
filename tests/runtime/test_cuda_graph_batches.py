"""CUDA graphs across batch-size changes (4 -> 1 -> 4).

On the CPU: the TensorRT backend's capture and replay against a stub engine, context and CUDA API that keep the
rules that matter (a graph replays exactly the work captured, with the buffers of that moment; the first
enqueue after ``set_input_shape`` re-plans and reallocates the context's scratch memory, which is not allowed
during a capture). On a GPU: the torch backend's CUDA graphs against eager runs, and (with TensorRT) the engine
with and without CUDA graphs.
"""

from __future__ import annotations

import contextlib
import enum
import importlib.util
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from tensorrt_stubs import ILogger, Severity

from rtdetr_deploy.engine_format import EngineSidecar, make_logger
from rtdetr_deploy.errors import BackendError
from rtdetr_deploy.metadata import ModelMetadata
from rtdetr_deploy.runtime.tensorrt_backend import TrtBackend

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
K = 3  # outputs per image
MAX_BATCH = 4
CAPTURE_FORBIDDEN = (
    "IExecutionContext::enqueueV3: Error Code 1: Cuda Runtime (operation not permitted when stream is capturing)"
)


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.IntEnum):
    FLOAT = 0
    INT32 = 3


STUB_TRT = SimpleNamespace(
    __version__="10.7.0",
    TensorIOMode=TensorIOMode,
    DataType=DataType,
    ILogger=ILogger,
    nptype=lambda t: {DataType.FLOAT: np.float32, DataType.INT32: np.int32}[t],
)
# name -> (mode, dtype, declared shape); batch is dim 0.
IO = {
    "images": (TensorIOMode.INPUT, DataType.FLOAT, (-1, 3, 2, 2)),
    "orig_target_sizes": (TensorIOMode.INPUT, DataType.INT32, (-1, 2)),
    "scores": (TensorIOMode.OUTPUT, DataType.FLOAT, (-1, K)),
}


def reference(images: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """What the stub network computes: ``scores[b, k] = sum(images[b]) * (k + 1) + sizes[b, 0]``."""
    return images.reshape(len(images), -1).sum(1, keepdims=True) * np.arange(1, K + 1) + sizes[:, :1]


class StubCuda:
    """``CudaApi`` on host memory. Work enqueued on the stream runs at once unless a capture is open (then it is
    recorded); a graph launch runs the recorded work. ``events`` lists what happened, in order."""

    name = "cuda-python"
    supports_graphs = True

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}
        self.events: list[tuple[Any, ...]] = []
        self.capture: list[Callable[[], None]] | None = None
        self.graphs: dict[int, list[Callable[[], None]]] = {}
        self.execs: dict[int, list[Callable[[], None]]] = {}
        self.fail_end: str | None = None
        self.fail_instantiate: str | None = None
        self._next = 0

    def _id(self) -> int:
        self._next += 16
        return self._next

    def enqueue(self, op: Callable[[], None]) -> None:
        if self.capture is not None:
            self.capture.append(op)
        else:
            op()

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        yield

    def device_info(self) -> tuple[str, tuple[int, int]]:
        return "NVIDIA H100 80GB HBM3", (9, 0)

    def malloc(self, nbytes: int) -> int:
        ptr = self._id()
        self.memory[ptr] = np.zeros(max(nbytes, 1), np.uint8)
        return ptr

    def free(self, ptr: int) -> None:
        del self.memory[ptr]

    def host_empty(self, size: int, dtype: np.dtype) -> np.ndarray:
        return np.zeros(size, dtype)

    def host_free(self, array: np.ndarray) -> None:
        pass

    def stream_create(self) -> int:
        return 7

    def stream_destroy(self, stream: int) -> None:
        self.events.append(("stream_destroy",))

    def stream_sync(self, stream: int) -> None:
        self.events.append(("sync",))

    def copy_to_device(self, dst: int, src: np.ndarray, stream: int) -> None:
        data = src.reshape(-1).view(np.uint8)
        self.enqueue(lambda: self.memory[dst].__setitem__(slice(0, data.size), data))

    def copy_to_host(self, dst: np.ndarray, src: int, stream: int) -> None:
        out = dst.reshape(-1).view(np.uint8)
        self.enqueue(lambda: out.__setitem__(slice(None), self.memory[src][: out.size]))

    def begin_capture(self, stream: int) -> None:
        self.events.append(("begin",))
        self.capture = []

    def end_capture(self, stream: int) -> int:
        self.events.append(("end",))
        ops, self.capture = self.capture, None
        if self.fail_end:
            raise BackendError(self.fail_end)
        graph = self._id()
        self.graphs[graph] = ops
        return graph

    def abort_capture(self, stream: int) -> None:
        self.events.append(("abort",))
        self.capture = None

    def graph_instantiate(self, graph: int) -> int:
        if self.fail_instantiate:
            raise BackendError(self.fail_instantiate)
        graph_exec = self._id()
        self.execs[graph_exec] = list(self.graphs[graph])
        return graph_exec

    def graph_launch(self, graph_exec: int, stream: int) -> None:
        self.events.append(("launch", graph_exec))
        for op in self.execs[graph_exec]:
            op()

    def graph_destroy(self, graph: int, graph_exec: int | None = None) -> None:
        self.events.append(("destroy", graph, graph_exec))
        del self.graphs[graph]
        if graph_exec is not None:
            del self.execs[graph_exec]


class StubContext:
    """``IExecutionContext`` of the stub engine. The first enqueue after a shape change frees and reallocates the
    context's scratch memory (refused during a capture, as TensorRT refuses such setup work); every enqueue
    computes through that scratch."""

    def __init__(self, engine: StubEngine) -> None:
        self.engine, self.cuda, self.logger = engine, engine.cuda, engine.logger
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.scratch: int | None = None
        self.planned = False
        self.captured = False
        self.reshaped_after_capture: list[tuple[int, ...]] = []
        self.fail_capture = engine.fail_capture

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        if not 1 <= shape[0] <= MAX_BATCH or tuple(shape[1:]) != IO[name][2][1:]:
            return False
        if self.captured:
            self.reshaped_after_capture.append(tuple(shape))
        self.shapes[name], self.planned = tuple(shape), False
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        batch = self.shapes.get("images", (-1,))[0]
        return (batch, *IO[name][2][1:])

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream: int) -> bool:
        capturing = self.cuda.capture is not None
        self.cuda.events.append(("enqueue", id(self), capturing))
        if capturing and (self.fail_capture or not self.planned):
            self.logger.log(Severity.ERROR, CAPTURE_FORBIDDEN)
            return False
        if not self.planned:
            if self.scratch is not None:
                self.cuda.free(self.scratch)
            self.scratch, self.planned = self.cuda.malloc(MAX_BATCH * 4), True
        self.captured |= capturing
        self.cuda.enqueue(self._kernel(self.shapes["images"][0], dict(self.addresses), self.scratch))
        return True

    def _kernel(self, batch: int, addresses: dict[str, int], scratch: int) -> Callable[[], None]:
        memory = self.cuda.memory

        def run() -> None:
            images = memory[addresses["images"]][: batch * 12 * 4].view(np.float32).reshape(batch, -1)
            sizes = memory[addresses["orig_target_sizes"]][: batch * 2 * 4].view(np.int32).reshape(batch, 2)
            sums = memory[scratch][: batch * 4].view(np.float32)  # KeyError if the scratch was freed
            sums[:] = images.sum(1)
            scores = (sums[:, None] * np.arange(1, K + 1, dtype=np.float32) + sizes[:, :1]).astype(np.float32)
            memory[addresses["scores"]][: scores.nbytes] = scores.reshape(-1).view(np.uint8)

        return run


class StubEngine:
    """``ICudaEngine`` with ``images [-1, 3, 2, 2]``, ``orig_target_sizes [-1, 2]`` -> ``scores [-1, 3]``."""

    num_io_tensors = len(IO)

    def __init__(self, cuda: StubCuda, logger: Any, *, fail_capture: bool = False) -> None:
        self.cuda, self.logger, self.fail_capture = cuda, logger, fail_capture
        self.contexts: list[StubContext] = []

    def get_tensor_name(self, index: int) -> str:
        return list(IO)[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return IO[name][0]

    def get_tensor_dtype(self, name: str) -> DataType:
        return IO[name][1]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return IO[name][2]

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
        rest = IO[name][2][1:]
        return [(1, *rest), (2, *rest), (MAX_BATCH, *rest)]

    def create_execution_context(self) -> StubContext:
        self.contexts.append(StubContext(self))
        return self.contexts[-1]


def make_backend(*, cuda_graph: bool = True, fail_capture: bool = False) -> tuple[TrtBackend, StubCuda, StubEngine]:
    cuda = StubCuda()
    logger = make_logger(STUB_TRT)
    engine = StubEngine(cuda, logger, fail_capture=fail_capture)
    metadata = ModelMetadata(preset="tiny", input_size=(2, 2), class_names=("a", "b", "c"), category_ids=(1, 2, 3))
    sidecar = EngineSidecar(metadata, "10.7.0", "NVIDIA H100 80GB HBM3", (9, 0), "fp32", {}, (1, 2, MAX_BATCH))
    backend = TrtBackend(
        trt=STUB_TRT,
        cuda=cuda,
        runtime=object(),
        engine=engine,
        sidecar=sidecar,
        path=Path("stub.engine"),
        device="cuda:0",
        cuda_graph=cuda_graph,
        trt_logger=logger,
    )
    return backend, cuda, engine


def feed(batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.random((batch, 3, 2, 2), dtype=np.float32)
    return {"images": images, "orig_target_sizes": rng.integers(100, 900, (batch, 2)).astype(np.int32)}


def _tensorrt_apis() -> dict[str, Any]:
    """The committed TensorRT API lists (``tools/tensorrt_api/data``)."""
    data = Path(__file__).resolve().parents[2] / "tools" / "tensorrt_api" / "data"
    return {path.stem: json.loads(path.read_text()) for path in sorted(data.glob("tensorrt-*.json"))}


def test_the_stub_is_shaped_like_tensorrt() -> None:
    apis = _tensorrt_apis()
    assert len(apis) >= 5
    for api in apis.values():
        classes = api["classes"]
        for stub, name in ((StubContext, "IExecutionContext"), (StubEngine, "ICudaEngine")):
            methods = {m for m in vars(stub) if not m.startswith("_")}
            assert methods <= set(classes[name]["members"]), (name, methods - set(classes[name]["members"]))
        assert {"INPUT", "OUTPUT"} <= set(classes["TensorIOMode"]["members"])
        assert {"FLOAT", "INT32"} <= set(classes["DataType"]["members"])


def test_the_stub_catches_a_replay_after_a_shape_change() -> None:
    # What the backend used to do: one context, set_input_shape back to 4, replay the batch-4 graph.
    cuda = StubCuda()
    engine = StubEngine(cuda, make_logger(STUB_TRT))
    context = engine.create_execution_context()
    for name in IO:
        context.set_tensor_address(name, cuda.malloc(MAX_BATCH * 12 * 4))
    graphs = {}
    for batch in (4, 1):
        context.set_input_shape("images", (batch, 3, 2, 2))
        context.set_input_shape("orig_target_sizes", (batch, 2))
        assert context.execute_async_v3(7)
        cuda.begin_capture(7)
        assert context.execute_async_v3(7)
        graphs[batch] = cuda.graph_instantiate(cuda.end_capture(7))
    context.set_input_shape("images", (4, 3, 2, 2))
    with pytest.raises(KeyError):  # the batch-4 graph reads scratch memory the batch-1 setup freed
        cuda.graph_launch(graphs[4], 7)


def test_each_batch_size_replays_its_own_graph_on_its_own_context() -> None:
    backend, cuda, engine = make_backend()
    batches = [4, 1, 4, 1, 4]
    for seed, batch in enumerate(batches):
        inputs = feed(batch, seed)
        result = backend.infer(inputs)["scores"]
        np.testing.assert_allclose(result, reference(inputs["images"], inputs["orig_target_sizes"]), rtol=1e-6)
    launches = [event[1] for event in cuda.events if event[0] == "launch"]
    assert len(launches) == len(batches) and [e[0] for e in cuda.events].count("begin") == 2
    assert launches[0] == launches[2] == launches[4] and launches[1] == launches[3] and launches[0] != launches[1]
    assert len(engine.contexts) == 2  # the first context took batch 4, a second one batch 1
    assert all(c.captured and not c.reshaped_after_capture for c in engine.contexts)
    graph_contexts = {shapes[0][0]: graph.context for shapes, graph in backend._graphs.items()}
    assert graph_contexts[4] is engine.contexts[0] and graph_contexts[1] is engine.contexts[1]
    backend.close()


def test_a_capture_follows_a_warm_up_enqueue_and_a_stream_sync() -> None:
    backend, cuda, _ = make_backend()
    for seed, batch in enumerate([4, 1, 4]):
        backend.infer(feed(batch, seed))
    begins = [i for i, event in enumerate(cuda.events) if event == ("begin",)]
    assert len(begins) == 2
    for i in begins:
        warm_up, sync = cuda.events[i - 2], cuda.events[i - 1]
        assert warm_up[0] == "enqueue" and warm_up[2] is False and sync == ("sync",)
        assert cuda.events[i + 1][0] == "enqueue" and cuda.events[i + 1][2] is True
    backend.close()


def test_a_refused_capture_is_ended_and_raises_what_tensorrt_logged() -> None:
    backend, cuda, _ = make_backend(fail_capture=True)
    with pytest.raises(BackendError) as info:
        backend.infer(feed(2, 0))
    message = str(info.value)
    assert message.startswith("stub.engine: could not capture the inference for input shapes [(2, 3, 2, 2), (2, 2)]")
    assert CAPTURE_FORBIDDEN in message and "\n" not in message and "run without cuda_graph" in message
    assert [e[0] for e in cuda.events[-3:]] == ["begin", "enqueue", "abort"]
    assert cuda.capture is None and cuda.graphs == {} and backend._graphs == {}
    backend.close()


def test_an_invalidated_capture_reports_tensorrt_and_cuda_and_leaks_nothing() -> None:
    backend, cuda, engine = make_backend()
    cuda.fail_end = "CUDA cudaStreamEndCapture failed: cudaErrorStreamCaptureInvalidated"
    with pytest.raises(BackendError, match=r"could not capture .*: CUDA cudaStreamEndCapture failed: cudaError"):
        backend.infer(feed(4, 0))
    assert ("abort",) in cuda.events and cuda.graphs == {} and cuda.execs == {}
    cuda.fail_end = None
    inputs = feed(4, 1)  # the next call captures again, on the same first context
    np.testing.assert_allclose(backend.infer(inputs)["scores"], reference(*inputs.values()), rtol=1e-6)
    assert len(engine.contexts) == 1
    backend.close()


def test_a_failed_instantiation_frees_the_graph() -> None:
    backend, cuda, _ = make_backend()
    cuda.fail_instantiate = "CUDA cudaGraphInstantiate failed: cudaErrorMemoryAllocation"
    with pytest.raises(BackendError, match="cudaGraphInstantiate failed"):
        backend.infer(feed(1, 0))
    destroyed = [e for e in cuda.events if e[0] == "destroy"]
    assert len(destroyed) == 1 and destroyed[0][2] is None and cuda.graphs == {}
    backend.close()


def test_without_graphs_the_shape_is_set_only_when_it_changes() -> None:
    backend, cuda, engine = make_backend(cuda_graph=False)
    (context,) = engine.contexts
    shapes = []
    original = context.set_input_shape
    context.set_input_shape = lambda name, shape: shapes.append(shape[0]) or original(name, shape)
    for seed, batch in enumerate([4, 4, 1, 4]):
        inputs = feed(batch, seed)
        np.testing.assert_allclose(backend.infer(inputs)["scores"], reference(*inputs.values()), rtol=1e-6)
    assert shapes == [4, 4, 1, 1, 4, 4]  # two inputs per change: batch 4, then 1, then 4 again
    assert not any(e[0] in ("begin", "launch") for e in cuda.events)
    backend.close()


def test_close_frees_graphs_buffers_and_contexts_once() -> None:
    backend, cuda, engine = make_backend()
    for seed, batch in enumerate([4, 1]):
        backend.infer(feed(batch, seed))
    backend.close()
    assert cuda.graphs == {} and cuda.execs == {} and backend._graphs == {}
    assert set(cuda.memory) == {c.scratch for c in engine.contexts}  # the contexts' own memory is TensorRT's
    backend.close()
    assert [e[0] for e in cuda.events].count("stream_destroy") == 1
    with pytest.raises(BackendError, match="closed"):
        backend.infer(feed(1, 0))


# --- on a GPU -------------------------------------------------------------------------------------------------

BATCHES = (4, 1, 4)


def _batch_feed(batch: int, seed: int, size: tuple[int, int]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "images": rng.random((batch, 3, *size), dtype=np.float32),
        "orig_target_sizes": np.tile(np.array([[640, 480]], dtype=np.int64), (batch, 1)),
    }


def _compare_runs(eager: Any, graphed: Any, size: tuple[int, int], *, atol: float) -> None:
    """Each batch of ``BATCHES`` through both backends: same detections; the second batch of 4 differs from the
    first (fresh inputs), so a stale replay cannot pass."""
    outputs = []
    for seed, batch in enumerate(BATCHES):
        inputs = _batch_feed(batch, seed, size)
        want, got = eager.infer(inputs), graphed.infer(inputs)
        assert got["scores"].shape[0] == batch
        np.testing.assert_array_equal(got["labels"], want["labels"])
        np.testing.assert_allclose(got["scores"], want["scores"], atol=atol)
        np.testing.assert_allclose(got["boxes"], want["boxes"], atol=atol * 640)
        outputs.append(got)
    assert not np.allclose(outputs[0]["scores"], outputs[2]["scores"])


@pytest.mark.gpu
def test_torch_cuda_graphs_follow_batch_changes() -> None:
    torch = pytest.importorskip("torch")
    from helpers import randomize_heads

    from rtdetr_deploy.models import build_model, get_preset
    from rtdetr_deploy.runtime.torch_backend import TorchBackend

    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), num_classes=3)
    randomize_heads(model)
    eager = TorchBackend.from_module(model, device="cuda:0", precision="fp32")
    graphed = TorchBackend.from_module(model, device="cuda:0", precision="fp32", cuda_graph=True)
    _compare_runs(eager, graphed, tuple(eager.metadata.input_size), atol=1e-4)


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not HAVE_TENSORRT, reason="TensorRT is not installed (pip install 'rtdetr-deploy[trt]')")
def test_tensorrt_cuda_graphs_follow_batch_changes(tiny_onnx: Path, tmp_path: Path) -> None:
    from rtdetr_deploy.export.tensorrt import build_engine

    engine = build_engine(tiny_onnx, tmp_path / "tiny.engine", batch=(1, 2, 4))
    with (
        TrtBackend.from_path(engine, device="cuda:0") as eager,
        TrtBackend.from_path(engine, device="cuda:0", cuda_graph=True) as graphed,
    ):
        _compare_runs(eager, graphed, tuple(eager.metadata.input_size), atol=1e-5)
        assert len(graphed._graphs) == 2  # one per batch size, the second 4 replayed
