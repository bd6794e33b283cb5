"""``rtdetr-export --openvino``: FP32, BF16 and NNCF INT8 IRs of the tiny model, verified, evaluated, published.

One export (module fixture) writes every IR with labelled data, so the verification reports, the AP gates and
the files are all checked on it; OpenVINO's own API and ONNX Runtime are the references.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
openvino = pytest.importorskip("openvino")
pytest.importorskip("nncf")
pytest.importorskip("faster_coco_eval")

from rtdetr_deploy.cli.export import build_parser, config_from_args, main  # noqa: E402
from rtdetr_deploy.export.config import ExportConfig  # noqa: E402
from rtdetr_deploy.export.report import ExportReport  # noqa: E402
from rtdetr_deploy.runtime import Detector  # noqa: E402
from rtdetr_deploy.runtime.onnxruntime_backend import read_onnx_metadata  # noqa: E402
from rtdetr_deploy.runtime.openvino_backend import RT_INFO_SECTION, read_openvino_metadata  # noqa: E402

DATA_DIR = Path(__file__).parents[1] / "data"
HAS_BF16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
PRECISIONS = ("fp32", "bf16", "int8") if HAS_BF16 else ("fp32", "int8")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> tuple[Path, ExportReport]:
    """A tiny checkpoint with the synthetic set's classes exported with every IR, 3 calibration images and the
    synthetic validation split as labelled data; ``(out_dir, report)``."""
    from helpers import synthetic_classes_checkpoint

    from rtdetr_deploy.export.pipeline import export

    folder = tmp_path_factory.mktemp("openvino_export")
    weights = synthetic_classes_checkpoint(folder / "set.pth")
    calib = folder / "calib"
    calib.mkdir()
    for image in sorted((tiny_data / "images" / "train").iterdir())[:3]:
        shutil.copy(image, calib / image.name)
    config = ExportConfig(
        weights=weights, out_dir=folder / "out", batch=(1, 2, 4), openvino=PRECISIONS, calib=calib, eval_data=tiny_data
    )
    result = export(config, verbose=False)
    return folder / "out", result.report


def test_every_ir_is_published_with_its_weights_and_nothing_else(exported: tuple[Path, ExportReport]) -> None:
    out, report = exported
    names = sorted(path.name for path in out.iterdir())
    irs = [f"set.openvino-{p}.{ext}" for p in PRECISIONS for ext in ("bin", "xml")]
    assert names == sorted(["set.onnx", "set.verify.json", *irs])
    on_disk = json.loads((out / "set.verify.json").read_text())
    assert set(on_disk["openvino"]) == {f"openvino-{p}" for p in PRECISIONS}
    for variant, ir_report in on_disk["openvino"].items():
        assert ir_report["published_equals_probe"], variant
        assert ir_report["file"] == f"set.{variant}.xml" and ir_report["weights"] == f"set.{variant}.bin"
        assert ir_report["passed"] == (not ir_report["failures"])
    # FP32 must pass its (rounding-only) rules; BF16 and INT8 are published on their AP (the gate below).
    assert on_disk["openvino"]["openvino-fp32"]["passed"], on_disk["openvino"]["openvino-fp32"]["failures"]


def test_the_published_ir_has_only_the_deploy_outputs_and_fp32_weights(exported: tuple[Path, ExportReport]) -> None:
    out, _ = exported
    core = openvino.Core()
    for precision in ("fp32", "int8"):
        model = core.read_model(str(out / f"set.openvino-{precision}.xml"))
        assert [port.get_any_name() for port in model.outputs] == ["labels", "boxes", "scores"]
        constants = {
            op.get_element_type().get_type_name() for op in model.get_ops() if op.get_type_name() == "Constant"
        }
        assert "f16" not in constants  # save_model's default would have rounded the weights to FP16
        rt_info = model.get_rt_info()
        assert "framework" not in rt_info.keys()  # the ONNX frontend's stale copy (precision fp32) is gone
        record = json.loads(model.get_rt_info([RT_INFO_SECTION, "openvino"]).astype(str))
        assert record["inference_precision_hint"] == "f32"


def test_the_ir_metadata_is_the_onnx_metadata_with_its_precision(exported: tuple[Path, ExportReport]) -> None:
    out, _ = exported
    onnx_metadata = read_onnx_metadata(out / "set.onnx")
    for precision in PRECISIONS:
        ir_metadata = read_openvino_metadata(out / f"set.openvino-{precision}.xml")
        assert ir_metadata == dataclasses.replace(onnx_metadata, precision=precision)


def test_fp32_ir_agrees_with_onnxruntime_and_int8_differs(exported: tuple[Path, ExportReport]) -> None:
    out, report = exported
    images = [cv2.imread(str(DATA_DIR / name)) for name in ("chelsea.png", "rocket.jpg")]
    with Detector(out / "set.onnx", conf=0.0) as ort, Detector(out / "set.openvino-fp32.xml", conf=0.0) as ov:
        assert ov.backend.name == "openvino"
        for image, want, got in zip(images, ort(images), ov(images), strict=True):
            # The verification's tolerances (export.verify.Tolerances): scores, boxes by the larger side. Each
            # detection is paired with the closest one of its class, as near-equal scores may swap ranks.
            assert len(want) == len(got)
            for label, box, score in zip(want.class_ids, want.boxes_xyxy, want.scores, strict=True):
                same = np.flatnonzero(got.class_ids == label)
                closest = same[np.abs(got.boxes_xyxy[same] - box).max(axis=1).argmin()]
                assert np.abs(got.boxes_xyxy[closest] - box).max() <= 1e-4 * max(image.shape[:2])
                assert abs(got.scores[closest] - score) <= 1e-4
    # The verification measured it too, against the FP32 probe in ONNX Runtime: rounding for FP32, much more
    # for INT8 (so the comparison does see a precision change).
    fp32, int8 = report.openvino["openvino-fp32"], report.openvino["openvino-int8"]
    print(f"verification, OpenVINO FP32 vs ONNX Runtime: {fp32.raw}")
    assert fp32.raw.max_encoder_logit_delta < 1e-4 and fp32.raw.max_sorted_score_delta < 1e-5
    assert int8.raw.max_encoder_logit_delta > 1e-3


def _reads_fake_quantize(op: object) -> bool:
    for value in op.input_values():  # type: ignore[attr-defined]
        node = value.get_node()
        while node.get_type_name() == "Convert":
            node = node.input_value(0).get_node()
        if node.get_type_name() == "FakeQuantize":
            return True
    return False


def test_int8_leaves_the_sampling_and_box_heads_unquantized(exported: tuple[Path, ExportReport]) -> None:
    out, report = exported
    model = openvino.Core().read_model(str(out / "set.openvino-int8.xml"))
    matmuls = {op.get_friendly_name(): op for op in model.get_ops() if op.get_type_name() == "MatMul"}
    heads = [name for name in matmuls if "sampling_offsets" in name or "bbox_head" in name]
    assert len(heads) >= 5  # two decoder layers' offsets, three box heads of several layers
    assert not [name for name in heads if _reads_fake_quantize(matmuls[name])]
    assert any(_reads_fake_quantize(op) for name, op in matmuls.items() if name not in heads)
    assert report.openvino["openvino-int8"].target["quantization"]["calibration_images"] == 3


def test_ap_of_each_ir_is_gated_against_the_onnx(exported: tuple[Path, ExportReport]) -> None:
    _, report = exported
    gates = report.accuracy.gates
    assert set(gates) == {"fp32", *(f"openvino-{p}" for p in PRECISIONS)}
    assert gates["openvino-fp32"].ap == pytest.approx(gates["fp32"].ap, abs=1e-3)
    assert gates["openvino-int8"].allowed_drop == 0.02
    assert all(gate.accepted for gate in gates.values())


def test_failed_ir_rules_and_ap_gates_refuse_the_variant() -> None:
    from rtdetr_deploy.export.refusal import refused_variants, variant_files

    failing = SimpleNamespace(passed=False, failures=("BF16 keeps only 61.0% of FP32's 400 decided top detections",))
    refused = refused_variants({"openvino-bf16": failing}, None)
    assert refused == {"openvino-bf16": "BF16 keeps only 61.0% of FP32's 400 decided top detections"}
    assert [p.name for p in variant_files(Path(), "m", "openvino-bf16")] == [
        "m.openvino-bf16.xml",
        "m.openvino-bf16.bin",
    ]
    gates = {
        "fp32": SimpleNamespace(ap=0.5, accepted=True),
        "openvino-fp32": SimpleNamespace(ap=0.49, delta_ap=-0.01, allowed_drop=0.001, accepted=False),
    }
    variants = {"openvino-fp32": SimpleNamespace(passed=True)}
    (reason,) = refused_variants(variants, SimpleNamespace(gates=gates)).values()
    assert reason.startswith("loses 0.0100 AP") and reason.endswith("FP32 differs by rounding only)")


def test_openvino_flag_parsing_and_validation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights, calib = tmp_path / "w.pth", tmp_path / "calib"
    weights.write_bytes(b"x")
    calib.mkdir()
    args = build_parser().parse_args([str(weights), "--openvino", "FP32, int8", "--calib", str(calib)])
    assert config_from_args(args).openvino == ("fp32", "int8")
    cases = [
        (["--openvino", "fp16"], "--openvino 'fp16': choose from fp32, bf16, int8"),
        (["--openvino", "int8"], "INT8 needs calibration images: pass --calib DIR"),
        (["--openvino", "fp32,fp32"], "--openvino names a precision twice"),
        (["--openvino", ","], "--openvino needs one or more of fp32, bf16, int8"),
    ]
    for flags, message in cases:
        assert main([str(weights), *flags]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines


def test_openvino_flag_without_openvino_says_what_to_install(tiny_checkpoint: Path, tmp_path: Path) -> None:
    block = """
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("openvino", "nncf"):
                    raise ImportError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, Block())
        from rtdetr_deploy.cli.export import main
    """
    argv = [str(tiny_checkpoint), "-o", str(tmp_path), "--openvino", "fp32"]
    code = textwrap.dedent(block) + f"raise SystemExit(main({argv!r}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert (
        proc.stderr.strip() == "rtdetr-export: error: openvino is not installed: pip install 'rtdetr-deploy[openvino]'"
    )
    assert list(tmp_path.iterdir()) == []
