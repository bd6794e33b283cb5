"""Probe whether RT-DETRv2 runs correctly on ncnn when its graph is split at the query selection.

A single RT-DETRv2 graph does not convert to ncnn: the query selection needs TopK and GatherElements (and Tile,
and a Where for the anchor valid mask), which ncnn has no layers for. This script cuts the model there:

1. encoder graph: ``images [1, 3, H, W]`` -> ``memory [1, L, D]`` (backbone, hybrid encoder, flattened input
   projections), ``output_memory [1, L, D]`` (``enc_output`` of the memory, masked by the anchor valid mask) and
   ``scores [1, L]`` (each position's best class logit). The mask is a constant of the input size, so it is a
   Mul by a constant 0/1 tensor here instead of the model's Where.
2. host (numpy): the ``Q`` best positions by score; their ``output_memory`` rows (the content queries) and their
   anchors (constants of the model; ``inf`` at invalid positions, counted if ever selected).
3. decoder graph: ``content [1, Q, D]``, ``anchors [1, Q, 4]`` (unactivated), ``memory [1, L, D]`` ->
   ``pred_logits [1, Q, C]``, ``pred_boxes [1, Q, 4]`` cxcywh: the raw outputs of an ``--outputs raw`` export,
   post-processed on the host (sigmoid and top-k). Its deformable attention is computed per head
   (``PerHeadDeformableAttention``: the same function in a form that pnnx maps to ncnn correctly).

The model is loaded with the project's loader and switched to bilinear sampling (GridSample, which ncnn has); the
wrappers reuse its modules, traced the way the project exports (batch-first attention, RepVGG fused, opset 17,
onnxslim). ``probe`` then

- checks in ONNX Runtime that encoder -> host -> decoder equals the project's single raw-output graph,
- converts both graphs with pnnx (from its own environment) to ncnn ``.param``/``.bin``,
- runs them with the ``ncnn`` Python package (re-running this file as ``ncnn-run`` in the ncnn environment),
- compares the top detections of ncnn with ONNX Runtime's and times both.

Both graphs are checked separately as well: ncnn's encoder outputs against ONNX Runtime's, and ncnn's decoder on
ONNX Runtime's encoder outputs (so that a near-tie at the query cut, which a tiny encoder difference may flip,
does not hide the decoder's own error). pnnx's output is scanned for operators it left unconverted and for
``Reduction`` layers over no axis (what it makes of an opset-13+ ``ReduceSum``: ncnn runs them as a copy).

    cd /work/wt/ncnn
    PYTHONPATH=. /work/main/.venv/bin/python tools/ncnn_split_probe.py probe \\
        --weights rtdetr_deploy/data/weights/tiny_synthetic.pth --imgsz 256 --work /tmp/ncnn_tiny

pnnx and ncnn live in their own environment (``--pnnx``, ``--ncnn-python``); it needs ``ncnn pnnx onnx numpy``
(and pnnx pulls in torch).
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

DEFAULT_NCNN_PYTHON = Path("/work/envs/ncnn/bin/python")
DEFAULT_PNNX = Path("/work/envs/ncnn/bin/pnnx")
DEFAULT_IMAGES = Path(__file__).resolve().parents[1] / ".." / "shared" / "testdata" / "images"
ENCODER_INPUTS = ("images",)
ENCODER_OUTPUTS = ("memory", "output_memory", "scores")
DECODER_INPUTS = ("content", "anchors", "memory")
DECODER_OUTPUTS = ("pred_logits", "pred_boxes")
RAW_OUTPUTS = ("pred_logits", "pred_boxes")  # the project's raw-output graph (contract.RAW_OUTPUT_NAMES)

# An engine's encoder graph: images [1, 3, H, W] -> memory, output_memory, scores; and its decoder graph:
# content, anchors, memory -> pred_logits, pred_boxes. numpy arrays with the batch axis.
Encoder = Callable[[np.ndarray], list[np.ndarray]]
Decoder = Callable[[np.ndarray, np.ndarray, np.ndarray], list[np.ndarray]]
Record = TypeVar("Record")
TOP = 20
SCORE_TOL = 1e-3
BOX_TOL_PX = 1.0


# ----------------------------------------------------------------------------------------------------- host side


@dataclass(frozen=True)
class Selection:
    """The host's query selection for one image: the positions ``index [Q]``, content ``[1, Q, D]``, anchors
    ``[1, Q, 4]`` and how many of the selected positions are invalid (their anchors are ``inf``)."""

    index: np.ndarray
    content: np.ndarray
    anchors: np.ndarray
    invalid: int


def select_queries(scores: np.ndarray, output_memory: np.ndarray, anchors: np.ndarray, k: int) -> Selection:
    """The ``k`` best positions of ``scores [1, L]`` (best first, ties by position, as a stable sort) and the
    rows of ``output_memory [1, L, D]`` and ``anchors [1, L, 4]`` there."""
    index = np.argsort(-scores[0], kind="stable")[:k]
    content = np.ascontiguousarray(output_memory[:, index, :])
    picked = np.ascontiguousarray(anchors[:, index, :])
    invalid = int((~np.isfinite(picked).all(-1)).sum())
    return Selection(index, content, picked, invalid)


@dataclass(frozen=True)
class TopDetections:
    """The ``TOP`` best (query, class) pairs of one image: labels, xyxy boxes in input pixels, sigmoid scores."""

    labels: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray


def top_detections(logits: np.ndarray, boxes: np.ndarray, size_hw: tuple[int, int], top: int = TOP) -> TopDetections:
    """Sigmoid and top-k of raw ``[1, Q, C]`` logits and ``[1, Q, 4]`` cxcywh boxes (the ``--outputs raw`` host
    step, as ``runtime.postprocess.topk_detections`` computes it), with boxes in input pixels."""
    batch, queries, classes = logits.shape
    flat = logits.reshape(batch, queries * classes).astype(np.float32)
    index = np.argsort(-flat, axis=1, kind="stable")[:, :top]
    scores = 1.0 / (1.0 + np.exp(-np.take_along_axis(flat, index, axis=1).astype(np.float64)))
    cx, cy, w, h = np.moveaxis(boxes.astype(np.float32), -1, 0)
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    xyxy = xyxy * np.array([size_hw[1], size_hw[0]] * 2, np.float32)
    picked = np.take_along_axis(xyxy, (index // classes)[..., None], axis=1)
    return TopDetections(labels=index[0] % classes, boxes=picked[0], scores=scores[0].astype(np.float32))


@dataclass(frozen=True)
class Agreement:
    """How a candidate's top detections match a reference's: for each reference detection, the candidate one of
    the same class with the nearest box. ``found`` counts those within ``SCORE_TOL`` and ``BOX_TOL_PX``;
    ``max_score_diff`` and ``max_box_px`` are the worst over detections that had a same-class partner."""

    found: int
    total: int
    max_score_diff: float
    max_box_px: float

    @property
    def share(self) -> float:
        return self.found / self.total if self.total else 1.0


def agreement(reference: TopDetections, candidate: TopDetections) -> Agreement:
    """Match ``candidate`` against ``reference`` (see ``Agreement``)."""
    found, worst_score, worst_box = 0, 0.0, 0.0
    for label, box, score in zip(reference.labels, reference.boxes, reference.scores, strict=True):
        same = np.flatnonzero(candidate.labels == label)
        if not len(same):
            continue
        distance = np.abs(candidate.boxes[same] - box).max(-1)
        best = same[int(np.argmin(distance))]
        box_px = float(distance.min())
        score_diff = float(abs(candidate.scores[best] - score))
        worst_score, worst_box = max(worst_score, score_diff), max(worst_box, box_px)
        found += int(box_px <= BOX_TOL_PX and score_diff <= SCORE_TOL)
    return Agreement(found, len(reference.labels), worst_score, worst_box)


def merge(parts: Sequence[Agreement]) -> Agreement:
    """One ``Agreement`` over several images."""
    return Agreement(
        found=sum(p.found for p in parts),
        total=sum(p.total for p in parts),
        max_score_diff=max((p.max_score_diff for p in parts), default=0.0),
        max_box_px=max((p.max_box_px for p in parts), default=0.0),
    )


# ------------------------------------------------------------------------------- records shared by both environments


@dataclass(frozen=True)
class ProbeInputs:
    """What the ncnn environment needs besides the graphs: the preprocessed images ``[N, 3, H, W]``, their names
    (``set/name``), the model's anchors ``[1, L, 4]`` (unactivated, ``inf`` where invalid), the number of queries
    and the width ``D`` of the memory."""

    images: np.ndarray
    names: tuple[str, ...]
    anchors: np.ndarray
    queries: int
    dim: int


@dataclass(frozen=True)
class EncoderOutputs:
    """An encoder graph's outputs over the images, run one at a time (``memory``, ``output_memory``, ``scores``
    with the images on the first axis), and the seconds each image took."""

    memory: np.ndarray
    output_memory: np.ndarray
    scores: np.ndarray
    seconds: np.ndarray


@dataclass(frozen=True)
class RawOutputs:
    """Raw outputs of a pipeline over the images, run one at a time: ``logits [N, Q, C]``, ``boxes [N, Q, 4]``,
    the selected positions ``index [N, Q]`` (-1 where unknown), invalid selections, median seconds per image."""

    logits: np.ndarray
    boxes: np.ndarray
    index: np.ndarray
    invalid: int
    seconds: float


def save_record(record: object, path: Path) -> None:
    """A record of arrays, numbers and string tuples (the dataclasses above) as an ``.npz`` file."""
    np.savez(path, **{f.name: np.asarray(getattr(record, f.name)) for f in fields(record)})


def load_record(kind: type[Record], path: Path) -> Record:
    """The ``kind`` record that ``save_record`` wrote to ``path``."""

    def value(array: np.ndarray) -> object:
        if array.ndim == 0:
            return array.item()
        return tuple(str(x) for x in array) if array.dtype.kind == "U" else array

    with np.load(path) as data:
        return kind(**{f.name: value(data[f.name]) for f in fields(kind)})


def timed(function: Callable[[], Record], repeats: int) -> tuple[Record, float]:
    """``function()``'s result and its fastest time of ``repeats`` runs (the machine may be shared)."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return result, best


