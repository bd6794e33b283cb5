"""The accuracy instrument on a trained detector: the shipped tiny checkpoint and its exports.

- rtdetr-eval scores a checkpoint and its ONNX (same sampling) alike, and agrees with an evaluation written apart
  from the package (OpenCV resize + ONNX Runtime + pycocotools, ``benchmarks/independent_eval.py``);
- the trainer's own validation (which uses the runtime's preprocessing) reports the AP rtdetr-eval measures;
- INT8 for ONNX Runtime costs at most 0.01 AP on it, and the INT8 sensitivity analysis covers every group.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("faster_coco_eval")

from rtdetr_deploy.data import SyntheticConfig, generate_synthetic, pretrained_tiny  # noqa: E402
from rtdetr_deploy.eval.evaluate import evaluate_models, load_eval_data  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic set drawn from another seed (held-out data of the same kind): 64 images to calibrate on,
    100 to evaluate on (the size of the synthetic validation split: on 40 images the AP of two graphs that
    differ in a few boxes already moves by about 0.01)."""
    root = tmp_path_factory.mktemp("held_out")
    generate_synthetic(root, SyntheticConfig(seed=11, num_train=64, num_val=100, video_frames=0))
    return root


@pytest.fixture(scope="module")
def exported(held_out: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shipped checkpoint exported in its own (bilinear) sampling, with the INT8 variant for ONNX Runtime."""
    from rtdetr_deploy.export.config import ExportConfig
    from rtdetr_deploy.export.pipeline import export

    folder = tmp_path_factory.mktemp("shipped_export")
    config = ExportConfig(
        weights=pretrained_tiny(),
        out_dir=folder,
        sampling="bilinear",
        int8_cpu=True,
        calib=held_out / "images" / "train",
        verify_images=held_out / "images" / "val",
    )
    result = export(config, verbose=False)
    return {
        "pth": pretrained_tiny(),
        "onnx": result.onnx,
        "int8": result.onnx.with_name("tiny_synthetic.int8-cpu.onnx"),
    }


def _independent():  # noqa: ANN202 - the benchmarks module
    spec = importlib.util.spec_from_file_location("independent_eval", BENCHMARKS / "independent_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checkpoint_and_its_onnx_score_the_same_and_an_independent_evaluation_agrees(exported, held_out) -> None:
    data = load_eval_data(held_out)
    pth, onnx_score = evaluate_models([exported["pth"], exported["onnx"]], data, progress=False)
    assert onnx_score.metrics["AP"] > 0.4, "the shipped checkpoint is a working detector"
    assert abs(pth.metrics["AP"] - onnx_score.metrics["AP"]) <= 0.01
    independent = _independent().evaluate(
        exported["onnx"], held_out / "annotations" / "instances_val.json", held_out / "images" / "val"
    )
    assert abs(independent["AP"] - onnx_score.metrics["AP"]) <= 0.01
    assert abs(independent["AP50"] - onnx_score.metrics["AP50"]) <= 0.01


def test_the_trainer_reports_the_ap_of_the_deployed_model(exported, held_out) -> None:
    """Training-time evaluation preprocesses as deployment does, so it reports what rtdetr-eval measures."""
    from torch.utils.data import DataLoader

    from rtdetr_deploy import load_model
    from rtdetr_deploy.train.dataset import CocoDetection, collate
    from rtdetr_deploy.train.distributed import setup_distributed
    from rtdetr_deploy.train.engine import evaluate

    data = load_eval_data(held_out)
    model = load_model(exported["pth"])
    loader = DataLoader(
        CocoDetection(data.coco, size=model.info.input_size, train=False), batch_size=4, collate_fn=collate
    )
    metrics, _ = evaluate(
        model, loader, data.coco.coco, category_ids=data.coco.category_ids, dist_info=setup_distributed("cpu"),
        progress=False,
    )  # fmt: skip
    (deployed,) = evaluate_models([exported["onnx"]], data, progress=False)
    assert abs(metrics["AP"] - deployed.metrics["AP"]) <= 0.005


def test_int8_for_onnxruntime_costs_at_most_one_ap_point(exported, held_out) -> None:
    data = load_eval_data(held_out)
    fp32, int8 = evaluate_models([exported["onnx"], exported["int8"]], data, progress=False)
    assert int8.precision == "int8"
    assert fp32.metrics["AP"] - int8.metrics["AP"] <= 0.01


@pytest.mark.slow
def test_int8_sensitivity_covers_every_group(exported, held_out) -> None:
    import onnx

    from rtdetr_deploy.export.int8_groups import INT8_GROUPS, nodes_in_groups
    from rtdetr_deploy.export.int8_sensitivity import int8_sensitivity
    from rtdetr_deploy.runtime.sources import read_image_folder

    data = load_eval_data(held_out)
    images = read_image_folder(held_out / "images" / "train", limit=8)
    groups = ["backbone.stem", "encoder.ccff", "decoder.value_proj"]
    table = int8_sensitivity(exported["onnx"], images, data, groups=groups)
    assert [row["group"] for row in table["groups"]] == groups
    model = onnx.load(str(exported["onnx"]))
    low, high = sorted((table["fp32_AP"], table["int8_AP"]))
    for row in table["groups"]:
        assert row["nodes"] == len(nodes_in_groups(model, [row["group"]])) > 0
        # One group back in float lands between full INT8 and FP32, give or take noise; a broken run would not.
        assert low - 0.02 <= row["AP"] <= high + 0.02, row
    assert set(INT8_GROUPS) >= set(groups)
