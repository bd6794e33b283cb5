"""The shared TensorRT layer (imports, logger, installed pair, sidecar files), and the TensorRT and cuda-python API
our code calls, checked against every supported release of each (lists in ``tools/tensorrt_api/data``)."""

from __future__ import annotations

import json
import logging
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from tensorrt_stubs import ILogger, Severity, fake_distributions, load_conformance

from rtdetr_deploy.engine_format import (
    import_tensorrt,
    installed_pair,
    make_logger,
    normalize_gpu_name,
    read_sidecar,
    sidecar_dict,
    sidecar_path,
    write_engine,
)
from rtdetr_deploy.errors import BackendError, EngineBuildError
from rtdetr_deploy.metadata import ModelMetadata

ROOT = Path(__file__).resolve().parent.parent
TRT_MODULES = [
    ROOT / "rtdetr_deploy" / "export" / "tensorrt.py",
    ROOT / "rtdetr_deploy" / "runtime" / "tensorrt_backend.py",
    ROOT / "rtdetr_deploy" / "engine_format.py",
]
CUDA_MODULES = [
    ROOT / "rtdetr_deploy" / "runtime" / "cuda_memory.py",
    ROOT / "rtdetr_deploy" / "export" / "tensorrt.py",
    ROOT / "rtdetr_deploy" / "engine_format.py",
]
# The releases the issue names, which must stay covered (10.16 is the newest 10.x tag).
REQUIRED_RELEASES = ("tensorrt-10.0.0", "tensorrt-10.7.0", "tensorrt-10.16", "tensorrt-11.0", "tensorrt-11.1")


conformance = load_conformance()
TRT_APIS = conformance.load("tensorrt-*.json")
CUDA_APIS = conformance.load("cuda-*.json")


# --- installed pair, imports, logger --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        (
            {"tensorrt-cu12": "10.7.0", "cuda-python": "12.9.0", "cuda-bindings": "12.9.0"},
            "installed: tensorrt-cu12 10.7.0, cuda-python 12.9.0, cuda-bindings 12.9.0",
        ),
        (
            {"tensorrt-cu12": "10.7.0", "cuda-python": "13.0.1", "cuda-bindings": "13.0.1"},
            "installed: tensorrt-cu12 10.7.0, cuda-python 13.0.1, cuda-bindings 13.0.1; tensorrt-cu12 pairs with "
            "cuda-python 12.x: pip install 'rtdetr-deploy[trt-cu12]'",
        ),
        (
            {"tensorrt": "11.1.0", "tensorrt-cu13": "11.1.0", "cuda-bindings": "12.9.0"},
            "installed: tensorrt 11.1.0, tensorrt-cu13 11.1.0, cuda-bindings 12.9.0; tensorrt-cu13 pairs with "
            "cuda-python 13.x: pip install 'rtdetr-deploy[trt-cu13]'",
        ),
        ({}, "installed: no tensorrt distribution, no cuda-python"),
    ],
)
def test_installed_pair_names_versions_and_a_mismatch(monkeypatch, versions, expected) -> None:
    fake_distributions(monkeypatch, versions)
    assert installed_pair() == expected


@pytest.mark.parametrize("error", [EngineBuildError, BackendError])
def test_missing_tensorrt_names_both_pairs(monkeypatch, error) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(error) as info:
        import_tensorrt(error)
    message = str(info.value)
    assert message.startswith("TensorRT is not installed: pip install 'rtdetr-deploy[trt]'")
    assert "'rtdetr-deploy[trt-cu13]'" in message and "R580" in message and "\n" not in message


def test_old_tensorrt_is_refused_and_new_accepted(monkeypatch) -> None:
    fake_distributions(monkeypatch, {"tensorrt": "8.6.1", "cuda-python": "12.1.0"})
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1"))
    with pytest.raises(BackendError, match=r"TensorRT 8\.6\.1 is too old.*installed: tensorrt 8\.6\.1, cuda-python"):
        import_tensorrt(BackendError)
    stub = types.SimpleNamespace(__version__="10.0.1")
    monkeypatch.setitem(sys.modules, "tensorrt", stub)
    assert import_tensorrt(EngineBuildError) is stub


