"""TensorRT builder: the helpers around it (batch range, profiles, sidecar, GPU description) run anywhere;
building engines needs TensorRT and a GPU and is skipped without them."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import types
from pathlib import Path

import numpy as np
import pytest
from tensorrt_stubs import API_DATA, NULLPTR, ILogger, Severity, fake_distributions

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from helpers import CLASS_NAMES, tiny_deploy_onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from rtdetr_deploy.engine_format import sidecar_path  # noqa: E402
from rtdetr_deploy.errors import EngineBuildError  # noqa: E402
from rtdetr_deploy.export.tensorrt import (  # noqa: E402
    build_engine,
    engine_sidecar,
    gpu_description,
    onnx_io,
    onnx_precision,
    profile_shapes,
)
from rtdetr_deploy.metadata import ModelMetadata  # noqa: E402

INPUT_SIZE = (160, 160)
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
NO_TENSORRT = "TensorRT is not installed (pip install rtdetr-deploy[trt]; engines need an NVIDIA GPU)"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset at 160x160 with the deploy I/O, a dynamic batch and metadata (random weights)."""
    return tiny_deploy_onnx(tmp_path_factory.mktemp("tensorrt"), input_size=INPUT_SIZE, topk=50)


def test_onnx_io_reports_the_deploy_contract(tiny_onnx):
    io = onnx_io(onnx.load(str(tiny_onnx)))
    assert {name: (spec["mode"], spec["dtype"]) for name, spec in io.items()} == {
        "images": ("input", "float32"),
        "orig_target_sizes": ("input", "int64"),
        "labels": ("output", "int64"),
        "boxes": ("output", "float32"),
        "scores": ("output", "float32"),
    }
    assert io["images"]["shape"] == ["N", 3, 160, 160]


def test_profile_shapes_put_the_batch_range_on_every_input(tiny_onnx):
    shapes = profile_shapes(onnx.load(str(tiny_onnx)), (1, 2, 4))
    assert shapes == {
        "images": ((1, 3, 160, 160), (2, 3, 160, 160), (4, 3, 160, 160)),
        "orig_target_sizes": ((1, 2), (2, 2), (4, 2)),
    }


def _with_dims(path: Path, name: str, dims: list[int | str]) -> onnx.ModelProto:
    model = onnx.load(str(path))
    info = next(i for i in model.graph.input if i.name == name)
    info.type.tensor_type.shape.Clear()
    for dim in dims:
        entry = info.type.tensor_type.shape.dim.add()
        if isinstance(dim, int):
            entry.dim_value = dim
        else:
            entry.dim_param = dim
    return model


def test_profile_shapes_refuse_what_an_engine_cannot_serve(tiny_onnx):
    fixed = _with_dims(tiny_onnx, "images", [2, 3, 160, 160])
    assert profile_shapes(fixed, (2, 2, 2))["images"] == ((2, 3, 160, 160),) * 3
    with pytest.raises(ValueError, match="fixed batch of 2 on 'images'"):
        profile_shapes(fixed, (1, 2, 4))
    with pytest.raises(ValueError, match="only the batch .* may be dynamic"):
        profile_shapes(_with_dims(tiny_onnx, "images", ["N", 3, "H", "W"]), (1, 1, 1))


def test_onnx_precision_from_metadata_or_graph(tiny_onnx):
    model = onnx.load(str(tiny_onnx))
    assert onnx_precision(model) == "fp32"
    del model.metadata_props[:]
    model.graph.node.append(helper.make_node("QuantizeLinear", ["a", "s"], ["q"]))
    assert onnx_precision(model) == "int8"
    model.metadata_props.add(key="precision", value="fp16")
    assert onnx_precision(model) == "fp16"


def test_sidecar_records_metadata_gpu_batch_and_engine_dtypes(tiny_onnx):
    model = onnx.load(str(tiny_onnx))
    io = onnx_io(model)
    # TensorRT may declare the sizes input int32 although the ONNX says int64: the sidecar keeps the engine's.
    io["orig_target_sizes"] = {**io["orig_target_sizes"], "dtype": "int32", "profile": [[1, 2], [2, 2], [4, 2]]}
    sidecar = engine_sidecar(
        model, tensorrt_version="10.9.0", gpu_name="NVIDIA H100", compute_capability=(9, 0), batch=(1, 2, 4), io=io
    )
    sidecar = json.loads(json.dumps(sidecar))
    assert ModelMetadata.from_props(sidecar["metadata"]).class_names == tuple(CLASS_NAMES)
    trt_info = sidecar["tensorrt"]
    assert trt_info["version"] == "10.9.0" and trt_info["gpu_name"] == "NVIDIA H100"
    assert trt_info["compute_capability"] == [9, 0]
    assert trt_info["precision"] == sidecar["metadata"]["precision"] == "fp32"
    assert trt_info["batch"] == [1, 2, 4] and trt_info["input_size"] == [160, 160]
    assert trt_info["io"]["orig_target_sizes"]["dtype"] == "int32"
    with pytest.raises(ValueError, match="1 <= MIN <= OPT <= MAX"):
        engine_sidecar(model, tensorrt_version="10", gpu_name=None, compute_capability=None, batch=(2, 1, 1), io=io)


