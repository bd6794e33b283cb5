"""A precision variant is judged against FP32 on trained weights: the FP16 graph with its FP32 islands passes, the
same graph with the discrete-index arithmetic rounded through FP16 (the island removed where it matters) is
refused, with a message naming the lost detections; INT8 as the exporter makes it passes the label-free kept-AP
rule, and INT8 with a wrong dequantization scale in the decoder is refused by it."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from helpers import broken_int8_value_proj  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from rtdetr_deploy import load_model  # noqa: E402
from rtdetr_deploy.data.pretrained import pretrained_tiny  # noqa: E402
from rtdetr_deploy.data.synthetic import ensure_synthetic  # noqa: E402
from rtdetr_deploy.export.gates import VARIANT_RULES  # noqa: E402
from rtdetr_deploy.export.onnx_export import export_probe, strip_probe  # noqa: E402
from rtdetr_deploy.export.precision import convert_fp16  # noqa: E402
from rtdetr_deploy.export.variants import check_variant  # noqa: E402
from rtdetr_deploy.metadata import ModelMetadata  # noqa: E402
from rtdetr_deploy.runtime.sources import read_image_folder  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("variants")
    model = load_model(pretrained_tiny(), sampling="discrete")
    info = model.info
    metadata = ModelMetadata(
        preset="tiny",
        input_size=info.input_size,
        class_names=info.class_names,
        category_ids=info.category_ids,
        topk=100,
        batch=(1, 1, 1),
        sampling="discrete",
    )
    probe = export_probe(model, folder / "probe.onnx", metadata=metadata)
    fp16_probe = convert_fp16(probe.path, folder / "fp16.probe.onnx")
    images = read_image_folder(ensure_synthetic().val_images, limit=16)
    return folder, probe, fp16_probe, images


def _published(probe_path: Path) -> Path:
    path = probe_path.with_name(probe_path.name.replace(".probe", ""))
    onnx.save(strip_probe(onnx.load(str(probe_path))), str(path))
    return path


def _round_through_fp16(graph: onnx.GraphProto, tensor: str) -> str:
    """Append a Cast to FP16 and back on ``tensor``; return the name of the rounded tensor."""
    graph.node.extend(
        [
            helper.make_node("Cast", [tensor], [f"{tensor}.h"], to=TensorProto.FLOAT16, name=f"{tensor}.to_fp16"),
            helper.make_node("Cast", [f"{tensor}.h"], [f"{tensor}.f"], to=TensorProto.FLOAT, name=f"{tensor}.to_fp32"),
        ]
    )
    return f"{tensor}.f"


def _sorted_topologically(graph: onnx.GraphProto) -> None:
    known = {t.name for t in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [node for node in pending if all(name in known for name in node.input)]
        assert ready, "the edited graph has a cycle"
        for node in ready:
            ordered.append(node)
            known.update(node.output)
        pending = [node for node in pending if node not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def _index_arithmetic_in_fp16(fp16_probe: Path, out: Path) -> Path:
    """The FP16 probe with each discrete coordinate's ``loc * W + 0.5`` (and ``loc``) rounded through FP16, as an
    FP16 conversion without the index island would compute it. Each coordinate is clamped and floored in float
    (``deformable_attention.discrete_indices``): the Add that feeds the clamp before a ``Floor``."""
    model = onnx.load(str(fp16_probe))
    graph = model.graph
    producer = {name: node for node in graph.node for name in node.output}
    rounded = []
    for floor in [node for node in graph.node if node.op_type == "Floor"]:
        source = producer[floor.input[0]]
        while source.op_type in ("Clip", "Max", "Min"):
            source = producer[source.input[0]]
        if source.op_type == "Add" and source.input[0] in producer and producer[source.input[0]].op_type == "Mul":
            rounded.append((source, producer[source.input[0]]))
    assert len(rounded) == 2 * 3 * 2  # decoder layers x levels x (x, y)
    consumers = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, position))
    for add, scale in rounded:
        scale.input[0] = _round_through_fp16(graph, scale.input[0])
        total = add.output[0]
        users = list(consumers.get(total, ()))
        replacement = _round_through_fp16(graph, total)
        for node, position in users:
            node.input[position] = replacement
    _sorted_topologically(graph)
    onnx.save(model, str(out))
    return out


def test_fp16_with_its_islands_keeps_the_trained_models_detections(trained) -> None:
    _, probe, fp16_probe, images = trained
    report = check_variant(
        probe, fp16_probe, _published(fp16_probe), images, precision="fp16", rules=VARIANT_RULES["fp16"]
    )
    assert report.passed, report.failures
    assert report.detections.decided >= 100
    assert report.published_equals_probe is True


def test_fp16_index_arithmetic_is_refused(trained) -> None:
    folder, probe, fp16_probe, images = trained
    broken = _index_arithmetic_in_fp16(fp16_probe, folder / "broken.probe.onnx")
    report = check_variant(probe, broken, _published(broken), images, precision="fp16", rules=VARIANT_RULES["fp16"])
    assert not report.passed
    text = "; ".join(report.failures)
    assert "FP16 keeps only" in text and "decided top detections" in text, text


@pytest.fixture(scope="module")
def int8_variants(trained):
    """The trained model's INT8 probe for ONNX Runtime as the exporter makes it, and a broken one: the decoder value
    projection's weights dequantized at twice their scale (0.06 to 0.08 AP lost on the trained references,
    ``benchmarks/results/acceptance_calibration.json``). INT8 without the FP32 islands costs them at most 0.012
    AP, inside the labelled gate, and is accepted alike."""
    from rtdetr_deploy.export.quantize import quantize_int8

    folder, probe, _, _ = trained
    calib = read_image_folder(ensure_synthetic().train_images, limit=32)
    good = quantize_int8(probe.path, folder / "int8.probe.onnx", calib, target="onnxruntime")
    wrong_scale = broken_int8_value_proj(good, folder / "wrong-scale.probe.onnx", factor=2.0)
    return {"good": good, "wrong_scale": wrong_scale}


def test_int8_at_no_labelled_loss_passes_the_label_free_rule(trained, int8_variants) -> None:
    _, probe, _, images = trained
    good = int8_variants["good"]
    report = check_variant(probe, good, _published(good), images, precision="int8", rules=VARIANT_RULES["int8"])
    assert report.rule.startswith("kept AP"), report.rule
    assert report.passed, report.failures


def test_broken_int8_is_refused_by_the_label_free_rule(trained, int8_variants) -> None:
    _, probe, _, images = trained
    path = int8_variants["wrong_scale"]
    report = check_variant(probe, path, _published(path), images, precision="int8", rules=VARIANT_RULES["int8"])
    assert not report.passed
    assert "INT8 keeps AP" in report.failures[0] and "label-free rule" in report.failures[0]
