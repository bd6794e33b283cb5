"""Third-party targets without their toolchains: the engine judge on hand-made detections, the LiteRT rewrite's
exactness, the RKNN driver's protocol and every bad input that needs no engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rtdetr_deploy.errors import ExportError
from rtdetr_deploy.export.rknn import DRIVER, build_rknn
from rtdetr_deploy.export.target_config import TargetsConfig
from rtdetr_deploy.export.targets import ENGINE_RULES, judge_engine


def _detections(count: int = 12) -> dict[str, np.ndarray]:
    """One image, ``count`` well-separated boxes with scores 0.95, 0.90, ... (decided at any margin used here)."""
    boxes = np.array([[40.0 * i, 10.0, 40.0 * i + 30.0, 60.0] for i in range(count)], np.float32)
    scores = np.array([0.95 - 0.05 * i for i in range(count)] + [0.01] * 8, np.float32)
    boxes = np.concatenate([boxes, np.tile([[0, 0, 5, 5]], (8, 1)).astype(np.float32)])
    labels = np.array([i % 3 for i in range(count)] + [0] * 8, np.int64)
    return {"labels": labels[None], "boxes": boxes[None], "scores": scores[None]}


def test_judge_accepts_identical_and_rejects_moved_boxes_and_scores() -> None:
    reference = _detections()
    assert judge_engine(reference, _detections(), rules=ENGINE_RULES["fp32"])["passed"]
    moved = _detections()
    moved["boxes"][0, 3, 0] += 2.0  # one corner of the fourth box, 2 px
    verdict = judge_engine(reference, moved, rules=ENGINE_RULES["fp32"])
    assert not verdict["passed"] and verdict["max_box_delta_px"] == pytest.approx(2.0)
    assert judge_engine(reference, moved, rules=ENGINE_RULES["fp16"])["passed"]  # 4 px allowed
    rescored = _detections()
    rescored["scores"][0, 5] -= 0.004
    assert not judge_engine(reference, rescored, rules=ENGINE_RULES["fp32"])["passed"]


def test_judge_rejects_a_lost_detection() -> None:
    lost = _detections()
    lost["labels"][0, 2] = 2 if lost["labels"][0, 2] != 2 else 1
    verdict = judge_engine(_detections(), lost, rules=ENGINE_RULES["fp16"])
    assert not verdict["passed"] and verdict["matched"] == pytest.approx(11 / 12)


def test_an_int8_engine_is_judged_and_shrunken_boxes_are_refused() -> None:
    """RKNN INT8 of the tiny returned boxes about 0.65 times their size (measured); such a file must be refused."""
    reference = _detections()
    shrunk = _detections()
    shrunk["boxes"][0, :12] *= 0.65
    verdict = judge_engine(reference, shrunk, rules=ENGINE_RULES["int8"])
    assert not verdict["passed"] and verdict["matched"] < 0.5
    nudged = _detections()
    nudged["boxes"][0, 3, 0] += 3.0
    nudged["scores"][0, 5] -= 0.02
    assert judge_engine(reference, nudged, rules=ENGINE_RULES["int8"])["passed"]


def test_rknn_needs_its_interpreter(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--rknn-python"):
        TargetsConfig(rknn="rk3588")
    with pytest.raises(ValueError, match="rk3588"):
        TargetsConfig(rknn="rk9999", rknn_python=Path(sys.executable))
    with pytest.raises(FileNotFoundError, match="no interpreter"):
        TargetsConfig(rknn="rk3588", rknn_python=tmp_path / "python")


def test_driver_refuses_a_bad_job_file(tmp_path: Path) -> None:
    bad = tmp_path / "job.json"
    bad.write_text("{")
    done = subprocess.run([sys.executable, str(DRIVER), str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "bad job file" in done.stderr


def test_build_rknn_names_a_missing_toolkit(tmp_path: Path) -> None:
    """This interpreter has no rknn-toolkit2: the driver fails at its import and the error says so."""
    pixels = np.zeros((1, 3, 32, 32), np.float32)
    sizes = np.array([[32, 32]], np.int64)

    def build(precision: str) -> None:
        build_rknn(
            tmp_path / "none.onnx",
            tmp_path / "none.rknn",
            python=Path(sys.executable),
            platform="rk3588",
            precision=precision,
            input_size=(32, 32),
            verify_inputs=(pixels, sizes),
        )

    with pytest.raises(ExportError, match="rknn-toolkit2 is not installed"):
        build("fp16")
    with pytest.raises(ValueError, match="--calib"):
        build("int8")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--rknn", "rk3588"], "--rknn-python"),
        (["--rknn", "rk3588", "--rknn-python", "/nonexistent/python"], "no interpreter"),
        (["--rknn", "rk1234"], "invalid choice"),
        (["--ncnn"], "--ncnn-python PATH or set RTDETR_NCNN_PYTHON"),
        (["--ncnn", "--ncnn-python", "/nonexistent/python"], "no interpreter"),
        (["--ncnn", "--ncnn-python", sys.executable], "--ncnn needs --sampling bilinear"),
        (["--ncnn", "--ncnn-python", sys.executable, "--sampling", "bilinear", "--outputs", "raw"], "--outputs raw"),
    ],
)
def test_cli_rejects_bad_engine_flags(tmp_path: Path, capsys, monkeypatch, flags, message) -> None:  # noqa: ANN001
    from rtdetr_deploy.cli.export import main

    monkeypatch.delenv("RTDETR_RKNN_PYTHON", raising=False)
    monkeypatch.delenv("RTDETR_NCNN_PYTHON", raising=False)
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    assert main([str(weights), "-o", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("rtdetr-export: error:") and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pth"]


@pytest.mark.parametrize(
    ("variable", "flags", "field"),
    [
        ("RTDETR_RKNN_PYTHON", ["--rknn", "rk3576"], "rknn_python"),
        ("RTDETR_NCNN_PYTHON", ["--ncnn", "--sampling", "bilinear"], "ncnn_python"),
    ],
)
def test_engine_interpreter_from_the_environment(monkeypatch, variable, flags, field) -> None:  # noqa: ANN001
    from rtdetr_deploy.cli.export import build_parser, config_from_args

    monkeypatch.setenv(variable, sys.executable)
    args = build_parser().parse_args(["w.pth", *flags])
    assert getattr(config_from_args(args).targets, field) == Path(sys.executable)


def test_sidecar_round_trip_and_refusals(tmp_path: Path) -> None:
    from rtdetr_deploy.errors import ModelFileError
    from rtdetr_deploy.metadata import ModelMetadata
    from rtdetr_deploy.runtime.engine_sidecar import read_engine_sidecar, write_engine_sidecar

    metadata = ModelMetadata(preset="tiny", input_size=(64, 96), class_names=("a", "b"), category_ids=(3, 7), topk=5)
    engine = tmp_path / "m.tflite"
    engine.write_bytes(b"x")
    write_engine_sidecar(engine, metadata, engine="litert", conversion={"onnx2tf": "1"})
    assert read_engine_sidecar(engine, engine="litert") == (metadata, {"onnx2tf": "1"})
    with pytest.raises(ModelFileError, match="'litert' engine, not 'mnn'"):
        read_engine_sidecar(engine, engine="mnn")
    (tmp_path / "m.tflite.json").write_text(json.dumps({"metadata": {"preset": "tiny"}, "engine": "litert"}))
    with pytest.raises(ModelFileError, match="input_size"):
        read_engine_sidecar(engine, engine="litert")


def test_where_zero_as_mul_is_exact() -> None:
    """``Where(mask, x, 0)`` and its LiteRT rewrite ``Mul(x, Cast(mask))`` agree in ONNX Runtime."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from rtdetr_deploy.export.litert import where_zero_as_mul

    graph = helper.make_graph(
        [helper.make_node("Where", ["mask", "x", "zero"], ["y"], name="w")],
        "g",
        [
            helper.make_tensor_value_info("mask", TensorProto.BOOL, [4, 1]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])],
        initializer=[numpy_helper.from_array(np.array(0.0, np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    mask = np.array([[True], [False], [True], [False]])
    x = np.arange(-6, 6, dtype=np.float32).reshape(4, 3)
    (expected,) = ort.InferenceSession(model.SerializeToString()).run(None, {"mask": mask, "x": x})
    assert where_zero_as_mul(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Cast", "Mul"]
    (y,) = ort.InferenceSession(model.SerializeToString()).run(None, {"mask": mask, "x": x})
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(y, np.where(mask, x, 0))


def test_param_census_finds_unconverted_operators_and_reductions_over_no_axis(tmp_path: Path) -> None:
    from rtdetr_deploy.export.ncnn import param_census

    param = tmp_path / "graph.ncnn.param"
    param.write_text(
        "7767517\n5 6\n"
        "Input in0 0 1 in0\n"
        "Reduction sum_ok 1 1 in0 a 0=0 1=0 -23303=1,1 4=1\n"
        "Reduction sum_all 1 1 a b 0=0 1=1 -23303=0\n"
        "Reduction sum_copy 1 1 b c 0=0 1=0 -23303=0 4=1\n"
        "Tensor.reshape reshape_0 1 1 c out0 shape=(1,2,3,4,5)\n"
    )
    census = param_census(param)
    assert census.layers == {"Input": 1, "Reduction": 3, "Tensor.reshape": 1}
    assert census.unconverted == ("Tensor.reshape",)
    assert census.broken == ("sum_copy",)


def test_ncnn_conversion_names_a_missing_pnnx(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from rtdetr_deploy.export.ncnn import convert_ncnn
    from rtdetr_deploy.metadata import ModelMetadata
    from rtdetr_deploy.models.checkpoint import load_model

    weights = Path(__file__).parents[2] / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"
    model = load_model(weights, sampling="bilinear").set_eval_size((256, 256))
    metadata = ModelMetadata(
        preset="tiny", input_size=(256, 256), class_names=("a",) * 5, category_ids=tuple(range(5)), topk=50
    )
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'pnnx'\" >&2\nexit 1\n")
    python.chmod(0o755)
    with pytest.raises(ExportError, match=f"pnnx is not installed in {python}"):
        convert_ncnn(model, tmp_path / "m.ncnn", python=python, metadata=metadata)
    assert not (tmp_path / "m.ncnn").exists()


def test_an_engine_folder_replaces_the_old_one_whole(tmp_path: Path) -> None:
    from rtdetr_deploy.atomic import replace_folder

    target = tmp_path / "m.ncnn"
    target.mkdir()
    (target / "old.bin").write_text("old")
    new = tmp_path / ".m-new.ncnn"
    new.mkdir()
    (new / "encoder.ncnn.param").write_text("new")
    replace_folder(new, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ncnn"]
    assert [p.name for p in target.iterdir()] == ["encoder.ncnn.param"]