def test_sidecar_path_appends_json():
    assert sidecar_path("out/model.engine") == Path("out/model.engine.json")


def test_gpu_description_is_none_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert gpu_description() == (None, None)


@pytest.mark.gpu
def test_gpu_description_names_the_cuda_device():
    name, capability = gpu_description()
    assert name == torch.cuda.get_device_name()
    assert capability == tuple(torch.cuda.get_device_capability())


def test_bad_arguments_fail_before_tensorrt_is_needed(tiny_onnx, tmp_path):
    engine = tmp_path / "tiny.engine"
    with pytest.raises(ValueError, match="1 <= MIN <= OPT <= MAX"):
        build_engine(tiny_onnx, engine, batch=(4, 2, 1))
    with pytest.raises(ValueError, match="workspace"):
        build_engine(tiny_onnx, engine, workspace_gib=0)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        build_engine(tmp_path / "missing.onnx", engine)
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed")
def test_missing_tensorrt_is_one_actionable_error(tiny_onnx, tmp_path):
    engine = tmp_path / "tiny.engine"
    with pytest.raises(EngineBuildError, match=r"TensorRT is not installed: pip install .rtdetr-deploy\[trt\]."):
        build_engine(tiny_onnx, engine, batch=(1, 2, 4))
    assert not engine.exists() and not sidecar_path(engine).exists()


# Everything below builds real engines: TensorRT >= 10 and an NVIDIA GPU (the ``trt`` fixture skips without them).


@pytest.fixture(scope="module")
def trt():
    module = pytest.importorskip("tensorrt", reason=NO_TENSORRT)
    if not torch.cuda.is_available():
        pytest.skip("engines are built on a CUDA device (none found)")
    return module


@pytest.fixture(scope="module")
def precision_onnx(tiny_onnx, tmp_path_factory) -> dict[str, Path]:
    from rtdetr_deploy.export.precision import convert_fp16
    from rtdetr_deploy.export.quantize import quantize_int8

    folder = tmp_path_factory.mktemp("precision_onnx")
    calibration = [np.random.default_rng(i).integers(0, 256, (240, 320, 3), dtype=np.uint8) for i in range(2)]
    return {
        "fp32": tiny_onnx,
        "fp16": convert_fp16(tiny_onnx, folder / "tiny.fp16.onnx"),
        "int8": quantize_int8(tiny_onnx, folder / "tiny.int8.onnx", calibration, target="tensorrt"),
    }


