"""rtdetr-export on the shipped (trained) checkpoint without labelled data.

- INT8 for ONNX Runtime, which costs no labelled AP on it, passes the label-free rule and both files are written;
- an INT8 graph whose decoder value projection is dequantized at twice its scale (0.08 AP lost on labelled
  data, ``benchmarks/results/acceptance_calibration.json``) is refused by name, exit 1, and the verified FP32
  ONNX and the report are still written;
- the discrete export of weights trained with bilinear sampling (AP 0.20 against 0.75 bilinear on held-out
  data) prints one warning with the measured cost and both remedies, and ``--strict-sampling`` refuses it with
  nothing written; the shipped discrete fine-tune exports without a warning.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("faster_coco_eval")

from rtdetr_deploy.cli.export import main  # noqa: E402
from rtdetr_deploy.data import ensure_synthetic, pretrained_tiny  # noqa: E402
from rtdetr_deploy.export.report import ExportReport  # noqa: E402

INT8 = ["--int8-cpu", "--calib-images", "32"]


def _run(argv: list, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def calib() -> Path:
    return ensure_synthetic().train_images


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_int8_without_labels_passes_and_the_swap_warns_once(tmp_path, capsys, calib) -> None:
    code, _, err = _run([pretrained_tiny(), "-o", tmp_path, *INT8, "--calib", calib], capsys)
    assert code == 0, err
    assert (tmp_path / "tiny_synthetic.onnx").is_file() and (tmp_path / "tiny_synthetic.int8-cpu.onnx").is_file()
    report = json.loads((tmp_path / "tiny_synthetic.verify.json").read_text())
    int8 = report["variants"]["int8-cpu"]
    assert int8["rule"].startswith("kept AP") and int8["passed"], int8["failures"]
    (warning,) = _warnings(err)
    assert "bilinear sampling" in warning and "kept AP" in warning
    assert (
        f"rtdetr-train --init {pretrained_tiny()} --sampling discrete" in warning and "--sampling bilinear" in warning
    )
    assert report["swap"]["cost"]["warning"] == warning.removeprefix("warning: ")
    typed = ExportReport.read(tmp_path / "tiny_synthetic.verify.json")
    kept = typed.variants["int8-cpu"].kept_ap
    assert kept.relative >= kept.min_relative == 0.8 and kept.ap == int8["kept_ap"]["AP"]
    assert typed.swap.cost.warning == warning.removeprefix("warning: ") and typed.swap.kept_ap.ap < 0.75


def test_a_broken_int8_is_refused_and_the_verified_files_stay(tmp_path, capsys, calib, monkeypatch) -> None:
    from helpers import broken_int8_value_proj

    from rtdetr_deploy.export import quantize

    original = quantize.quantize_int8

    def broken(onnx_in, onnx_out, *args, **kwargs):  # noqa: ANN001, ANN202
        return broken_int8_value_proj(original(onnx_in, onnx_out, *args, **kwargs), onnx_out, factor=2.0)

    monkeypatch.setattr(quantize, "quantize_int8", broken)
    code, _, err = _run([pretrained_tiny(), "-o", tmp_path, "--sampling", "bilinear", *INT8, "--calib", calib], capsys)
    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith("rtdetr-export: error: refused tiny_synthetic.int8-cpu.onnx: INT8 keeps AP"), line
    assert "tiny_synthetic.onnx" in line.split("written (verified):")[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny_synthetic.onnx", "tiny_synthetic.verify.json"]
    report = json.loads((tmp_path / "tiny_synthetic.verify.json").read_text())
    assert report["passed"] is False and list(report["refused"]) == ["int8-cpu"]
    refused = ExportReport.read(tmp_path / "tiny_synthetic.verify.json").refused["int8-cpu"]
    assert refused.files == ("tiny_synthetic.int8-cpu.onnx", "tiny_synthetic.int8-cpu.fused.onnx")
    assert refused.reason.startswith("INT8 keeps AP")


def test_strict_sampling_refuses_the_costly_swap_and_writes_nothing(tmp_path, capsys) -> None:
    code, _, err = _run([pretrained_tiny(), "-o", tmp_path, "--strict-sampling"], capsys)
    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith("rtdetr-export: error: --strict-sampling: these weights were trained with bilinear")
    assert not any(tmp_path.iterdir())


def test_the_shipped_discrete_fine_tune_exports_without_a_warning(tmp_path, capsys) -> None:
    code, _, err = _run([pretrained_tiny(sampling="discrete"), "-o", tmp_path, "--strict-sampling"], capsys)
    assert code == 0, err
    assert not _warnings(err)
