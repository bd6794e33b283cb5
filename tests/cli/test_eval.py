"""rtdetr-eval end to end on small models: the side-by-side table, the JSON report, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("faster_coco_eval")

from onnx import TensorProto, helper  # noqa: E402

from rtdetr_deploy.cli.eval import main  # noqa: E402
from rtdetr_deploy.data import CATEGORIES, SyntheticConfig, generate_synthetic  # noqa: E402


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 validation images of the synthetic set (5 classes, ids 3, 7, 12, 18, 25) at 96 px."""
    root = tmp_path_factory.mktemp("eval_data")
    generate_synthetic(root, SyntheticConfig(seed=3, num_train=2, num_val=6, image_size=96, video_frames=0))
    return root


@pytest.fixture(scope="module")
def set_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny checkpoint with the synthetic set's classes (random weights) and its verified ONNX."""
    from helpers import synthetic_classes_checkpoint

    from rtdetr_deploy.export.config import ExportConfig
    from rtdetr_deploy.export.pipeline import export

    folder = tmp_path_factory.mktemp("eval_models")
    weights = synthetic_classes_checkpoint(folder / "set.pth")
    onnx_path = export(ExportConfig(weights=weights, out_dir=folder, sampling="bilinear"), verbose=False).onnx
    return weights, onnx_path


def _run(argv: list, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_models_side_by_side_in_the_order_given(set_models, small_set, tmp_path, capsys) -> None:
    weights, onnx_path = set_models
    report_path, table_path = tmp_path / "r.json", tmp_path / "r.md"
    argv = [weights, onnx_path, "--data", small_set, "--json", report_path, "--markdown", table_path, "--per-class"]
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert [Path(m["model"]).name for m in report["models"]] == ["set.pth", "set.onnx"]
    assert [m["backend"] for m in report["models"]] == ["torch", "onnxruntime"]
    assert [m["precision"] for m in report["models"]] == ["fp32", "fp32"]
    assert report["images"] == 6 and report["split"] == "val" and report["data"] == str(small_set)
    first, second = report["models"]
    assert first["delta_AP"] == 0.0 and second["delta_AP"] == pytest.approx(second["AP"] - first["AP"])
    assert set(first["per_class"]) == set(CATEGORIES.values())
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        assert key in first
    # The same weights, the same (bilinear) sampling, PyTorch and ONNX Runtime: the same detections, the same AP.
    assert second["AP"] == pytest.approx(first["AP"], abs=1e-3)
    assert first["latency_ms_p50"] > 0
    header = next(line for line in out.splitlines() if line.startswith("| model"))
    assert header.split("|")[1:-1] == [
        " model ", " backend ", " precision ", " AP ", " AP50 ", " AP75 ", " APs ", " APm ", " APl ", " ΔAP ",
        " p50 ms/img ",
    ]  # fmt: skip
    assert "AP per class" in out and table_path.read_text() == out


def _non_detector_onnx(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


def _empty_split(root: Path) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "images" / "val").mkdir(parents=True)
    (root / "annotations" / "instances_val.json").write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]})
    )
    return root


@pytest.mark.parametrize(
    "case",
    ["missing model", "missing data", "non-detector onnx", "classes differ", "empty split", "bad batch", "no models"],
)
def test_bad_input_is_one_line_and_exit_2(case, set_models, small_set, tiny_checkpoint, tmp_path, capsys) -> None:
    weights, _ = set_models
    cases = {
        "missing model": ([tmp_path / "none.onnx", "--data", small_set], "model not found"),
        "missing data": ([weights, "--data", tmp_path / "nowhere"], "data folder not found"),
        "non-detector onnx": ([_non_detector_onnx(tmp_path / "x.onnx"), "--data", small_set], "not exported by"),
        "classes differ": ([tiny_checkpoint, "--data", small_set], "do not match the categories"),
        "empty split": ([weights, "--data", _empty_split(tmp_path / "empty")], "empty (no images)"),
        "bad batch": ([weights, "--data", small_set, "--batch", "0"], "--batch must be positive"),
        "no models": (["--data", small_set], "the following arguments are required"),
    }
    argv, message = cases[case]
    code, _, err = _run(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("rtdetr-eval: error: ") and message in lines[0], err
    if case == "classes differ":
        assert "1:circle" in lines[0] and "3:circle" in lines[0]


def test_help(capsys) -> None:
    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    for flag in ("--data", "--split", "--backend", "--device", "--batch", "--json", "--markdown", "--per-class"):
        assert flag in out