def _run_engine(trt, engine_path: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an engine once with torch CUDA buffers, feeding each input in the dtype the sidecar records."""
    sidecar = json.loads(sidecar_path(engine_path).read_text())["tensorrt"]["io"]
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    assert engine is not None
    context = engine.create_execution_context()
    assert context is not None
    buffers = {}
    for name, spec in sidecar.items():
        if spec["mode"] == "input":
            array = feed[name].astype(spec["dtype"])
            buffers[name] = torch.from_numpy(array).cuda()
            assert context.set_input_shape(name, tuple(array.shape))
    for name, spec in sidecar.items():
        if spec["mode"] == "output":
            shape = tuple(context.get_tensor_shape(name))
            buffers[name] = torch.empty(shape, dtype=getattr(torch, spec["dtype"]), device="cuda")
    for name, tensor in buffers.items():
        assert context.set_tensor_address(name, tensor.data_ptr())
    stream = torch.cuda.Stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return {name: buffers[name].cpu().numpy() for name, spec in sidecar.items() if spec["mode"] == "output"}


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_builds_with_sidecar_and_runs(trt, precision_onnx, precision, tmp_path):
    import onnxruntime as ort

    cache = tmp_path / "timing.cache"
    engine = build_engine(
        precision_onnx[precision], tmp_path / f"tiny.{precision}.engine", batch=(1, 2, 4), timing_cache=cache
    )
    sidecar = json.loads(sidecar_path(engine).read_text())
    assert sidecar["tensorrt"]["precision"] == sidecar["metadata"]["precision"] == precision
    assert sidecar["tensorrt"]["batch"] == [1, 2, 4]
    assert sidecar["tensorrt"]["io"]["orig_target_sizes"]["dtype"] in ("int32", "int64")
    assert sidecar["tensorrt"]["io"]["images"]["profile"][2] == [4, 3, 160, 160]
    assert cache.stat().st_size > 0
    # A second build reuses the cache it wrote.
    build_engine(precision_onnx[precision], tmp_path / "again.engine", batch=(1, 2, 4), timing_cache=cache)

    rng = np.random.default_rng(0)
    feed = {
        "images": rng.random((2, 3, *INPUT_SIZE), dtype=np.float32),
        "orig_target_sizes": np.array([[640, 480], [500, 300]], dtype=np.int64),
    }
    outputs = _run_engine(trt, engine, feed)
    session = ort.InferenceSession(str(precision_onnx[precision]), providers=["CPUExecutionProvider"])
    reference = dict(zip(["labels", "boxes", "scores"], session.run(["labels", "boxes", "scores"], feed), strict=True))
    assert outputs["boxes"].shape == (2, 50, 4) and np.isfinite(outputs["boxes"]).all()
    from rtdetr_deploy.agreement import compare_detections

    report = compare_detections(reference, outputs)
    if precision != "int8":  # INT8 kernels round differently from ORT's; FP32/FP16 must agree with the same ONNX
        assert report["matched"] >= 0.99, report


@pytest.mark.tensorrt
def test_parse_errors_are_all_reported(trt, tmp_path):
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["images"], ["y"], domain="custom.unknown")],
        "broken",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom.unknown", 1)]
    )
    path = tmp_path / "broken.onnx"
    onnx.save(model, str(path))
    with pytest.raises(EngineBuildError, match="(?s)cannot parse .*NoSuchOp"):
        build_engine(path, tmp_path / "broken.engine")
    assert not (tmp_path / "broken.engine").exists()


# Error wrapping, on a stub ``tensorrt`` shaped like the bindings (its names are checked against the committed
# API lists): ``trt.Builder``, ``trt.OnnxParser`` and ``trt.Runtime`` raise TypeError instead of returning None.


def _parser_error(node: int, name: str, op: str, desc: str) -> types.SimpleNamespace:
    """A ``ParserError``: every field is a method, as in the bindings."""
    fields = {"code": "UNSUPPORTED_NODE", "desc": desc, "node": node, "node_name": name, "node_operator": op}
    return types.SimpleNamespace(**{key: (lambda value=value: value) for key, value in fields.items()})


def _stub_trt(*, fail: str, parse_errors: list[types.SimpleNamespace] | None = None) -> types.SimpleNamespace:
    """A ``tensorrt`` whose step ``fail`` fails as the bindings do: logging an error, then raising (factories)
    or returning None/False. Objects are namespaces of the methods ``build_engine`` calls."""

    def factory(logger: ILogger, step: str, message: str) -> None:
        if fail == step:
            logger.log(Severity.ERROR, message)
            raise TypeError(NULLPTR)

    def parse_from_file(logger: ILogger, path: str) -> bool:
        if fail == "parse_silent":
            logger.log(Severity.ERROR, "ModelImporter.cpp:0: Failed to parse ONNX model from file")
        return fail not in ("parse", "parse_silent")

    def deserialize(logger: ILogger, plan: bytes) -> None:
        logger.log(Severity.ERROR, "Serialization assertion magicTagRead == kMAGIC_TAG failed.")

    config = types.SimpleNamespace(
        set_memory_pool_limit=lambda pool, size: None,
        clear_flag=lambda flag: None,
        add_optimization_profile=lambda profile: 0,
        create_timing_cache=lambda data: object(),
        set_timing_cache=lambda cache, ignore_mismatch: True,
    )
    profile = types.SimpleNamespace(set_shape=lambda name, low, opt, high: None)
    errors = parse_errors or []

    def builder(logger: ILogger) -> types.SimpleNamespace:
        factory(logger, "builder", "CUDA initialization failure with error: 35")
        return types.SimpleNamespace(
            create_network=lambda flags: object(),
            create_builder_config=lambda: config,
            create_optimization_profile=lambda: profile,
            build_serialized_network=lambda network, config: b"plan",
        )

    def parser(network: object, logger: ILogger) -> types.SimpleNamespace:
        factory(logger, "parser", "Parser version mismatch")
        return types.SimpleNamespace(
            num_errors=len(errors), get_error=errors.__getitem__, parse_from_file=lambda p: parse_from_file(logger, p)
        )

    def runtime(logger: ILogger) -> types.SimpleNamespace:
        factory(logger, "runtime", "Cuda Runtime (out of memory)")
        return types.SimpleNamespace(deserialize_cuda_engine=lambda plan: deserialize(logger, plan))

    return types.SimpleNamespace(
        __version__="10.7.0",
        ILogger=ILogger,
        Builder=builder,
        OnnxParser=parser,
        Runtime=runtime,
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=5),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE=0),
        BuilderFlag=types.SimpleNamespace(TF32=7),
        objects={"IBuilderConfig": config, "IOptimizationProfile": profile},
    )


def test_the_stub_is_shaped_like_tensorrt():
    stub = _stub_trt(fail="none")
    logger = ILogger()
    objects = {
        **stub.objects,
        "Builder": stub.Builder(logger),
        "OnnxParser": stub.OnnxParser(None, logger),
        "Runtime": stub.Runtime(logger),
        "ParserError": _parser_error(0, "", "", ""),
    }
    for path in sorted(API_DATA.glob("tensorrt-*.json")):
        api = json.loads(path.read_text())
        for name, obj in objects.items():
            assert set(vars(obj)) <= set(api["classes"][name]["members"]), (path.name, name)
        for name in ("NetworkDefinitionCreationFlag", "MemoryPoolType", "BuilderFlag"):
            assert set(vars(getattr(stub, name))) <= set(api["classes"][name]["members"]), (path.name, name)


@pytest.fixture
def small_onnx(tmp_path: Path) -> Path:
    """An ONNX with the deploy inputs (batch dynamic, everything else fixed); the stub never reads its graph."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["y"])],
        "small",
        [
            helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 8, 8]),
            helper.make_tensor_value_info("orig_target_sizes", TensorProto.INT64, ["N", 2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])],
    )
    path = tmp_path / "small.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _build_with(monkeypatch: pytest.MonkeyPatch, stub: types.SimpleNamespace, onnx_path: Path) -> str:
    """The one-line message ``build_engine`` raises with ``stub`` as TensorRT; no engine nor sidecar is left."""
    monkeypatch.setattr("rtdetr_deploy.export.tensorrt.import_tensorrt", lambda error: stub)
    fake_distributions(monkeypatch, {"tensorrt-cu12": "10.7.0", "cuda-python": "12.9.0"})
    engine = onnx_path.with_suffix(".engine")
    with pytest.raises(EngineBuildError) as info:
        build_engine(onnx_path, engine, batch=(1, 2, 4))
    assert not engine.exists() and not sidecar_path(engine).exists()
    return str(info.value)


