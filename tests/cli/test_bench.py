"""rtdetr-bench's command line: every bad input ends in one error line and a non-zero exit, before any timing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rtdetr_deploy.cli.bench import build_parser, config_from_args, main


def _fails(argv: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code != 0
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("rtdetr-bench: error: ")
    assert captured.out == ""
    return code, lines[0]


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--backend", "--precision", "--device", "--batch", "--imgsz", "--warmup", "--iters", "--seconds"):
        assert flag in text
    for flag in ("--video", "--json", "--plot", "--markdown", "--cuda-graph", "--sampling"):
        assert flag in text


def test_flags_map_onto_the_config(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["m.onnx", "--backend", "onnxruntime", "--precision", "fp32, INT8", "--batch", "4,1,4", "--seconds", "2"]
    )
    config = config_from_args(args)
    assert config.backends == ("onnxruntime",)
    assert config.precisions == ("fp32", "int8")
    assert config.batches == (1, 4)
    assert config.seconds == 2.0 and config.timed_iters is None
    assert config_from_args(build_parser().parse_args(["m.onnx"])).timed_iters == 50


@pytest.mark.parametrize(
    ("extra", "message", "code"),
    [
        (["--backend", "onnxrt"], "unknown backend 'onnxrt' (did you mean 'onnxruntime'?)", 2),
        (["--backend", "auto,torch"], "name the backends", 2),
        (["--precision", "int4"], "unknown precision 'int4'", 2),
        (["--precision", ""], "--precision is empty", 2),
        (["--sampling", "nearest"], "unknown sampling 'nearest'", 2),
        (["--batch", "0"], "--batch must be comma-separated positive integers", 2),
        (["--batch", "1,x"], "--batch must be comma-separated positive integers", 2),
        (["--batch", "8"], "batch 8 is outside tiny.onnx's batch range 1..4", 2),
        (["--batch", "2,16"], "batch 16 is outside", 2),
        (["--device", "tpu"], "unknown device 'tpu'", 2),
        (["--iters", "0"], "--iters must be positive", 2),
        (["--seconds", "-1"], "--seconds must be positive", 2),
        (["--iters", "5", "--seconds", "1"], "not allowed with argument", 2),
        (["--warmup", "-1"], "--warmup must be 0 or more", 2),
        (["--frames", "0"], "--frames must be positive", 2),
        (["--imgsz", "320,33"], "multiples of 32", 2),
        (["--imgsz", "640"], "fixed at 320x320", 2),
        (["--sampling", "bilinear"], "exported with discrete sampling", 2),
        (["--precision", "int8"], "no int8 model beside tiny.onnx", 2),
        (["--precision", "fp16"], "no fp16 model beside tiny.onnx", 2),
        (["--cuda-graph", "on"], "needs a CUDA device", 2),
        (["--cuda-graph", "maybe"], "unknown --cuda-graph mode", 2),
        (["--backend", "torch"], "the torch backend runs checkpoints (.pth, .safetensors, model folders)", 2),
        (["--video", "missing.mp4"], "video not found: missing.mp4", 2),
        (["--calib", "no-such-folder"], "calibration folder not found", 2),
    ],
)
def test_bad_arguments(
    extra: list[str], message: str, code: int, tiny_onnx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got, line = _fails([tiny_onnx, *extra], capsys)
    assert got == code
    assert message in line


def test_missing_model_and_wrong_suffix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, line = _fails([tmp_path / "nope.onnx"], capsys)
    assert code == 2 and "model not found" in line
    text = tmp_path / "model.txt"
    text.write_text("x")
    code, line = _fails([text], capsys)
    assert code == 2 and "expected a .onnx, .engine, .pth, .safetensors, .mnn, .tflite, .rknn, .ncnn file" in line


def test_fixed_batch_model_refuses_other_batches(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    import onnx

    model = onnx.load(str(tiny_onnx))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, str(fixed))
    code, line = _fails([fixed, "--batch", "1"], capsys)
    assert code == 2 and "fixed batch of 2; pass --batch 2" in line


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_backend_not_installed_names_the_extra(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0")
    code, line = _fails([engine, "--device", "cuda:0"], capsys)
    assert code == 1 and "the tensorrt backend needs tensorrt" in line and "rtdetr-deploy[trt]" in line


def test_missing_torch_names_the_extra(tiny_checkpoint: Path, monkeypatch, capsys) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    code, line = _fails([tiny_checkpoint], capsys)
    assert code == 1 and "pip install 'rtdetr-deploy[torch]'" in line


def test_missing_matplotlib_names_the_extra(tiny_onnx: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    code, line = _fails([tiny_onnx, "--plot", tmp_path / "p.png"], capsys)
    assert code == 1 and "rtdetr-deploy[bench]" in line
    assert not (tmp_path / "p.png").exists()


def test_cuda_on_a_cpu_only_onnxruntime(tiny_onnx: Path, capsys) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    code, line = _fails([tiny_onnx, "--device", "cuda:0"], capsys)
    assert code == 1 and "onnxruntime-gpu" in line


def test_torch_cannot_run_int8(tiny_checkpoint: Path, capsys) -> None:
    code, line = _fails([tiny_checkpoint, "--precision", "int8"], capsys)
    assert code == 2 and "no listed backend runs int8" in line and "add --backend onnxruntime" in line


def test_engine_needs_a_gpu(tmp_path: Path, capsys) -> None:
    if importlib.util.find_spec("tensorrt") is None:
        pytest.skip("TensorRT is not installed: the missing backend is reported first")
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0")
    code, line = _fails([engine], capsys)
    assert code == 2 and "CUDA GPUs only" in line


def test_not_a_video(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    image = Path(__file__).parents[1] / "data" / "rocket.jpg"
    code, line = _fails([tiny_onnx, "--video", image], capsys)
    assert code == 2 and "--video must be a video file" in line
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(b"not a video")
    code, line = _fails([tiny_onnx, "--video", garbage], capsys)
    assert code == 2 and "cannot open video file" in line


def test_an_ncnn_folder_is_benchmarked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ncnn", reason="needs the ncnn runtime: pip install 'rtdetr-deploy[ncnn]'")
    folder = Path(__file__).parents[1] / "data" / "tiny_synthetic.ncnn"
    out = tmp_path / "bench.json"
    assert main([str(folder), "--iters", "2", "--warmup", "1", "--no-peak", "--json", str(out)]) == 0
    assert "| ncnn fp32 bilinear | 1 |" in capsys.readouterr().out
    assert out.is_file()
