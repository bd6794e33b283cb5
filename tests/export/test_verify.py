"""Verification tells ties from errors: correct exports of untrained weights pass (ties counted), and injected
faults (a wrong initializer, x clamped to H - 1 on a rectangular export, a wrong preprocessing scale) are refused
with a message that names them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from helpers import CATEGORY_IDS, CLASS_NAMES, randomize_heads  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from rtdetr_deploy.export.onnx_export import Probe, export_probe, strip_probe  # noqa: E402
from rtdetr_deploy.export.verify import verification_images, verify_against_pytorch  # noqa: E402
from rtdetr_deploy.metadata import ModelMetadata  # noqa: E402
from rtdetr_deploy.models import build_model, get_preset  # noqa: E402

INPUT_SIZE = (128, 192)  # height != width: the x and y clamps differ


def _model(*, untrained: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(get_preset("tiny").with_eval_size(INPUT_SIZE), num_classes=3, sampling="discrete")
    if not untrained:
        randomize_heads(model)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "sampling_offsets.weight" in name:
                    param.copy_(torch.randn_like(param) * 0.05)
    return model.eval()


def _export(model: torch.nn.Module, folder: Path) -> tuple[Probe, Path]:
    metadata = ModelMetadata(
        preset="tiny",
        input_size=INPUT_SIZE,
        class_names=tuple(CLASS_NAMES),
        category_ids=tuple(CATEGORY_IDS),
        topk=100,
        batch=(1, 2, 2),
    )
    probe = export_probe(model, folder / "probe.onnx", metadata=metadata)
    return probe, _publish(probe.path, folder / "model.onnx")


def _publish(probe_path: Path, path: Path) -> Path:
    onnx.save(strip_probe(onnx.load(str(probe_path))), str(path))
    return path


@pytest.fixture(scope="module")
def trained_looking(tmp_path_factory: pytest.TempPathFactory):
    model = _model(untrained=False)
    probe, deploy = _export(model, tmp_path_factory.mktemp("verify"))
    return model, probe, deploy


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return verification_images(None, count=2)


def test_untrained_weights_export_with_their_ties_counted(tmp_path: Path, images) -> None:
    """Zero sampling offsets put every location on a pixel boundary: PyTorch and ONNX Runtime round some of
    them to neighbouring pixels. That is a tie, not an error, and the export passes."""
    model = _model(untrained=True)
    probe, deploy = _export(model, tmp_path)
    report = verify_against_pytorch(probe, deploy, model, images)
    assert report.passed, report.failures
    assert report.decisions.ties > 0 and report.decisions.disagreements == 0
    assert report.raw.within_tolerance == 1.0


def test_a_correct_export_passes_with_every_rule_reported(trained_looking, images) -> None:
    model, probe, deploy = trained_looking
    report = verify_against_pytorch(probe, deploy, model, images)
    assert report.passed, report.failures
    assert report.published_equals_probe is True
    assert report.decisions.points == len(probe.decisions) == 1 + 2 * 3 * 2  # selection + layers x levels x xy
    assert report.detections.decided > 0 and report.detections.matched == 1.0
    assert report.raw.max_logit_delta < 1e-4


def _tampered(probe: Probe, folder: Path, change) -> tuple[Probe, Path]:  # noqa: ANN001 - a callable
    model = onnx.load(str(probe.path))
    change(model)
    path = folder / "tampered.probe.onnx"
    onnx.save(model, str(path))
    return Probe(path, probe.decisions), _publish(path, folder / "tampered.onnx")


def test_one_wrong_initializer_is_refused(trained_looking, images, tmp_path: Path) -> None:
    model, probe, _ = trained_looking

    def scale_a_backbone_weight(graph_model: onnx.ModelProto) -> None:
        producer = {out: node for node in graph_model.graph.node for out in node.output}
        conv = next(n for n in graph_model.graph.node if n.op_type == "Conv" and "backbone" in n.name)
        init = next(i for i in graph_model.graph.initializer if i.name == conv.input[1])
        assert init.name not in producer
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))

    bad_probe, bad_deploy = _tampered(probe, tmp_path, scale_a_backbone_weight)
    report = verify_against_pytorch(bad_probe, bad_deploy, model, images)
    assert not report.passed
    text = "; ".join(report.failures)
    assert "decisions differ from PyTorch's away from any tie; the first at query selection" in text, text
    assert "raw queries agree" in text


def test_x_clamped_to_h_minus_1_on_a_rectangular_export_is_refused(trained_looking, images, tmp_path: Path) -> None:
    """The official code's clamp of x to H - 1 (wrong for W != H), injected into the graph, is found and named."""
    model, probe, _ = trained_looking
    heights = {0: INPUT_SIZE[0] // 8, 1: INPUT_SIZE[0] // 16, 2: INPUT_SIZE[0] // 32}

    def clamp_x_to_h(graph_model: onnx.ModelProto) -> None:
        producer = {out: node for node in graph_model.graph.node for out in node.output}
        for index, (kind, where) in enumerate(probe.decisions):
            if kind != "index" or not where.endswith(", x"):
                continue
            node = producer[f"decision.{index}.outcome"]
            while node.op_type != "Clip":
                node = producer[node.input[0]]
            level = int(where.split("level ")[1].split(",")[0])
            name = f"x_max_as_h_{index}"
            graph_model.graph.initializer.append(
                numpy_helper.from_array(np.array(heights[level] - 1, dtype=np.float32), name)
            )
            node.input[2] = name

    bad_probe, bad_deploy = _tampered(probe, tmp_path, clamp_x_to_h)
    report = verify_against_pytorch(bad_probe, bad_deploy, model, images)
    assert not report.passed
    first = report.decisions.first_disagreement
    assert first.startswith("decoder layer 0, level ") and ", x:" in first, first
    wrong_axes = {p.where.rsplit(", ", 1)[1] for p in report.decisions.per_point if p.disagreements}
    assert "x" in wrong_axes


def test_a_wrong_preprocessing_scale_in_the_metadata_is_refused(trained_looking, images, tmp_path: Path) -> None:
    model, probe, deploy = trained_looking
    tampered = onnx.load(str(deploy))
    for prop in tampered.metadata_props:
        if prop.key == "preprocessing":
            values = json.loads(prop.value)
            values["scale"] = 1 / 127.5
            prop.value = json.dumps(values)
    bad_deploy = tmp_path / "scaled.onnx"
    onnx.save(tampered, str(bad_deploy))
    report = verify_against_pytorch(probe, bad_deploy, model, images)
    assert not report.passed
    assert any("records the preprocessing" in f and "0.00784" in f for f in report.failures), report.failures