PAIR = "(installed: tensorrt-cu12 10.7.0, cuda-python 12.9.0)"


def test_a_builder_factory_failure_is_one_engine_build_error(monkeypatch, small_onnx):
    message = _build_with(monkeypatch, _stub_trt(fail="builder"), small_onnx)
    assert message == (
        "TensorRT could not create a builder (is a CUDA GPU visible?): CUDA initialization failure with error: 35; "
        f"{NULLPTR} {PAIR}"
    )


def test_a_parser_factory_failure_is_one_engine_build_error(monkeypatch, small_onnx):
    message = _build_with(monkeypatch, _stub_trt(fail="parser"), small_onnx)
    assert message == f"TensorRT could not create the ONNX parser: Parser version mismatch; {NULLPTR} {PAIR}"


def test_every_parser_error_is_listed(monkeypatch, small_onnx):
    errors = [
        _parser_error(3, "/backbone/Conv_3", "Conv", "kernel weights has count 0 but 432 was expected"),
        _parser_error(7, "", "NoSuchOp", "No importer registered for op: NoSuchOp"),
    ]
    message = _build_with(monkeypatch, _stub_trt(fail="parse", parse_errors=errors), small_onnx)
    assert message == (
        f"TensorRT cannot parse {small_onnx} (2 errors):\n"
        "  /backbone/Conv_3 (Conv): kernel weights has count 0 but 432 was expected [UNSUPPORTED_NODE]\n"
        "  node 7 (NoSuchOp): No importer registered for op: NoSuchOp [UNSUPPORTED_NODE]"
    )


def test_a_parse_failure_without_parser_errors_shows_the_log(monkeypatch, small_onnx):
    message = _build_with(monkeypatch, _stub_trt(fail="parse_silent"), small_onnx)
    assert message.endswith("(0 errors):\n  ModelImporter.cpp:0: Failed to parse ONNX model from file")


def test_a_runtime_factory_failure_is_one_engine_build_error(monkeypatch, small_onnx):
    message = _build_with(monkeypatch, _stub_trt(fail="runtime"), small_onnx)
    assert message == f"TensorRT could not create a runtime: Cuda Runtime (out of memory); {NULLPTR} {PAIR}"


def test_an_engine_that_does_not_deserialize_is_an_engine_build_error(monkeypatch, small_onnx):
    message = _build_with(monkeypatch, _stub_trt(fail="none"), small_onnx)
    assert message == (
        "TensorRT: loading the engine it just built failed: Serialization assertion magicTagRead == kMAGIC_TAG failed."
    )
