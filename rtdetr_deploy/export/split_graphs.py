"""RT-DETRv2 as two graphs around its query selection, for engines without TopK and GatherElements (ncnn).

- ``EncoderGraph``: ``images [1, 3, H, W]`` -> ``memory [1, L, D]`` (backbone, hybrid encoder, flattened input
  projections), ``output_memory [1, L, D]`` (``enc_output`` of the memory masked by the anchor valid mask) and
  ``scores [1, L]`` (each position's best class logit). The mask is fixed by the input size, so it is a Mul by a
  constant 0/1 tensor here (the same values as the model's Where, and a layer every engine has).
- the host keeps the ``Q`` best positions and their ``output_memory`` rows and anchors
  (``runtime.query_selection``);
- ``DecoderGraph``: ``content [1, Q, D]``, ``anchors [1, Q, 4]`` (inverse-sigmoid), ``memory [1, L, D]`` ->
  ``pred_logits [1, Q, C]``, ``pred_boxes [1, Q, 4]`` cxcywh in [0, 1]: the raw outputs of an ``--outputs raw``
  graph. Its deformable attention is ``PerHeadDeformableAttention``, the same function in the form pnnx converts.

Both run with bilinear sampling (GridSample); the model is traced as ``export.onnx_export`` traces the probe.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ExportError
from ..models.attention import set_explicit_attention
from ..models.deformable_attention import MSDeformableAttention
from ..models.rtdetr import RTDETR
from .onnx_export import trace_graph

__all__ = [
    "DECODER_INPUTS",
    "DECODER_OUTPUTS",
    "DecoderGraph",
    "ENCODER_INPUTS",
    "ENCODER_OUTPUTS",
    "EncoderGraph",
    "PerHeadDeformableAttention",
    "SplitGraphs",
    "export_split_graphs",
]

ENCODER_INPUTS = ("images",)
ENCODER_OUTPUTS = ("memory", "output_memory", "scores")
DECODER_INPUTS = ("content", "anchors", "memory")
DECODER_OUTPUTS = ("pred_logits", "pred_boxes")


class PerHeadDeformableAttention(nn.Module):
    """An ``MSDeformableAttention`` (batch 1, bilinear sampling) with no tensor above rank 4, one ``grid_sample``
    per head and level on a batch-1 map, and the weighted sum over the points as a MatMul.

    pnnx maps three parts of the model's form wrongly for ncnn, whose Mats have no batch axis and at most four
    dimensions: rank-5 reshapes of the offsets stay ``Tensor.reshape`` (no ncnn layer); one GridSample over all
    heads on a ``[heads, C_head, H, W]`` map is sampled as a volume; and the opset-17 ``ReduceSum`` (axes as an
    input) becomes a ``Reduction`` over no axis, which ncnn runs as a copy. The parameters are the wrapped module's.
    """

    def __init__(self, attention: MSDeformableAttention) -> None:
        super().__init__()
        self.attention = attention
        total = sum(attention.num_points)
        scale = attention.num_points_scale.repeat(attention.num_heads) * attention.offset_scale
        self.register_buffer("offset_scale", scale.reshape(1, 1, attention.num_heads * total, 1))

    def forward(
        self, query: torch.Tensor, reference_boxes: torch.Tensor, value: torch.Tensor, spatial_shapes: list
    ) -> torch.Tensor:
        """``query [1, Q, D]``, ``reference_boxes [1, Q, 1, 4]`` cxcywh in [0, 1], ``value [1, L, D]`` and the
        ``(H, W)`` of each level -> ``[1, Q, D]``."""
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
            first = head * total
            sampled = torch.concat(
                [
                    F.grid_sample(
                        feature[:, channels],
                        grids[:, :, first + start : first + start + count],
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
    """``images [1, 3, H, W]`` -> ``memory [1, L, D]``, ``output_memory [1, L, D]``, ``scores [1, L]``: the model
    up to its query selection (see the module docstring). Wraps a deployed model with anchors for its input size."""

    def __init__(self, model: RTDETR) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("valid", model.decoder.valid_mask.to(torch.float32))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        head = self.model.decoder
        memory, _ = head.flatten_memory(self.model.encoder(self.model.backbone(images)))
        output_memory = head.enc_output(memory * self.valid)
        scores = head.enc_score_head(output_memory).max(-1).values
        return memory, output_memory, scores


class DecoderGraph(nn.Module):
    """``content [1, Q, D]``, ``anchors [1, Q, 4]``, ``memory [1, L, D]`` -> ``pred_logits [1, Q, C]``,
    ``pred_boxes [1, Q, 4]`` cxcywh: the model after its query selection (the proposals' box head, then the decoder
    layers up to its last inference layer). Replaces the deformable attention of ``model`` in place: pass a copy."""

    def __init__(self, model: RTDETR) -> None:
        super().__init__()
        self.model = model
        self.spatial_shapes = model.decoder.level_shapes(model.decoder.eval_size)
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


@dataclass(frozen=True)
class SplitGraphs:
    """The two graphs of a model and what the host needs between them.

    Attributes:
        encoder: ``encoder.onnx`` (``ENCODER_INPUTS`` -> ``ENCODER_OUTPUTS``).
        decoder: ``decoder.onnx`` (``DECODER_INPUTS`` -> ``DECODER_OUTPUTS``).
        anchors: ``[L, 4]`` float32 inverse-sigmoid cxcywh anchors of the input size (``inf`` where invalid).
        queries: ``Q``, the queries the host selects.
        input_shapes: per graph, the shapes of its inputs (batch 1), in input order.
    """

    encoder: Path
    decoder: Path
    anchors: np.ndarray
    queries: int
    input_shapes: dict[str, tuple[tuple[int, ...], ...]]


def export_split_graphs(model: RTDETR, folder: Path, *, opset: int = 17) -> SplitGraphs:
    """Trace ``model`` (bilinear sampling, anchors set for its input size) as ``folder/encoder.onnx`` and
    ``folder/decoder.onnx``. The model is deep-copied and reparameterised; the caller's is left as it was.

    Raises:
        ExportError: the model samples discretely (the split graphs need GridSample) or has no input size set.
    """
    if model.sampling != "bilinear":
        raise ExportError(f"the split graphs need bilinear sampling, the model samples with {model.sampling!r}")
    if model.decoder.eval_size is None:
        raise ExportError("the split graphs need the model's input size: call set_eval_size first")
    deployable = set_explicit_attention(copy.deepcopy(model).deploy(), True).eval()
    height, width = deployable.decoder.eval_size
    encoder = EncoderGraph(deployable).eval()
    images = torch.rand(1, 3, height, width)
    with torch.no_grad():
        memory, output_memory, scores = encoder(images)
    index = scores.topk(deployable.decoder.num_queries, dim=-1).indices[0]
    example = (output_memory[:, index], deployable.decoder.anchors[:, index], memory)
    encoder_file = trace_graph(
        encoder,
        (images,),
        folder / "encoder.onnx",
        input_names=ENCODER_INPUTS,
        output_names=ENCODER_OUTPUTS,
        sampling="bilinear",
        opset=opset,
    )
    decoder = DecoderGraph(copy.deepcopy(deployable)).eval()
    decoder_file = trace_graph(
        decoder,
        example,
        folder / "decoder.onnx",
        input_names=DECODER_INPUTS,
        output_names=DECODER_OUTPUTS,
        sampling="bilinear",
        opset=opset,
    )
    shapes = {
        "encoder": (tuple(images.shape),),
        "decoder": tuple(tuple(t.shape) for t in example),
    }
    anchors = deployable.decoder.anchors[0].detach().cpu().numpy().astype(np.float32)
    return SplitGraphs(encoder_file, decoder_file, anchors, int(index.numel()), shapes)