def test_stub_logger_is_shaped_like_the_bindings() -> None:
    for api in TRT_APIS.values():
        assert {"__init__", "log", "Severity"} <= set(api["classes"]["ILogger"]["members"])
        assert {s.name for s in Severity} <= set(api["classes"]["ILogger.Severity"]["members"])


def test_logger_keeps_errors_and_forwards_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    logger = make_logger(types.SimpleNamespace(ILogger=ILogger))
    with caplog.at_level(logging.DEBUG, logger="rtdetr_deploy.engine_format"):
        logger.log(Severity.WARNING, "weights are FP32")
        logger.log(Severity.ERROR, "IBuilder::buildSerializedNetwork: Error Code 4:\n  no kernels")
        logger.log(Severity.INFO, "build took 2 s")
        logger.log(Severity.INTERNAL_ERROR, "assertion failed")
    assert logger.errors == ["IBuilder::buildSerializedNetwork: Error Code 4:\n  no kernels", "assertion failed"]
    assert logger.summary() == "IBuilder::buildSerializedNetwork: Error Code 4: no kernels; assertion failed"
    assert logger.summary(-1) == "assertion failed" and logger.summary(2) == ""
    levels = {r.getMessage(): r.levelno for r in caplog.records}
    assert levels == {"TensorRT: weights are FP32": logging.WARNING, "TensorRT: build took 2 s": logging.DEBUG}


def test_gpu_names_compare_without_padding() -> None:
    assert normalize_gpu_name(b"NVIDIA H100 80GB HBM3\x00\x00\x00") == "NVIDIA H100 80GB HBM3"
    assert normalize_gpu_name(" NVIDIA A10 ") == "NVIDIA A10"
    assert normalize_gpu_name(None) is None


def test_engine_and_sidecar_round_trip(tmp_path: Path) -> None:
    metadata = ModelMetadata(preset="tiny", input_size=(320, 320), class_names=("a", "b"), category_ids=(1, 2))
    io = {"images": {"mode": "input", "dtype": "float32", "shape": [-1, 3, 320, 320]}}
    sidecar = sidecar_dict(
        metadata.to_props(),
        tensorrt_version="10.7.0",
        gpu_name="NVIDIA L4\x00",
        compute_capability=(8, 9),
        precision="fp16",
        input_size_hw=[320, 320],
        batch=(1, 2, 4),
        io=io,
    )
    engine = write_engine(tmp_path / "m.engine", b"\x01plan", sidecar)
    assert engine.read_bytes() == b"\x01plan"
    assert json.loads(sidecar_path(engine).read_text())["tensorrt"]["gpu_name"] == "NVIDIA L4"
    read = read_sidecar(engine)
    assert (read.tensorrt_version, read.gpu_name, read.compute_capability) == ("10.7.0", "NVIDIA L4", (8, 9))
    assert (read.precision, read.batch, read.io) == ("fp16", (1, 2, 4), io)
    assert read.metadata.class_names == ("a", "b")


