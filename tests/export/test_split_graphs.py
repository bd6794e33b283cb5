"""The two graphs of ``--ncnn`` (``export.split_graphs``) compute the model: the per-head deformable attention
equals the model's own ``MSDeformableAttention`` in PyTorch, and encoder graph -> host query selection -> decoder
graph in ONNX Runtime gives the raw outputs of the project's single raw-output graph (``--outputs raw``) on the
shipped tiny, generated scenes and the shared photographs. Needs torch and ONNX Runtime only (no ncnn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from rtdetr_deploy.contract import RAW_OUTPUT_NAMES  # noqa: E402
from rtdetr_deploy.errors import ExportError  # noqa: E402
from rtdetr_deploy.export.onnx_export import export_probe, strip_probe  # noqa: E402
from rtdetr_deploy.export.split_graphs import (  # noqa: E402
    DECODER_INPUTS,
    ENCODER_OUTPUTS,
    PerHeadDeformableAttention,
    export_split_graphs,
)
from rtdetr_deploy.metadata import ModelMetadata, Preprocessing  # noqa: E402
from rtdetr_deploy.models.checkpoint import load_model  # noqa: E402
from rtdetr_deploy.models.deformable_attention import MSDeformableAttention  # noqa: E402
from rtdetr_deploy.runtime.preprocess import preprocess  # noqa: E402
from rtdetr_deploy.runtime.query_selection import select_queries  # noqa: E402

REPO = Path(__file__).parents[2]
WEIGHTS = REPO / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"
PHOTOS = REPO.parent / "shared" / "testdata" / "images"
SIZE = (256, 256)


def test_per_head_attention_equals_the_models_attention() -> None:
    torch.manual_seed(0)
    attention = MSDeformableAttention(32, 4, (2, 3, 4), sampling="bilinear").eval()
    with torch.no_grad():
        for layer in (attention.sampling_offsets, attention.attention_weights):
            layer.weight.normal_(std=0.3)
    shapes = [(8, 8), (4, 4), (2, 2)]
    query = torch.randn(1, 7, 32)
    boxes = torch.rand(1, 7, 1, 4) * 0.6 + 0.2
    value = torch.randn(1, sum(h * w for h, w in shapes), 32)
    with torch.no_grad():
        expected = attention(query, boxes, value, shapes)
        got = PerHeadDeformableAttention(attention)(query, boxes, value, shapes)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def _images() -> list[np.ndarray]:
    from rtdetr_deploy.data.scenes import cluttered_scenes
    from rtdetr_deploy.runtime.sources import read_image

    photos = sorted(p for p in PHOTOS.glob("*") if p.suffix.lower() in (".jpg", ".png")) if PHOTOS.is_dir() else []
    return cluttered_scenes(3, seed=3) + [read_image(p)[0] for p in photos]


def _single_raw_graph(model: torch.nn.Module, folder: Path) -> Path:
    info = model.info
    metadata = ModelMetadata(
        preset=model.config.name,
        input_size=SIZE,
        class_names=info.class_names,
        category_ids=info.category_ids,
        sampling="bilinear",
        topk=100,
        outputs="raw",
        decoder_layers=model.decoder_layers,
        queries=model.queries,
    )
    probe = export_probe(model, folder / "probe.onnx", metadata=metadata)
    path = folder / "single_raw.onnx"
    onnx.save(strip_probe(onnx.load(str(probe.path)), outputs=RAW_OUTPUT_NAMES), str(path))
    return path


def test_split_graphs_equal_the_single_raw_graph_in_onnxruntime(tmp_path: Path) -> None:
    model = load_model(WEIGHTS, sampling="bilinear").set_eval_size(SIZE)
    graphs = export_split_graphs(model, tmp_path)
    assert graphs.anchors.shape == (model.decoder.anchors.shape[1], 4) and graphs.queries == model.queries
    options = {"providers": ["CPUExecutionProvider"]}
    single = ort.InferenceSession(str(_single_raw_graph(model, tmp_path)), **options)
    encoder = ort.InferenceSession(str(graphs.encoder), **options)
    decoder = ort.InferenceSession(str(graphs.decoder), **options)
    pixels, _ = preprocess(_images(), input_size=SIZE, preprocessing=Preprocessing())
    for image in pixels:
        expected_logits, expected_boxes = single.run(list(RAW_OUTPUT_NAMES), {"images": image[None]})
        memory, output_memory, scores = encoder.run(list(ENCODER_OUTPUTS), {"images": image[None]})
        selected = select_queries(scores[0], output_memory[0], graphs.anchors, k=graphs.queries)
        feed = dict(zip(DECODER_INPUTS, (selected.content, selected.anchors, memory), strict=True))
        logits, boxes = decoder.run(None, feed)
        np.testing.assert_allclose(logits, expected_logits, atol=1e-4, rtol=0)
        np.testing.assert_allclose(boxes, expected_boxes, atol=1e-5, rtol=0)


def test_discrete_sampling_has_no_split_graphs(tmp_path: Path) -> None:
    model = load_model(WEIGHTS, sampling="discrete").set_eval_size(SIZE)
    with pytest.raises(ExportError, match="bilinear sampling"):
        export_split_graphs(model, tmp_path)