def encode_all(encoder: Encoder, images: np.ndarray, repeats: int = 1) -> EncoderOutputs:
    """``encoder`` on each image, timed (``timed``) after one untimed run of the first image."""
    encoder(images[:1])
    outputs, seconds = [], []
    for i in range(len(images)):
        found, best = timed(lambda i=i: encoder(images[i : i + 1]), repeats)
        outputs.append(found)
        seconds.append(best)
    memory, output_memory, scores = (np.concatenate([o[k] for o in outputs]) for k in range(3))
    return EncoderOutputs(memory, output_memory, scores, np.array(seconds))


def decode_all(decoder: Decoder, encoded: EncoderOutputs, inputs: ProbeInputs, repeats: int = 1) -> RawOutputs:
    """Host selection and ``decoder`` on each image's encoder outputs, timed as ``encode_all``; ``seconds`` is the
    median over the images of the encoder's time plus this."""

    def one(i: int) -> tuple[Selection, list[np.ndarray]]:
        selection = select_queries(
            encoded.scores[i : i + 1], encoded.output_memory[i : i + 1], inputs.anchors, inputs.queries
        )
        return selection, decoder(selection.content, selection.anchors, encoded.memory[i : i + 1])

    one(0)
    found, seconds = [], []
    for i in range(len(encoded.scores)):
        result, best = timed(lambda i=i: one(i), repeats)
        found.append(result)
        seconds.append(best)
    return RawOutputs(
        logits=np.concatenate([f[1][0] for f in found]),
        boxes=np.concatenate([f[1][1] for f in found]),
        index=np.stack([f[0].index for f in found]),
        invalid=sum(f[0].invalid for f in found),
        seconds=float(np.median(np.array(seconds) + encoded.seconds)),
    )


