"""The Triton model repository, parsed with Triton's own schema (tritonclient's ``model_config_pb2``).

Every ``config.pbtxt`` is read with protobuf's text format into Triton's ``ModelConfig`` (a typo, a wrong enum or
a misplaced field fails the parse) and its inputs and outputs are checked against the graph as ONNX (or OpenVINO)
declares it, with a dtype table written here by hand. The engine case uses a placeholder plan file: the writer
copies the plan and reads the tensors from the builder's sidecar, so no TensorRT is needed to check the config
(building and running a real engine is covered by the TensorRT tests on a GPU machine).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
text_format = pytest.importorskip("google.protobuf.text_format")

from rtdetr_deploy.engine_format import sidecar_dict, sidecar_path  # noqa: E402
from rtdetr_deploy.export.triton import TritonOptions, write_triton_model  # noqa: E402
from rtdetr_deploy.metadata import ModelMetadata  # noqa: E402
from rtdetr_deploy.runtime.onnxruntime_backend import read_onnx_metadata  # noqa: E402

# numpy dtype -> Triton DataType name, from model_config.proto.
TRITON_TYPE = {"float32": "TYPE_FP32", "int64": "TYPE_INT64", "int32": "TYPE_INT32", "uint8": "TYPE_UINT8"}


@pytest.fixture(scope="module")
def schema():  # noqa: ANN201 - the generated protobuf module
    """Triton's ``model_config_pb2``; loaded from its file when ``tritonclient.grpc`` cannot import (no grpcio)."""
    tritonclient = pytest.importorskip("tritonclient", reason="needs tritonclient: pip install 'rtdetr-deploy[triton]'")
    try:
        return importlib.import_module("tritonclient.grpc.model_config_pb2")
    except ImportError:
        path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
        spec = importlib.util.spec_from_file_location("model_config_pb2", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def _parse(schema, path: Path):  # noqa: ANN001, ANN202 - protobuf module and message
    return text_format.Parse(path.read_text(encoding="utf-8"), schema.ModelConfig())


def _graph_io(path: Path) -> dict[str, tuple[str, list[int]]]:
    """name -> (Triton type, dims without the batch axis, -1 where symbolic) straight from the ONNX graph."""
    model = onnx.load(str(path), load_external_data=False)
    io = {}
    for info in [*model.graph.input, *model.graph.output]:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)).name
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in info.type.tensor_type.shape.dim]
        io[info.name] = (TRITON_TYPE[dtype], dims[1:])
    return io


def _declared(schema, config) -> dict[str, tuple[str, list[int]]]:  # noqa: ANN001
    return {t.name: (schema.DataType.Name(t.data_type), list(t.dims)) for t in [*config.input, *config.output]}


def _metadata_of(config) -> ModelMetadata:  # noqa: ANN001
    props = {k.removeprefix("rtdetr."): v.string_value for k, v in config.parameters.items() if k.startswith("rtdetr.")}
    props.pop("num_classes")
    return ModelMetadata.from_props(props)


