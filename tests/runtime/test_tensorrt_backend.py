"""TensorRT backend: sidecar checks run everywhere; engine tests need TensorRT and a GPU and skip otherwise."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tensorrt_stubs import NULLPTR, ILogger, Severity, fake_distributions

from rtdetr_deploy.engine_format import EngineSidecar, read_sidecar, sidecar_path
from rtdetr_deploy.errors import BackendError
from rtdetr_deploy.metadata import ModelMetadata
from rtdetr_deploy.runtime.tensorrt_backend import TrtBackend, check_engine_compatible

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAVE_CUDA_PYTHON = importlib.util.find_spec("cuda") is not None
NO_TENSORRT = "TensorRT is not installed (pip install 'rtdetr-deploy[trt]' on a machine with an NVIDIA GPU)"
METADATA = ModelMetadata(preset="tiny", input_size=(320, 320), class_names=("a", "b"), category_ids=(1, 2))


def _write_sidecar(engine: Path, **tensorrt: object) -> Path:
    info = {
        "version": "10.7.0",
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "compute_capability": [9, 0],
        "precision": "fp16",
        "io": {"orig_target_sizes": {"dtype": "int32", "shape": [-1, 2]}},
        "batch": [1, 2, 4],
        **tensorrt,
    }
    engine.write_bytes(b"engine bytes are opaque here")
    sidecar_path(engine).write_text(json.dumps({"metadata": METADATA.to_props(), "tensorrt": info}))
    return engine


def test_sidecar_is_read(tmp_path: Path) -> None:
    engine = _write_sidecar(tmp_path / "model.engine")
    sidecar = read_sidecar(engine)
    assert sidecar.metadata == METADATA
    assert (sidecar.tensorrt_version, sidecar.compute_capability, sidecar.batch) == ("10.7.0", (9, 0), (1, 2, 4))
    assert sidecar.io["orig_target_sizes"]["dtype"] == "int32"
    assert sidecar_path(engine).name == "model.engine.json"


def test_missing_or_broken_sidecar(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    with pytest.raises(FileNotFoundError, match="engine not found"):
        read_sidecar(engine)
    engine.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="model.engine.json is missing"):
        read_sidecar(engine)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(BackendError, match="not a valid engine sidecar"):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({"metadata": METADATA.to_props(), "tensorrt": {"version": "10.1"}}))
    with pytest.raises(BackendError, match="not a valid engine sidecar"):
        read_sidecar(engine)


def _sidecar(version: str = "10.7.0", gpu: str = "NVIDIA H100 80GB HBM3", cc: tuple[int, int] = (9, 0)):
    return EngineSidecar(METADATA, version, gpu, cc, "fp16", {}, (1, 1, 1))


def test_engine_for_another_tensorrt_major_is_refused() -> None:
    with pytest.raises(BackendError) as info:
        check_engine_compatible(
            _sidecar("10.7.0"), tensorrt_version="11.2.1", gpu_name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0)
        )
    message = str(info.value)
    assert "TensorRT 10.7.0" in message and "TensorRT 11.2.1" in message and "\n" not in message


def test_engine_for_another_gpu_is_refused() -> None:
    with pytest.raises(BackendError, match=r"compute capability 9\.0.*RTX 4090.*compute capability 8\.9"):
        check_engine_compatible(
            _sidecar(), tensorrt_version="10.7.0", gpu_name="NVIDIA GeForce RTX 4090", compute_capability=(8, 9)
        )
    with pytest.raises(BackendError, match="specific to the GPU model"):
        check_engine_compatible(
            _sidecar(), tensorrt_version="10.7.0", gpu_name="NVIDIA H100 PCIe", compute_capability=(9, 0)
        )


def test_matching_engine_passes_the_check(caplog: pytest.LogCaptureFixture) -> None:
    check_engine_compatible(
        _sidecar("10.7.0"), tensorrt_version="10.7.0", gpu_name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0)
    )
    assert not caplog.records


def test_sidecar_without_a_gpu_only_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = _write_sidecar(tmp_path / "model.engine", gpu_name=None, compute_capability=None)
    sidecar = read_sidecar(engine)
    assert sidecar.gpu_name is None and sidecar.compute_capability is None
    check_engine_compatible(sidecar, tensorrt_version="10.7.0", gpu_name="any", compute_capability=(8, 6))
    assert "does not name the GPU" in caplog.text


def test_engine_is_refused_on_cpu(tmp_path: Path) -> None:
    engine = _write_sidecar(tmp_path / "model.engine")
    with pytest.raises(ValueError, match="CUDA GPUs only"):
        TrtBackend.from_path(engine, device="cpu")


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed: the missing-TensorRT message cannot be shown")
def test_missing_tensorrt_is_one_clear_error(tmp_path: Path) -> None:
    engine = _write_sidecar(tmp_path / "model.engine")
    with pytest.raises(BackendError, match=r"TensorRT is not installed: pip install .rtdetr-deploy\[trt\]."):
        TrtBackend.from_path(engine, device="cuda:0")


# Runtime errors, on a stub ``tensorrt`` and CUDA API: ``trt.Runtime`` raises TypeError rather than returning None,
# ``deserialize_cuda_engine`` returns None, ``create_execution_context`` returns None.


class _Cuda:
    """The part of ``CudaApi`` that ``from_path`` uses before the engine exists."""

    name = "cuda-python"

    def __init__(self, supports_graphs: bool = True) -> None:
        self.supports_graphs = supports_graphs

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        yield

    def device_info(self) -> tuple[str, tuple[int, int]]:
        return "NVIDIA H100 80GB HBM3", (9, 0)


def _stub_trt(*, fail: str) -> types.SimpleNamespace:
    class _Engine:
        def create_execution_context(self) -> None:
            self.logger.log(Severity.ERROR, "Requested amount of GPU memory (1073741824 bytes) could not be allocated")

    class Runtime:
        def __init__(self, logger: ILogger) -> None:
            if fail == "runtime":
                logger.log(Severity.ERROR, "CUDA initialization failure with error: 35")
                raise TypeError(NULLPTR)
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> _Engine | None:
            if fail == "deserialize":
                self.logger.log(Severity.ERROR, "The engine plan file is not compatible with this version of TensorRT")
                return None
            engine = _Engine()
            engine.logger = self.logger
            return engine

    return types.SimpleNamespace(__version__="10.7.0", ILogger=ILogger, Runtime=Runtime)


def _open_with(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    stub: types.SimpleNamespace,
    *,
    cuda: _Cuda | None = None,
    **kwargs: bool,
) -> str:
    """The one-line message ``TrtBackend.from_path`` raises with ``stub`` as TensorRT and ``cuda`` as CUDA."""
    monkeypatch.setattr("rtdetr_deploy.runtime.tensorrt_backend.import_tensorrt", lambda error: stub)
    monkeypatch.setattr("rtdetr_deploy.runtime.tensorrt_backend.load_cuda", lambda index: cuda or _Cuda())
    fake_distributions(monkeypatch, {"tensorrt-cu12": "10.7.0", "cuda-python": "12.9.0"})
    engine = _write_sidecar(tmp_path / "model.engine")
    with pytest.raises(BackendError) as info:
        TrtBackend.from_path(engine, device="cuda:0", **kwargs)
    return str(info.value)


def test_the_stub_is_shaped_like_tensorrt() -> None:
    data = Path(__file__).resolve().parents[2] / "tools" / "tensorrt_api" / "data"
    for path in sorted(data.glob("tensorrt-*.json")):
        classes = json.loads(path.read_text())["classes"]
        assert {"__init__", "deserialize_cuda_engine"} <= set(classes["Runtime"]["members"])
        assert "create_execution_context" in classes["ICudaEngine"]["members"]


def test_a_runtime_factory_failure_is_one_backend_error(monkeypatch, tmp_path) -> None:
    message = _open_with(monkeypatch, tmp_path, _stub_trt(fail="runtime"))
    assert message == (
        f"TensorRT could not create a runtime: CUDA initialization failure with error: 35; {NULLPTR} "
        "(installed: tensorrt-cu12 10.7.0, cuda-python 12.9.0)"
    )


def test_an_engine_that_does_not_deserialize_names_both_versions(monkeypatch, tmp_path) -> None:
    message = _open_with(monkeypatch, tmp_path, _stub_trt(fail="deserialize"))
    assert message == (
        f"{tmp_path / 'model.engine'}: TensorRT 10.7.0 could not deserialize the engine (built with TensorRT 10.7.0): "
        "The engine plan file is not compatible with this version of TensorRT"
    )


def test_a_context_that_cannot_be_created_says_what_tensorrt_logged(monkeypatch, tmp_path) -> None:
    message = _open_with(monkeypatch, tmp_path, _stub_trt(fail="context"))
    assert message == (
        f"{tmp_path / 'model.engine'}: TensorRT could not create an execution context (Requested amount of GPU memory "
        "(1073741824 bytes) could not be allocated)"
    )


def test_cuda_graphs_without_cuda_python_are_refused_before_loading(monkeypatch, tmp_path) -> None:
    cuda = _Cuda(supports_graphs=False)
    cuda.name = "pycuda"
    message = _open_with(monkeypatch, tmp_path, _stub_trt(fail="none"), cuda=cuda, cuda_graph=True)
    assert message == "CUDA graphs need cuda-python, but pycuda is what is installed here"


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_CUDA_PYTHON, reason="cuda-python is not installed")
def test_cuda_memory_round_trip_and_graph() -> None:
    from rtdetr_deploy.runtime.cuda_memory import load_cuda

    cuda = load_cuda(0)
    name, capability = cuda.device_info()
    assert name and capability[0] >= 3
    with cuda.activate():
        stream = cuda.stream_create()
        host_in = cuda.host_empty(1000, np.dtype(np.float32))
        host_out = cuda.host_empty(1000, np.dtype(np.float32))
        device = cuda.malloc(host_in.nbytes)
        host_in[:] = np.arange(1000, dtype=np.float32)
        cuda.copy_to_device(device, host_in, stream)
        cuda.copy_to_host(host_out, device, stream)
        cuda.stream_sync(stream)
        np.testing.assert_array_equal(host_out, host_in)
        cuda.begin_capture(stream)
        cuda.copy_to_device(device, host_in[:10], stream)
        cuda.copy_to_host(host_out[:10], device, stream)
        graph = cuda.end_capture(stream)
        graph_exec = cuda.graph_instantiate(graph)
        host_in[:10] = -1
        host_out[:10] = 0
        cuda.graph_launch(graph_exec, stream)
        cuda.stream_sync(stream)
        np.testing.assert_array_equal(host_out[:10], -1)
        cuda.graph_destroy(graph, graph_exec)
        cuda.free(device)
        cuda.host_free(host_in)
        cuda.host_free(host_out)
        cuda.stream_destroy(stream)


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not HAVE_TENSORRT, reason=NO_TENSORRT)
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_engine_matches_onnxruntime(
    tiny_onnx: Path, tmp_path: Path, real_images: list[np.ndarray], onnx_detector, cuda_graph: bool
) -> None:
    from rtdetr_deploy.export.tensorrt import build_engine
    from rtdetr_deploy.runtime import Detector

    engine = build_engine(tiny_onnx, tmp_path / "tiny.engine", batch=onnx_detector.metadata.batch)
    backend = TrtBackend.from_path(engine, device="cuda:0", cuda_graph=cuda_graph)
    with Detector(backend, conf=0.0) as detector:
        for _ in range(2):  # the second pass replays the captured graph
            results = detector(real_images)
        for image, det in zip(real_images, results, strict=True):
            ref = onnx_detector(image)
            np.testing.assert_array_equal(det.class_ids, ref.class_ids)
            np.testing.assert_allclose(det.scores, ref.scores, atol=1e-3)
            np.testing.assert_allclose(det.boxes_xyxy, ref.boxes_xyxy, rtol=1e-3, atol=0.5)