# ----------------------------------------------------------------------------------------------------- ncnn side


def output_shapes(path: Path) -> list[tuple[int, ...]]:
    """The static shapes of an ONNX graph's outputs."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [tuple(d.dim_value for d in out.type.tensor_type.shape.dim) for out in graph.output]


def ncnn_callables(work: Path, *, threads: int, fp16: bool, bf16: bool) -> tuple[Encoder, Decoder]:
    """The pnnx-converted graphs in ``work`` as ``Encoder`` and ``Decoder`` callables.

    pnnx names the blobs ``in0, in1, ...`` and ``out0, out1, ...`` in the order of the ONNX inputs and outputs.
    Inputs are given without their batch axis (ncnn Mats have none); outputs come back in whatever rank pnnx
    left them and are reshaped to the ONNX graph's output shapes (same element order)."""
    import ncnn

    def load(stem: str) -> tuple[object, list[tuple[int, ...]]]:
        net = ncnn.Net()
        net.opt.num_threads = threads
        net.opt.use_fp16_packed = fp16
        net.opt.use_fp16_storage = fp16
        net.opt.use_fp16_arithmetic = fp16
        net.opt.use_bf16_storage = bf16
        if net.load_param(str(work / f"{stem}.ncnn.param")) or net.load_model(str(work / f"{stem}.ncnn.bin")):
            raise RuntimeError(f"ncnn cannot load {work / stem}.ncnn.param/.bin")
        return net, output_shapes(work / f"{stem}.onnx")

    def run(loaded: tuple[object, list[tuple[int, ...]]], arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        net, shapes = loaded
        extractor = net.create_extractor()
        for i, array in enumerate(arrays):
            extractor.input(f"in{i}", ncnn.Mat(np.ascontiguousarray(array[0], dtype=np.float32)))
        found = []
        for i, shape in enumerate(shapes):
            status, mat = extractor.extract(f"out{i}")
            if status:
                raise RuntimeError(f"ncnn failed to compute out{i} (status {status})")
            found.append(np.array(mat).reshape(shape))
        return found

    encoder_net, decoder_net = load("encoder"), load("decoder")
    return (
        lambda images: run(encoder_net, [images]),
        lambda content, anchors, memory: run(decoder_net, [content, anchors, memory]),
    )


def ncnn_run(work: Path, *, threads: int, fp16: bool, bf16: bool, repeats: int) -> None:
    """The split pipeline with ncnn on ``work/inputs.npz``. Writes ``ncnn_encoder.npz`` (its encoder outputs),
    ``ncnn_split.npz`` (end to end) and ``ncnn_decoder_on_ort.npz`` (its decoder on ONNX Runtime's encoder outputs,
    ``ort_encoder.npz``: the decoder's own error, without selections that a tiny encoder difference changed)."""
    encoder, decoder = ncnn_callables(work, threads=threads, fp16=fp16, bf16=bf16)
    inputs = load_record(ProbeInputs, work / "inputs.npz")
    encoded = encode_all(encoder, inputs.images, repeats)
    save_record(encoded, work / "ncnn_encoder.npz")
    save_record(decode_all(decoder, encoded, inputs, repeats), work / "ncnn_split.npz")
    theirs = load_record(EncoderOutputs, work / "ort_encoder.npz")
    untimed = EncoderOutputs(theirs.memory, theirs.output_memory, theirs.scores, np.zeros_like(theirs.seconds))
    save_record(decode_all(decoder, untimed, inputs), work / "ncnn_decoder_on_ort.npz")


# -------------------------------------------------------------------------------------------------- PyTorch side


class PerHeadDeformableAttention(nn.Module):
    """The same function as an ``MSDeformableAttention`` (batch 1, bilinear sampling), with no tensor above rank 4,
    one ``grid_sample`` per head and level on a batch-1 map, and no ``ReduceSum``.

    pnnx maps three parts of the model's form wrongly for ncnn, whose Mats have no batch axis and at most 4
    dimensions: the offsets are computed on ``[B, Q, heads, P, 2]`` tensors, whose rank-5 reshapes pnnx leaves as
    ``Tensor.reshape`` (no ncnn layer); all heads are sampled at once from a ``[heads, C_head, H, W]`` map
    (``grid_sample``'s batch axis carries the heads), which pnnx writes as one GridSample on 4-d Mats that ncnn
    samples as a volume (NaN in a standalone check of that pattern); and the weighted sum over the
    points is an opset-17 ``ReduceSum`` (axes as an input), which pnnx writes as an ncnn ``Reduction`` over no
    axis, a copy. Here the offsets are ``[1, Q, heads * P, 2]``, each head's channels are sampled from a
    ``[1, C_head, H, W]`` map with its own ``[1, Q, P_level, 2]`` grid, and the weighted sum is a MatMul per
    query. Parameters are the wrapped module's."""

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.attention = attention
        total = sum(attention.num_points)
        scale = attention.num_points_scale.repeat(attention.num_heads) * attention.offset_scale
        self.register_buffer("offset_scale", scale.reshape(1, 1, attention.num_heads * total, 1))

    def forward(
        self,
        query: torch.Tensor,
        reference_boxes: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        attention = self.attention
        queries, heads, points = query.shape[1], attention.num_heads, attention.num_points
        total, head_dim = sum(points), attention.embed_dim // heads
        value = attention.value_proj(value).permute(0, 2, 1)
        offsets = attention.sampling_offsets(query).reshape(1, queries, heads * total, 2)
        boxes = reference_boxes.reshape(1, queries, 1, 4)
        grids = 2 * (boxes[..., :2] + offsets * self.offset_scale * boxes[..., 2:]) - 1
        weights = attention.attention_weights(query).reshape(1, queries, heads, total).softmax(-1)
        levels = value.split([h * w for h, w in spatial_shapes], -1)
        maps = [level.reshape(1, -1, h, w) for level, (h, w) in zip(levels, spatial_shapes, strict=True)]
        starts = np.cumsum([0, *points[:-1]]).tolist()
        per_head = []
        for head in range(heads):
            channels = slice(head * head_dim, (head + 1) * head_dim)
            sampled = torch.concat(
                [
                    F.grid_sample(
                        feature[:, channels],
                        grids[:, :, head * total + start : head * total + start + count],
                        mode="bilinear",
                        padding_mode="zeros",
                        align_corners=False,
                    )
                    for feature, start, count in zip(maps, starts, points, strict=True)
                ],
                dim=-1,
            )
            summed = sampled.permute(0, 2, 1, 3) @ weights[:, :, head].reshape(1, queries, total, 1)
            per_head.append(summed.reshape(1, queries, head_dim))
        return attention.output_proj(torch.concat(per_head, dim=-1))


class EncoderGraph(nn.Module):
    """``images`` -> ``memory``, ``output_memory``, ``scores``: the model up to its query selection.

    The valid mask multiplies the memory as a constant 0/1 ``[1, L, 1]`` tensor: the same values as the model's
    ``Where`` (the mask is fixed by the input size), and an ncnn BinaryOp."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("valid", model.decoder.valid_mask.to(torch.float32))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        head = self.model.decoder
        memory, _ = head._flatten_memory(self.model.encoder(self.model.backbone(images)))
        output_memory = head.enc_output(memory * self.valid)
        scores = head.enc_score_head(output_memory).max(-1).values
        return memory, output_memory, scores


class DecoderGraph(nn.Module):
    """``content``, ``anchors``, ``memory`` -> ``pred_logits``, ``pred_boxes``: the model after its query selection
    (the proposals' box head, then the decoder layers up to ``eval_idx``), its deformable attention replaced in
    place by ``PerHeadDeformableAttention`` (pass a copy of the model)."""

    def __init__(self, model: nn.Module, size_hw: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        self.spatial_shapes = model.decoder._level_shapes(size_hw)
        for layer in model.decoder.decoder.layers:
            layer.cross_attn = PerHeadDeformableAttention(layer.cross_attn)

    def forward(
        self, content: torch.Tensor, anchors: torch.Tensor, memory: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        head = self.model.decoder
        boxes_unact = head.enc_bbox_head(content) + anchors
        boxes, logits = head.decoder(
            content,
            boxes_unact,
            memory,
            self.spatial_shapes,
            head.dec_bbox_head,
            head.dec_score_head,
            head.query_pos_head,
        )
        return logits[-1], boxes[-1]


def load_bilinear(weights: Path, size_hw: tuple[int, int], preset: str | None) -> nn.Module:
    """The checkpoint through the project's loader, with bilinear sampling, anchors precomputed for ``size_hw``."""
    from rtdetr_deploy.models.checkpoint import load_model

    model = load_model(weights, preset=preset, sampling="bilinear")
    model.set_eval_size(size_hw)
    return model


def trace_graph(
    module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: Sequence[str], outputs: Sequence[str]
) -> None:
    """Trace ``module`` to ``path`` as ``export.onnx_export`` traces the model (its ``_trace`` and ``_simplify``:
    TorchScript exporter, fixed batch 1, opset 17, constant folding, onnxslim; then BOOL constants as floats)."""
    import onnx

    from rtdetr_deploy.export.onnx_export import _simplify, _trace, check_onnx
    from rtdetr_deploy.export.portable import float_conditions

    traced_path = path.with_suffix(".traced.onnx")
    _trace(module, args, traced_path, input_names=list(inputs), output_names=list(outputs), dynamic=False, opset=17)
    traced = onnx.load(str(traced_path))
    traced_path.unlink()
    check_onnx(traced, sampling="bilinear")
    final = float_conditions(_simplify(traced))
    check_onnx(final, sampling="bilinear")
    onnx.save(final, str(path))


def export_split(model: nn.Module, size_hw: tuple[int, int], work: Path) -> None:
    """Write ``encoder.onnx`` and ``decoder.onnx`` of ``model`` to ``work`` (the model itself is left as it was)."""
    from rtdetr_deploy.models.attention import set_explicit_attention

    deployable = set_explicit_attention(copy.deepcopy(model).deploy(), True)
    encoder = EncoderGraph(deployable).eval()
    images = torch.rand(1, 3, *size_hw)
    with torch.no_grad():
        memory, output_memory, scores = encoder(images)
    index = scores.topk(deployable.decoder.num_queries, dim=-1).indices[0]
    example = (output_memory[:, index], deployable.decoder.anchors[:, index], memory)
    trace_graph(encoder, (images,), work / "encoder.onnx", ENCODER_INPUTS, ENCODER_OUTPUTS)
    decoder = DecoderGraph(copy.deepcopy(deployable), size_hw).eval()
    trace_graph(decoder, example, work / "decoder.onnx", DECODER_INPUTS, DECODER_OUTPUTS)


def export_single(model: nn.Module, size_hw: tuple[int, int], work: Path) -> None:
    """Write the project's own single raw-output graph (``export_probe``, ``strip_probe``) as ``single_raw.onnx``."""
    import onnx

    from rtdetr_deploy.contract import RAW_OUTPUT_NAMES
    from rtdetr_deploy.export.onnx_export import export_probe, strip_probe
    from rtdetr_deploy.metadata import ModelMetadata

    info = model.info
    metadata = ModelMetadata(
        preset=model.config.name,
        input_size=size_hw,
        class_names=info.class_names,
        category_ids=info.category_ids,
        sampling="bilinear",
        topk=min(300, model.queries * model.num_classes),
        outputs="raw",
        decoder_layers=model.decoder_layers,
        queries=model.queries,
    )
    probe = export_probe(model, work / "probe.onnx", metadata=metadata)
    onnx.save(strip_probe(onnx.load(str(probe.path)), outputs=RAW_OUTPUT_NAMES), str(work / "single_raw.onnx"))
    probe.path.unlink()


# ------------------------------------------------------------------------------------------ images, ONNX Runtime


@dataclass(frozen=True)
class ImageSet:
    """Named BGR images; ``kind`` is the set they belong to in the report (``photos``, ``synthetic``)."""

    kind: str
    names: tuple[str, ...]
    images: tuple[np.ndarray, ...]


def image_sets(folder: Path, synthetic: int) -> tuple[ImageSet, ...]:
    """The photographs in ``folder`` and ``synthetic`` scenes of the embedded synthetic dataset's renderer (the
    classes the tiny checkpoint was trained on)."""
    import cv2

    from rtdetr_deploy.data.synthetic import render_image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    photos = ImageSet("photos", tuple(p.name for p in files), tuple(cv2.imread(str(p)) for p in files))
    scenes = []
    for seed in range(synthetic):
        rgb, _ = render_image(np.random.default_rng([7, seed]), 320, 320)
        scenes.append(np.ascontiguousarray(rgb[..., ::-1]))
    generated = ImageSet("synthetic", tuple(f"scene_{i}" for i in range(synthetic)), tuple(scenes))
    return tuple(s for s in (photos, generated) if s.images)


def probe_inputs(model: nn.Module, sets: Sequence[ImageSet], size_hw: tuple[int, int]) -> ProbeInputs:
    """The images preprocessed as the project's runtime does (RGB, plain resize, /255), with the anchors."""
    from rtdetr_deploy.metadata import Preprocessing
    from rtdetr_deploy.runtime.preprocess import preprocess

    images = [image for s in sets for image in s.images]
    tensor, _ = preprocess(images, input_size=size_hw, preprocessing=Preprocessing())
    names = tuple(f"{s.kind}/{name}" for s in sets for name in s.names)
    anchors = model.decoder.anchors.detach().cpu().numpy().astype(np.float32)
    return ProbeInputs(tensor, names, anchors, model.queries, model.decoder.hidden_dim)


def ort_session(path: Path, threads: int) -> object:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_split(work: Path, inputs: ProbeInputs, threads: int, repeats: int) -> RawOutputs:
    """The split pipeline in ONNX Runtime; its encoder outputs go to ``work/ort_encoder.npz``."""
    encoder, decoder = ort_session(work / "encoder.onnx", threads), ort_session(work / "decoder.onnx", threads)
    encoded = encode_all(lambda images: encoder.run(list(ENCODER_OUTPUTS), {"images": images}), inputs.images, repeats)
    save_record(encoded, work / "ort_encoder.npz")

    def decode(content: np.ndarray, anchors: np.ndarray, memory: np.ndarray) -> list[np.ndarray]:
        return decoder.run(list(DECODER_OUTPUTS), {"content": content, "anchors": anchors, "memory": memory})

    return decode_all(decode, encoded, inputs, repeats)


def ort_single(work: Path, inputs: ProbeInputs, threads: int, repeats: int) -> RawOutputs:
    """The project's single raw-output graph in ONNX Runtime, timed as ``encode_all`` (the selected positions
    are not known: ``index`` is -1)."""
    session = ort_session(work / "single_raw.onnx", threads)
    session.run(None, {"images": inputs.images[:1]})
    found, seconds = [], []
    for i in range(len(inputs.images)):
        result, best = timed(lambda i=i: session.run(list(RAW_OUTPUTS), {"images": inputs.images[i : i + 1]}), repeats)
        found.append(result)
        seconds.append(best)
    logits, boxes = (np.concatenate([f[k] for f in found]) for k in range(2))
    index = np.full((len(inputs.images), inputs.queries), -1)
    return RawOutputs(logits, boxes, index, 0, float(np.median(seconds)))


# ---------------------------------------------------------------------------------------------------------- pnnx


@dataclass(frozen=True)
class Conversion:
    """One pnnx conversion: the ncnn layer types it wrote (count per type), those that are pnnx operators left
    unconverted (a ``.`` in the type, e.g. ``Tensor.reshape``), which ncnn cannot load, and the names of layers
    written wrongly: ``Reduction`` over an empty axis list without ``reduce_all`` (what pnnx makes of an opset-13+
    ``ReduceSum``), which ncnn runs as a copy."""

    stem: str
    layers: tuple[tuple[str, int], ...]
    unconverted: tuple[str, ...]
    broken: tuple[str, ...]


def convert(pnnx: Path, work: Path, stem: str, shapes: Sequence[Sequence[int]], *, fp16: bool) -> Conversion:
    """``work/<stem>.onnx`` to ``work/<stem>.ncnn.param``/``.bin`` with pnnx (its log in ``<stem>.pnnx.log``;
    its other files in ``work/pnnx_<stem>/``)."""
    scratch = work / f"pnnx_{stem}"
    scratch.mkdir(exist_ok=True)
    shape_arg = ",".join("[" + ",".join(str(d) for d in shape) + "]" for shape in shapes)
    command = [
        str(pnnx),
        str(work / f"{stem}.onnx"),
        f"inputshape={shape_arg}",
        f"fp16={int(fp16)}",
        f"ncnnparam={work / f'{stem}.ncnn.param'}",
        f"ncnnbin={work / f'{stem}.ncnn.bin'}",
        f"ncnnpy={scratch / 'ncnn.py'}",
        f"pnnxparam={scratch / 'pnnx.param'}",
        f"pnnxbin={scratch / 'pnnx.bin'}",
        f"pnnxpy={scratch / 'pnnx.py'}",
        f"pnnxonnx={scratch / 'pnnx.onnx'}",
    ]
    (work / f"{stem}.ncnn.param").unlink(missing_ok=True)
    done = subprocess.run(command, capture_output=True, text=True, cwd=scratch)
    (work / f"{stem}.pnnx.log").write_text(done.stdout + done.stderr)
    if done.returncode or not (work / f"{stem}.ncnn.param").is_file():
        raise RuntimeError(f"pnnx failed on {stem}.onnx (exit {done.returncode}); see {work / stem}.pnnx.log")
    return census(work / f"{stem}.ncnn.param", stem)


def census(param: Path, stem: str) -> Conversion:
    """Layer types of an ncnn ``.param`` file, and its broken layers (see ``Conversion``)."""
    counts: dict[str, int] = {}
    broken = []
    for line in param.read_text().splitlines()[2:]:
        words = line.split()
        if not words:
            continue
        counts[words[0]] = counts.get(words[0], 0) + 1
        if words[0] == "Reduction" and "-23303=0" in words and "1=1" not in words:
            broken.append(words[1])
    layers = tuple(sorted(counts.items(), key=lambda item: -item[1]))
    return Conversion(stem, layers, tuple(kind for kind, _ in layers if "." in kind), tuple(broken))


# ---------------------------------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class RawDiff:
    """Largest differences of the raw outputs over the queries both pipelines selected (matched by encoder
    position; row by row when the reference does not know its positions): logits, and boxes in input pixels.
    ``same_queries`` is the share of the reference's selected positions that the candidate selected as well."""

    max_logit: float
    max_box_px: float
    same_queries: float


def raw_diff(reference: RawOutputs, candidate: RawOutputs, rows: Sequence[int], size_hw: tuple[int, int]) -> RawDiff:
    """``RawDiff`` over the images ``rows``."""
    scale = np.array([size_hw[1], size_hw[0]] * 2, np.float32)
    worst_logit, worst_box, shared, total = 0.0, 0.0, 0, 0
    for row in rows:
        if reference.index[row, 0] < 0:
            ref_at = cand_at = np.arange(reference.index.shape[1])
        else:
            _, ref_at, cand_at = np.intersect1d(reference.index[row], candidate.index[row], return_indices=True)
        shared, total = shared + len(ref_at), total + reference.index.shape[1]
        logits = np.abs(reference.logits[row, ref_at] - candidate.logits[row, cand_at])
        boxes = np.abs(reference.boxes[row, ref_at] - candidate.boxes[row, cand_at]) * scale
        worst_logit = max(worst_logit, float(np.nanmax(logits, initial=0.0)))
        worst_box = max(worst_box, float(np.nanmax(boxes, initial=0.0)))
    return RawDiff(worst_logit, worst_box, shared / total if total else 1.0)


@dataclass(frozen=True)
class SetComparison:
    """A candidate against a reference on one image set; ``missed`` names the images with top detections not
    found again (and how many)."""

    kind: str
    images: int
    top: Agreement
    raw: RawDiff
    missed: tuple[str, ...]

    def line(self) -> str:
        missed = f"; misses in {', '.join(self.missed)}" if self.missed else ""
        return (
            f"  {self.kind:<10} {self.images} images: top-{TOP} found again {self.top.found}/{self.top.total} "
            f"({100 * self.top.share:.1f}%), max score diff {self.top.max_score_diff:.2e}, max box diff "
            f"{self.top.max_box_px:.4f} px | raw: max logit diff {self.raw.max_logit:.2e}, max box diff "
            f"{self.raw.max_box_px:.4f} px, same queries {100 * self.raw.same_queries:.1f}%{missed}"
        )


def compare(
    reference: RawOutputs, candidate: RawOutputs, names: Sequence[str], size_hw: tuple[int, int]
) -> tuple[SetComparison, ...]:
    """Per image set (the part of each name before ``/``), top-``TOP`` agreement and raw differences."""
    found = []
    for kind in dict.fromkeys(name.split("/")[0] for name in names):
        rows = [i for i, name in enumerate(names) if name.split("/")[0] == kind]
        tops = [
            agreement(
                top_detections(reference.logits[i : i + 1], reference.boxes[i : i + 1], size_hw),
                top_detections(candidate.logits[i : i + 1], candidate.boxes[i : i + 1], size_hw),
            )
            for i in rows
        ]
        missed = tuple(
            f"{names[i].split('/', 1)[1]} ({t.total - t.found})" for i, t in zip(rows, tops, strict=True) if t.share < 1
        )
        raw = raw_diff(reference, candidate, rows, size_hw)
        found.append(SetComparison(kind, len(rows), merge(tops), raw, missed))
    return tuple(found)


# -------------------------------------------------------------------------------------------------------- driver


def print_comparisons(title: str, comparisons: Sequence[SetComparison]) -> None:
    print(title)
    for comparison in comparisons:
        print(comparison.line())


def convert_both(args: argparse.Namespace, inputs: ProbeInputs) -> tuple[Conversion, ...]:
    """Both graphs through pnnx, with their layer census printed."""
    length, queries, dim = inputs.anchors.shape[1], inputs.queries, inputs.dim
    shapes = {
        "encoder": [[1, *inputs.images.shape[1:]]],
        "decoder": [[1, queries, dim], [1, queries, 4], [1, length, dim]],
    }
    conversions = tuple(convert(args.pnnx, args.work, stem, shapes[stem], fp16=args.fp16) for stem in shapes)
    for conversion in conversions:
        print(f"pnnx {conversion.stem}: " + ", ".join(f"{kind} {count}" for kind, count in conversion.layers))
        if conversion.unconverted:
            print(f"  left unconverted (no ncnn layer): {', '.join(conversion.unconverted)}")
        if conversion.broken:
            print(f"  Reductions over no axis (computed as a copy): {', '.join(conversion.broken)}")
    return conversions


def run_ncnn_env(args: argparse.Namespace) -> None:
    """This file's ``ncnn-run`` in the ncnn environment."""
    command = [str(args.ncnn_python), str(Path(__file__).resolve()), "ncnn-run", "--work", str(args.work)]
    command += ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    command += [flag for flag, wanted in (("--fp16", args.fp16), ("--bf16", args.bf16)) if wanted]
    subprocess.run(command, check=True)


def report_encoder(work: Path, inputs: ProbeInputs, ncnn: RawOutputs, ort: RawOutputs) -> None:
    """ncnn's encoder outputs against ONNX Runtime's, and each image whose selected positions differ, with the
    gap between ONNX Runtime's ``Q``-th and ``Q+1``-th best score there (a near-tie when small)."""
    theirs = load_record(EncoderOutputs, work / "ncnn_encoder.npz")
    ours = load_record(EncoderOutputs, work / "ort_encoder.npz")
    diffs = ", ".join(
        f"{name} {float(np.abs(getattr(theirs, name) - getattr(ours, name)).max()):.2e}"
        f" (|x| up to {float(np.abs(getattr(ours, name)).max()):.3g})"
        for name in ENCODER_OUTPUTS
    )
    print(f"ncnn encoder against ONNX Runtime, max abs diff: {diffs}")
    for row, name in enumerate(inputs.names):
        changed = len(np.setdiff1d(ort.index[row], ncnn.index[row]))
        if changed:
            ranked = np.sort(ours.scores[row])[::-1]
            gap = float(ranked[inputs.queries - 1] - ranked[inputs.queries])
            print(
                f"  {name}: {changed} of {inputs.queries} selected positions differ; ONNX Runtime's score gap at "
                f"the cut (rank {inputs.queries} vs {inputs.queries + 1}) is {gap:.2e}"
            )


def report_ncnn(args: argparse.Namespace, inputs: ProbeInputs, single: RawOutputs, split: RawOutputs) -> bool:
    """Run ncnn and print how it compares with ONNX Runtime; True when its decoder, given ONNX Runtime's encoder
    outputs, finds every top detection again."""
    run_ncnn_env(args)
    size_hw = (args.imgsz, args.imgsz)
    ncnn = load_record(RawOutputs, args.work / "ncnn_split.npz")
    decoder_only = load_record(RawOutputs, args.work / "ncnn_decoder_on_ort.npz")
    precision = "+".join(name for name, wanted in (("fp16", args.fp16), ("bf16", args.bf16)) if wanted) or "fp32"
    report_encoder(args.work, inputs, ncnn, split)
    print(f"invalid anchors selected (ncnn split): {ncnn.invalid}")
    end_to_end = compare(split, ncnn, inputs.names, size_hw)
    print_comparisons(f"ncnn ({precision}) end to end against ONNX Runtime split", end_to_end)
    alone = compare(split, decoder_only, inputs.names, size_hw)
    print_comparisons(f"ncnn ({precision}) decoder on ONNX Runtime's encoder outputs against ONNX Runtime", alone)
    print(
        f"seconds per image (median over images of the fastest of {args.repeats} runs, {args.threads} thread(s)): "
        f"ONNX Runtime single graph {single.seconds:.4f}, ONNX Runtime split {split.seconds:.4f}, "
        f"ncnn split {ncnn.seconds:.4f} (encoder + host + decoder)"
    )
    return all(c.top.found == c.top.total for c in alone)


def probe(args: argparse.Namespace) -> int:
    """The whole probe (see the module docstring). Returns 0 when ncnn's decoder, given ONNX Runtime's encoder
    outputs, finds every top detection again (the end-to-end agreement is printed beside)."""
    torch.set_num_threads(args.threads)
    size_hw = (args.imgsz, args.imgsz)
    args.work.mkdir(parents=True, exist_ok=True)
    model = load_bilinear(args.weights, size_hw, args.preset)
    print(
        f"model: {model.config.name}, {model.num_classes} classes, {model.queries} queries, "
        f"{model.decoder_layers} decoder layers, {size_hw[0]}x{size_hw[1]}, bilinear sampling"
    )
    export_split(model, size_hw, args.work)
    export_single(model, size_hw, args.work)
    inputs = probe_inputs(model, image_sets(args.images, args.synthetic), size_hw)
    save_record(inputs, args.work / "inputs.npz")
    single = ort_single(args.work, inputs, args.threads, args.repeats)
    split = ort_split(args.work, inputs, args.threads, args.repeats)
    print(f"invalid anchors selected (ONNX Runtime split): {split.invalid}")
    title = "ONNX Runtime: split graphs against the single raw-output graph"
    print_comparisons(title, compare(single, split, inputs.names, size_hw))
    conversions = convert_both(args, inputs)
    if any(c.unconverted for c in conversions):
        print("ncnn cannot load graphs with unconverted operators: stopping here")
        return 1
    return 0 if report_ncnn(args, inputs, single, split) else 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("probe", help="export, check in ONNX Runtime, convert with pnnx, run with ncnn")
    run.add_argument("--weights", type=Path, required=True, help="checkpoint (any the project's loader reads)")
    run.add_argument("--preset", default=None, help="preset name when the checkpoint does not say (default: it does)")
    run.add_argument("--imgsz", type=int, default=256, help="square input size, a multiple of 32 (default 256)")
    run.add_argument("--work", type=Path, default=Path("/tmp/ncnn_probe"), help="folder for graphs and results")
    run.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of photographs")
    run.add_argument("--synthetic", type=int, default=4, help="generated synthetic scenes besides (default 4)")
    run.add_argument("--pnnx", type=Path, default=DEFAULT_PNNX, help=f"pnnx executable (default {DEFAULT_PNNX})")
    run.add_argument(
        "--ncnn-python",
        type=Path,
        default=DEFAULT_NCNN_PYTHON,
        help=f"a Python with the ncnn package (default {DEFAULT_NCNN_PYTHON})",
    )
    internal = commands.add_parser("ncnn-run", help="(used by probe) run the ncnn graphs in --work")
    internal.add_argument("--work", type=Path, required=True)
    for sub in (run, internal):
        sub.add_argument("--threads", type=int, default=1, help="CPU threads of every engine (default 1)")
        sub.add_argument("--repeats", type=int, default=5, help="timed runs per image, fastest kept (default 5)")
        sub.add_argument(
            "--fp16", action="store_true", help="fp16 weights (pnnx fp16=1) and ncnn's fp16 packed/storage/arithmetic"
        )
        sub.add_argument("--bf16", action="store_true", help="ncnn's bf16 storage")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "ncnn-run":
        ncnn_run(args.work, threads=args.threads, fp16=args.fp16, bf16=args.bf16, repeats=args.repeats)
        return 0
    return probe(args)


if __name__ == "__main__":
    sys.exit(main())