@pytest.fixture(scope="module")
def export_dir(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``rtdetr-export --dynamic-batch 1,2,4 --fuse-preprocess --triton DIR`` on the tiny checkpoint."""
    pytest.importorskip("torch")
    from rtdetr_deploy.cli.export import main

    out = tmp_path_factory.mktemp("triton_export")
    argv = [str(tiny_checkpoint), "-o", str(out), "--imgsz", "128", "--dynamic-batch", "1,2,4", "--topk", "50"]
    assert main([*argv, "--fuse-preprocess", "--triton", str(out / "repo"), "--triton-instances", "2"]) == 0
    return out


def test_export_serves_the_fused_graph_with_the_graphs_own_io(export_dir: Path, schema) -> None:
    repo = export_dir / "repo"
    assert sorted(p.name for p in repo.iterdir()) == ["tiny_fused_onnx"]
    folder = repo / "tiny_fused_onnx"
    config = _parse(schema, folder / "config.pbtxt")
    fused = export_dir / "tiny.fused.onnx"
    assert (folder / "1" / "model.onnx").read_bytes() == fused.read_bytes()
    assert config.name == "tiny_fused_onnx" and config.platform == "onnxruntime_onnx" and not config.backend
    assert config.max_batch_size == 4
    assert _declared(schema, config) == _graph_io(fused)
    # Raw frames in: [H, W, 3] uint8 of any size; K = top-k = 50 detections out.
    assert _declared(schema, config)["frames"] == ("TYPE_UINT8", [-1, -1, 3])
    assert _declared(schema, config)["labels"] == ("TYPE_INT64", [50])
    assert _declared(schema, config)["boxes"] == ("TYPE_FP32", [50, 4])
    assert config.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert all(1 <= size <= 4 for size in config.dynamic_batching.preferred_batch_size)
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    assert [(g.count, schema.ModelInstanceGroup.Kind.Name(g.kind)) for g in config.instance_group] == [(2, "KIND_AUTO")]
    assert _metadata_of(config) == read_onnx_metadata(fused)


def test_plain_onnx_declares_int64_sizes_and_the_metadata(tiny_onnx: Path, tmp_path: Path, schema) -> None:
    model = write_triton_model(tiny_onnx, tmp_path, options=TritonOptions(kind="cpu", max_queue_delay_us=500))
    config = _parse(schema, model.config)
    assert model.config == tmp_path / "tiny_onnx" / "config.pbtxt"
    assert _declared(schema, config) == _graph_io(tiny_onnx)
    assert _declared(schema, config)["orig_target_sizes"] == ("TYPE_INT64", [2])
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert schema.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_CPU"
    metadata = read_onnx_metadata(tiny_onnx)
    assert _metadata_of(config) == metadata and config.max_batch_size == metadata.batch[2]


def test_metadata_with_quotes_backslashes_and_unicode_survives_the_text_format(
    tiny_onnx: Path, tmp_path: Path, schema
) -> None:
    model = onnx.load(str(tiny_onnx))
    names = ['say "cheese"', "back\\slash", "čajník\tteapot"]
    for prop in model.metadata_props:
        if prop.key == "class_names":
            prop.value = json.dumps(names)
    path = tmp_path / "odd.onnx"
    onnx.save(model, str(path))
    config = _parse(schema, write_triton_model(path, tmp_path / "repo", name="odd").config)
    assert config.name == "odd"
    assert list(_metadata_of(config).class_names) == names


def test_fixed_or_non_unit_batch_is_refused_in_one_line(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    from rtdetr_deploy.cli.export import main

    code = main([str(tiny_checkpoint), "-o", str(tmp_path), "--batch", "2", "--triton", str(tmp_path / "repo")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("rtdetr-export: error:") and "fixed batch of 2" in err and "--dynamic-batch" in err
    assert not list(tmp_path.iterdir())  # refused before anything was exported

    code = main([str(tiny_checkpoint), "-o", str(tmp_path), "--dynamic-batch", "2,2,4", "--triton", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "from 2" in err and "--dynamic-batch 1,OPT,4" in err


def test_openvino_ir_gets_the_openvino_backend_and_its_weights(tiny_onnx: Path, tmp_path: Path, schema) -> None:
    openvino = pytest.importorskip("openvino", reason="needs openvino: pip install 'rtdetr-deploy[openvino]'")
    from rtdetr_deploy.runtime.openvino_backend import RT_INFO_SECTION

    ir = openvino.convert_model(str(tiny_onnx))
    for key, value in read_onnx_metadata(tiny_onnx).to_props().items():
        ir.set_rt_info(value, [RT_INFO_SECTION, key])
    xml = tmp_path / "tiny.openvino-fp32.xml"
    openvino.save_model(ir, str(xml), compress_to_fp16=False)

    model = write_triton_model(xml, tmp_path / "repo")
    config = _parse(schema, model.config)
    folder = tmp_path / "repo" / "tiny_openvino_fp32_xml" / "1"
    assert config.backend == "openvino" and not config.platform
    assert (folder / "model.xml").read_bytes() == xml.read_bytes()
    assert (folder / "model.bin").read_bytes() == xml.with_suffix(".bin").read_bytes()
    assert _declared(schema, config) == _graph_io(tiny_onnx)
    assert "HINT_BF16" not in config.parameters  # an FP32 IR; only a BF16 one asks for bf16
    assert schema.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_CPU"  # the backend's only kind
    with pytest.raises(ValueError, match="CPU only"):
        write_triton_model(xml, tmp_path / "repo", options=TritonOptions(kind="gpu"))


def test_engine_declares_what_the_builder_recorded(tiny_onnx: Path, tmp_path: Path, schema) -> None:
    metadata = read_onnx_metadata(tiny_onnx)
    h, w = metadata.input_size
    io = {  # as TensorRT declares an engine built with int32 sizes; -1 marks the dynamic batch
        "images": {"mode": "input", "dtype": "float32", "shape": [-1, 3, h, w]},
        "orig_target_sizes": {"mode": "input", "dtype": "int32", "shape": [-1, 2]},
        "labels": {"mode": "output", "dtype": "int64", "shape": [-1, metadata.topk]},
        "boxes": {"mode": "output", "dtype": "float32", "shape": [-1, metadata.topk, 4]},
        "scores": {"mode": "output", "dtype": "float32", "shape": [-1, metadata.topk]},
    }
    engine = tmp_path / "tiny.fp16.engine"
    engine.write_bytes(b"placeholder plan: the writer copies it and never parses it")
    sidecar = sidecar_dict(
        metadata.to_props(),
        tensorrt_version="10.7.0",
        gpu_name="NVIDIA H100",
        compute_capability=(9, 0),
        precision="fp16",
        input_size_hw=[h, w],
        batch=(1, 2, 8),
        io=io,
    )
    sidecar_path(engine).write_text(json.dumps(sidecar), encoding="utf-8")

    config = _parse(schema, write_triton_model(engine, tmp_path / "repo").config)
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert (tmp_path / "repo" / "tiny_fp16_engine" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert config.max_batch_size == 8
    assert _declared(schema, config)["orig_target_sizes"] == ("TYPE_INT32", [2])
    assert _declared(schema, config)["images"] == ("TYPE_FP32", [3, h, w])
    assert _metadata_of(config).precision == "fp16"


def test_unservable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.onnx, \.engine or OpenVINO \.xml"):
        write_triton_model(tmp_path / "best.pth", tmp_path / "repo")
    with pytest.raises(FileNotFoundError):
        write_triton_model(tmp_path / "missing.onnx", tmp_path / "repo")
    with pytest.raises(ValueError, match="instances"):
        TritonOptions(instances=0)
