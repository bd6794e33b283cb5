"""rtdetr-export end to end on the tiny preset: outputs, metadata, batches, sampling, bad input, atomicity."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from helpers import CATEGORY_IDS, CLASS_NAMES  # noqa: E402

from rtdetr_deploy.cli.export import main  # noqa: E402
from rtdetr_deploy.metadata import ModelMetadata  # noqa: E402

TESTDATA = Path(__file__).parents[1] / "data"


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def dynamic_export(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("dynamic")
    assert main([str(tiny_checkpoint), "-o", str(out), "--imgsz", "128,192", "--dynamic-batch", "1,2,4"]) == 0
    return out / "tiny.onnx"


def test_help_lists_every_option(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    flags = ("--preset", "--imgsz", "--sampling", "--dynamic-batch", "--topk", "--opset", "--no-simplify", "--trt")
    for flag in (*flags, "--fp16", "--eval-data", "--max-fp16-drop", "--max-int8-drop"):
        assert flag in text


def test_export_writes_verified_onnx_without_gridsample(dynamic_export):
    model = onnx.load(str(dynamic_export))
    assert "GridSample" not in {n.op_type for n in model.graph.node}
    assert "LayerNormalization" in {n.op_type for n in model.graph.node}
    assert [i.name for i in model.graph.input] == ["images", "orig_target_sizes"]
    assert [o.name for o in model.graph.output] == ["labels", "boxes", "scores"]
    report = json.loads(dynamic_export.with_name("tiny.verify.json").read_text())
    assert report["passed"] is True
    verification = report["verification"]
    assert verification["passed"] and verification["published_equals_probe"]
    assert verification["raw"]["within_tolerance"] == 1.0 and verification["decisions"]["disagreements"] == 0
    # The swap is measured on the same weights: discrete sampling changes a model trained with bilinear sampling.
    assert report["swap"]["max_abs_score_delta"] > 0
    assert sorted(p.name for p in dynamic_export.parent.iterdir()) == ["tiny.onnx", "tiny.verify.json"]


def test_metadata_round_trips(dynamic_export, tiny_checkpoint):
    props = {p.key: p.value for p in onnx.load(str(dynamic_export)).metadata_props}
    meta = ModelMetadata.from_props(props)
    assert meta.preset == "tiny"
    assert meta.input_size == (128, 192)
    assert meta.class_names == tuple(CLASS_NAMES)
    assert meta.category_ids == tuple(CATEGORY_IDS)
    assert meta.sampling == "discrete"
    assert meta.batch == (1, 2, 4)
    assert meta.preprocessing.mean is None
    import hashlib

    assert meta.source_sha256 == hashlib.sha256(Path(tiny_checkpoint).read_bytes()).hexdigest()


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_dynamic_batch_really_is_dynamic(dynamic_export, batch):
    session = ort.InferenceSession(str(dynamic_export), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(batch).random((batch, 3, 128, 192), dtype=np.float32)
    sizes = np.array([[640 + i, 480] for i in range(batch)], dtype=np.int64)
    labels, boxes, scores = session.run(None, {"images": images, "orig_target_sizes": sizes})
    # top-k is capped at queries x classes: 50 x 3 for the tiny preset.
    assert labels.shape == scores.shape == (batch, 150)
    assert boxes.shape == (batch, 150, 4)
    assert labels.dtype == np.int64 and boxes.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 0)
    # Per-image sizes are honoured: single-image runs give the same rows.
    for i in range(batch):
        single = session.run(None, {"images": images[i : i + 1], "orig_target_sizes": sizes[i : i + 1]})
        np.testing.assert_allclose(single[1][0], boxes[i], rtol=1e-5, atol=1e-3)


def test_bilinear_export_keeps_gridsample(tiny_checkpoint, tmp_path, capsys):
    code, out, _ = _run([tiny_checkpoint, "-o", tmp_path, "--imgsz", "128", "--sampling", "bilinear"], capsys)
    assert code == 0
    ops = {n.op_type for n in onnx.load(str(tmp_path / "tiny.onnx")).graph.node}
    assert "GridSample" in ops
    assert "Op census:" in out


def test_fixed_batch_export_rejects_other_batches(tiny_checkpoint, tmp_path, capsys):
    assert _run([tiny_checkpoint, "-o", tmp_path, "--imgsz", "128", "--batch", "2"], capsys)[0] == 0
    session = ort.InferenceSession(str(tmp_path / "tiny.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--imgsz", "300"], "multiples of 32"),
        (["--imgsz", "big"], "--imgsz must be N or H,W"),
        (["--dynamic-batch", "4,2,1"], "MIN <= OPT <= MAX"),
        (["--dynamic-batch", "1,2"], "MIN,OPT,MAX"),
        (["--batch", "0"], "--batch must be positive"),
        (["--trt", "int8"], "pass --calib DIR"),
        (["--calib", "/nonexistent/calib"], "calibration folder not found"),
        (["--preset", "r19vd"], "unknown preset"),
        (["--opset", "13"], "opset must be 17 or newer"),
        (["--int8-cpu", "--calib", TESTDATA, "--int8-keep-float", "backbone.stem1"], "valid groups: backbone.stem,"),
        (["--int8-cpu", "--calib", TESTDATA, "--calib-method", "median"], "--calib-method must be one of"),
        (["--int8-cpu", "--calib", TESTDATA, "--int8-sensitivity"], "--int8-sensitivity needs labelled data"),
    ],
)
def test_bad_arguments_give_one_line_and_write_nothing(tiny_checkpoint, tmp_path, capsys, args, message):
    out_dir = tmp_path / "out"
    code, _, err = _run([tiny_checkpoint, "-o", out_dir, *args], capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_bad_checkpoints_give_one_line(tmp_path, capsys):
    missing = _run([tmp_path / "missing.pth"], capsys)
    assert missing[0] == 2 and "checkpoint not found" in missing[2]
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    code, _, err = _run([junk, "-o", tmp_path / "out"], capsys)
    assert code == 2 and "junk.pth" in err and len(err.strip().splitlines()) == 1


def test_unwritable_output_folder(tiny_checkpoint, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the output folder should go")
    code, _, err = _run([tiny_checkpoint, "-o", blocker / "out"], capsys)
    assert code == 2 and "not writable" in err


def test_failed_verification_leaves_the_folder_as_it_was(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "tiny.onnx").write_bytes(b"previous good export")
    from rtdetr_deploy.export import pipeline

    real_verify = pipeline.verify_against_pytorch

    def failing_verify(*args, **kwargs):
        return dataclasses.replace(real_verify(*args, **kwargs), failures=("simulated mismatch",))

    monkeypatch.setattr(pipeline, "verify_against_pytorch", failing_verify)
    code, _, err = _run([tiny_checkpoint, "-o", out_dir, "--imgsz", "128"], capsys)
    assert code == 1 and "verification failed: simulated mismatch" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["tiny.onnx"]
    assert (out_dir / "tiny.onnx").read_bytes() == b"previous good export"


def test_interrupted_export_leaves_nothing(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "out"
    from rtdetr_deploy.export import pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "verify_against_pytorch", interrupted)
    code, _, err = _run([tiny_checkpoint, "-o", out_dir, "--imgsz", "128"], capsys)
    assert code == 130 and "nothing was written" in err
    assert list(out_dir.iterdir()) == []


def test_verification_on_real_photos(tiny_checkpoint, tmp_path, capsys):
    photos = sorted(p for p in TESTDATA.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    assert photos, f"the test photographs are missing from {TESTDATA}"
    code, _, _ = _run([tiny_checkpoint, "-o", tmp_path, "--imgsz", "128", "--verify-images", TESTDATA], capsys)
    assert code == 0
    report = json.loads((tmp_path / "tiny.verify.json").read_text())
    assert report["verification"]["images"] == min(len(photos), 4)


def _tensorrt_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(_tensorrt_installed(), reason="checks the path taken without TensorRT")
def test_trt_fp16_without_tensorrt_keeps_the_verified_fp16_onnx(tiny_checkpoint, tmp_path, capsys):
    code, _, err = _run([tiny_checkpoint, "-o", tmp_path, "--imgsz", "256", "--trt", "fp16"], capsys)
    assert code == 1
    assert "TensorRT is not installed" in err and "tiny.fp16.onnx" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.fp16.onnx", "tiny.onnx", "tiny.verify.json"]
    report = json.loads((tmp_path / "tiny.verify.json").read_text())
    fp16_report = report["variants"]["fp16"]
    assert fp16_report["passed"] and fp16_report["published_equals_probe"]
    fp16 = onnx.load(str(tmp_path / "tiny.fp16.onnx"))
    assert {p.key: p.value for p in fp16.metadata_props}["precision"] == "fp16"
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in fp16.graph.initializer)


@pytest.mark.skipif(_tensorrt_installed(), reason="checks the path taken without TensorRT")
def test_trt_int8_and_cpu_int8_write_qdq_models_that_onnxruntime_runs(tiny_checkpoint, tmp_path, capsys):
    args = [tiny_checkpoint, "-o", tmp_path, "--imgsz", "128", "--trt", "int8", "--calib", TESTDATA, "--int8-cpu"]
    code, _, err = _run(args, capsys)
    assert code == 1 and "tiny.int8.onnx" in err
    report = json.loads((tmp_path / "tiny.verify.json").read_text())
    session_inputs = {"images": np.zeros((1, 3, 128, 128), np.float32), "orig_target_sizes": np.array([[64, 48]])}
    for name in ("int8", "int8-cpu"):
        assert report["variants"][name]["file"] == f"tiny.{name}.onnx"
        path = tmp_path / f"tiny.{name}.onnx"
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        labels, boxes, scores = session.run(None, session_inputs)
        assert labels.shape == (1, 150) and boxes.shape == (1, 150, 4) and np.isfinite(scores).all()


def test_calibration_folder_without_images_is_one_line(tiny_checkpoint, tmp_path, capsys):
    calib = tmp_path / "calib"
    calib.mkdir()
    (calib / "readme.txt").write_text("no images")
    out_dir = tmp_path / "out"
    code, _, err = _run([tiny_checkpoint, "-o", out_dir, "--imgsz", "128", "--int8-cpu", "--calib", calib], capsys)
    assert code == 2 and "no readable calibration images" in err
    assert len(err.strip().splitlines()) == 1
    assert not any(out_dir.iterdir())


def test_int8_keep_float_reaches_the_int8_graph(tiny_checkpoint, tmp_path, capsys):
    args = [tiny_checkpoint, "-o", tmp_path, "--imgsz", "128", "--int8-cpu", "--calib", TESTDATA]
    code, _, err = _run([*args, "--int8-keep-float", "backbone.stem,decoder.value_proj"], capsys)
    assert code == 0, err
    int8 = onnx.load(str(tmp_path / "tiny.int8-cpu.onnx"))
    record = json.loads({p.key: p.value for p in int8.metadata_props}["quantization"])
    assert record["keep_float"] == ["backbone.stem", "decoder.value_proj"]
    producer = {out: node for node in int8.graph.node for out in node.output}
    stem = [n for n in int8.graph.node if n.op_type == "Conv" and "/backbone/conv1/" in n.name]
    assert len(stem) == 3
    assert not any(
        producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for n in stem for i in n.input
    )