def test_failed_engine_write_leaves_neither_file(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_engine(tmp_path / "m.engine", object(), {"metadata": {}, "tensorrt": {}})
    assert list(tmp_path.iterdir()) == []


# --- TensorRT API conformance ---------------------------------------------------------------------------------


def test_every_required_release_is_covered() -> None:
    for name in REQUIRED_RELEASES:
        api = TRT_APIS[name]
        assert api["tag"].lstrip("v") == name.removeprefix("tensorrt-")
        assert re.fullmatch(r"[0-9a-f]{40}", api["commit"]), api["commit"]
        assert "python/src/infer/pyCore.cpp" in api["sources"]


def test_the_collector_sees_the_calls_we_know_of() -> None:
    chains = {use.chain for use in conformance.tensorrt_uses(TRT_MODULES)}
    # Written by hand from the three modules, so that a collector that silently finds nothing fails here.
    expected = {
        ("Builder",),
        ("OnnxParser",),
        ("Runtime",),
        ("__version__",),
        ("nptype",),
        ("BuilderFlag", "TF32"),
        ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"),
        ("MemoryPoolType", "WORKSPACE"),
        ("TensorIOMode", "INPUT"),
        ("ILogger", "__init__"),
        ("ILogger", "Severity", "ERROR"),
        ("Builder", "build_serialized_network"),
        ("OnnxParser", "parse_from_file"),
        ("ParserError", "node_operator"),
        ("ITimingCache", "serialize"),
        ("Runtime", "deserialize_cuda_engine"),
        ("ICudaEngine", "get_tensor_profile_shape"),
        ("ICudaEngine", "create_execution_context"),
        ("IExecutionContext", "set_input_shape"),
        ("IExecutionContext", "set_tensor_address"),
        ("IExecutionContext", "execute_async_v3"),
    }
    assert expected <= chains, sorted(expected - chains)


@pytest.mark.parametrize("release", sorted(TRT_APIS))
def test_every_tensorrt_name_we_use_exists(release: str) -> None:
    missing = conformance.missing_tensorrt(conformance.tensorrt_uses(TRT_MODULES), TRT_APIS[release])
    assert not missing, f"{release} lacks: " + ", ".join(map(str, missing))


def _uses(code: str) -> list[Any]:
    return conformance.tensorrt_uses([Path("snippet.py")], {Path("snippet.py"): code})


def test_a_name_removed_in_11_is_flagged_for_11_only() -> None:
    # BuilderFlag.FP16 is gone in TensorRT 11 (strongly typed networks only), present in every 10.x.
    flagged = {r for r, api in TRT_APIS.items() if conformance.missing_tensorrt(_uses("trt.BuilderFlag.FP16"), api)}
    assert flagged == {r for r in TRT_APIS if r.startswith("tensorrt-11.")}
    assert {"tensorrt-11.0", "tensorrt-11.1"} <= flagged


def test_known_removals_and_additions() -> None:
    # Independent facts: TensorRT 10 dropped the binding-index API; the V2 memory size arrived in 10.1; TensorRT 11
    # dropped INT8 calibrators (IInt8EntropyCalibrator2) and the V1 device memory size.
    code = "trt.ICudaEngine.num_bindings\nengine.device_memory_size_v2\ntrt.IInt8EntropyCalibrator2\n"
    code += "engine.device_memory_size\n"
    by_release = {r: {u.chain for u in conformance.missing_tensorrt(_uses(code), a)} for r, a in TRT_APIS.items()}
    assert all(("ICudaEngine", "num_bindings") in missing for missing in by_release.values())
    assert ("ICudaEngine", "device_memory_size_v2") in by_release["tensorrt-10.0.0"]
    assert ("ICudaEngine", "device_memory_size_v2") not in by_release["tensorrt-10.7.0"]
    for release in ("tensorrt-11.0", "tensorrt-11.1"):
        assert {("IInt8EntropyCalibrator2",), ("ICudaEngine", "device_memory_size")} <= by_release[release]
    assert ("IInt8EntropyCalibrator2",) not in by_release["tensorrt-10.16"]


def test_a_name_deleted_from_a_list_fails_the_check() -> None:
    uses = conformance.tensorrt_uses(TRT_MODULES)
    api = json.loads(json.dumps(TRT_APIS["tensorrt-10.7.0"]))
    assert conformance.missing_tensorrt(uses, api) == []
    api["classes"]["IExecutionContext"]["members"].remove("execute_async_v3")
    api["classes"]["ILogger.Severity"]["members"].remove("WARNING")
    api["module"].remove("OnnxParser")
    missing = {use.chain for use in conformance.missing_tensorrt(uses, api)}
    assert missing == {("IExecutionContext", "execute_async_v3"), ("ILogger", "Severity", "WARNING"), ("OnnxParser",)}


def test_conditional_names_do_not_count() -> None:
    # INetworkDefinition.serialize is bound only under ENABLE_INETWORK_SERIALIZE.
    for api in TRT_APIS.values():
        assert "INetworkDefinition.serialize" in api["conditional"]
        assert conformance.missing_tensorrt(_uses("network.serialize"), api)


# --- cuda-python API conformance ------------------------------------------------------------------------------


def test_the_cuda_collector_sees_the_calls_we_know_of() -> None:
    found = {(use.chain, use.nargs) for use in conformance.cuda_uses(CUDA_MODULES)}
    # Written by hand from the modules, so that a collector that silently finds nothing fails here.
    expected = {
        (("cudaMemcpyAsync",), 5),
        (("cudaStreamBeginCapture",), 2),
        (("cudaStreamEndCapture",), 1),
        (("cudaStreamIsCapturing",), 1),
        (("cudaGraphInstantiate",), 2),
        (("cudaGetDeviceProperties",), 1),
        (("cudaGetDevice",), 0),
        (("cudaError_t", "cudaSuccess"), None),
        (("cudaMemcpyKind", "cudaMemcpyHostToDevice"), None),
        (("cudaStreamCaptureStatus", "cudaStreamCaptureStatusNone"), None),
        (("cudaDeviceProp", "major"), None),
    }
    assert expected <= found, sorted(expected - found)


def test_every_required_cuda_python_release_is_covered() -> None:
    assert {"cuda-python-12.1.0", "cuda-bindings-12.9.0", "cuda-bindings-13.0.0", "cuda-bindings-13.5.0"} <= set(
        CUDA_APIS
    )
    assert "cuda.bindings.runtime" not in CUDA_APIS["cuda-python-12.1.0"]["modules"]


@pytest.mark.parametrize("release", sorted(CUDA_APIS))
def test_every_cuda_name_we_use_exists_with_its_argument_count(release: str) -> None:
    missing = conformance.missing_cuda(conformance.cuda_uses(CUDA_MODULES), CUDA_APIS[release])
    assert not missing, f"{release} lacks: " + ", ".join(map(str, missing))


def _missing_by_release(code: str) -> dict[str, set[tuple[str, ...]]]:
    uses = conformance.cuda_uses([Path("snippet.py")], {Path("snippet.py"): code})
    return {release: {u.chain for u in conformance.missing_cuda(uses, api)} for release, api in CUDA_APIS.items()}


def test_cuda_13_removals_are_flagged_for_13_only() -> None:
    # CUDA 13 removed cudaDeviceProp.clockRate and gave cudaMemPrefetchAsync a location and flags (5 arguments).
    code = (
        "def f(cudart, ptr, n, stream):\n"
        "    err, props = cudart.cudaGetDeviceProperties(0)\n"
        "    props.clockRate\n"
        "    cudart.cudaMemPrefetchAsync(ptr, n, 0, stream)\n"
    )
    missing = _missing_by_release(code)
    for release, names in missing.items():
        expected = {("cudaDeviceProp", "clockRate"), ("cudaMemPrefetchAsync",)} if "-13." in release else set()
        assert names == expected, release


def test_a_wrong_argument_count_or_a_deleted_name_fails_the_check() -> None:
    assert all(m == {("cudaGraphInstantiate",)} for m in _missing_by_release("cudart.cudaGraphInstantiate(g)").values())
    uses = conformance.cuda_uses(CUDA_MODULES)
    api = json.loads(json.dumps(CUDA_APIS["cuda-bindings-13.0.0"]))
    del api["modules"]["cuda.bindings.runtime"]["functions"]["cudaStreamIsCapturing"]
    api["modules"]["cuda.bindings.runtime"]["enums"]["cudaError_t"].remove("cudaSuccess")
    missing = {use.chain for use in conformance.missing_cuda(uses, api)}
    assert missing == {("cudaStreamIsCapturing",), ("cudaError_t", "cudaSuccess")}
