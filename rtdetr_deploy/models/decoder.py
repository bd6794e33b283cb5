"""RTDETRTransformerv2: query selection from the encoder memory, then a deformable decoder with box refinement.

Attribute names follow the official implementation so that release checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from .attention import Attention
from .decisions import select_top
from .deformable_attention import MSDeformableAttention
from .denoising import DenoisingGroups, contrastive_denoising_groups
from .layers import MLP, activation, inverse_sigmoid

__all__ = ["RTDETRTransformerv2", "build_decoder"]


class TransformerDecoderLayer(nn.Module):
    """Self attention over queries, deformable cross attention to the memory, feed-forward; post-norm."""

    def __init__(
        self,
        d_model: int = 256,
        n_head: int = 8,
        dim_feedforward: int = 1024,
        *,
        num_points: tuple[int, ...] = (4, 4, 4),
        dropout: float = 0.0,
        sampling: str = "bilinear",
    ) -> None:
        super().__init__()
        self.self_attn = Attention(d_model, n_head, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformableAttention(d_model, n_head, num_points, sampling=sampling)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = activation("relu")
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)
        nn.init.xavier_uniform_(self.linear1.weight)
        nn.init.xavier_uniform_(self.linear2.weight)

    def forward(
        self,
        target: torch.Tensor,
        reference_boxes: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
        query_pos: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[B, Q, D]`` queries, ``[B, Q, 1, 4]`` cxcywh reference boxes, ``[B, L, D]`` memory to ``[B, Q, D]``."""
        q = k = target + query_pos
        attended, _ = self.self_attn(q, k, value=target, attn_mask=attn_mask, need_weights=False)
        target = self.norm1(target + self.dropout1(attended))
        attended = self.cross_attn(target + query_pos, reference_boxes, memory, spatial_shapes)
        target = self.norm2(target + self.dropout2(attended))
        ffn = self.linear2(self.dropout3(self.activation(self.linear1(target))))
        return self.norm3(target + self.dropout4(ffn))


class TransformerDecoder(nn.Module):
    """Decoder layers with iterative box refinement; at inference it stops after layer ``eval_idx``."""

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int, eval_idx: int = -1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(decoder_layer) for _ in range(num_layers))
        for index, layer in enumerate(self.layers):
            layer.cross_attn.where = f"decoder layer {index}"
        self.eval_idx = eval_idx if eval_idx >= 0 else num_layers + eval_idx

    def forward(
        self,
        target: torch.Tensor,
        ref_boxes_unact: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
        bbox_head: nn.ModuleList,
        score_head: nn.ModuleList,
        query_pos_head: MLP,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns stacked boxes ``[L, B, Q, 4]`` cxcywh in [0, 1] and logits ``[L, B, Q, C]``.

        In training every layer contributes (L = num_layers); at inference only layer ``eval_idx`` (L = 1).
        """
        boxes_list, logits_list = [], []
        ref_boxes_detached = F.sigmoid(ref_boxes_unact)
        ref_boxes = ref_boxes_detached
        output = target
        for i, layer in enumerate(self.layers):
            query_pos = query_pos_head(ref_boxes_detached)
            # A Reshape to the known shape, not an Unsqueeze: simplifiers merge neighbouring Unsqueezes into a
            # multi-axis one, which OpenCV 4 DNN refuses.
            reference = ref_boxes_detached.reshape(-1, ref_boxes_detached.shape[1], 1, 4)
            output = layer(output, reference, memory, spatial_shapes, query_pos, attn_mask)
            refined = F.sigmoid(bbox_head[i](output) + inverse_sigmoid(ref_boxes_detached))
            if self.training:
                logits_list.append(score_head[i](output))
                # Later layers get their box gradient through the undetached previous box (look-forward-twice).
                boxes_list.append(refined if i == 0 else F.sigmoid(bbox_head[i](output) + inverse_sigmoid(ref_boxes)))
            elif i == self.eval_idx:
                logits_list.append(score_head[i](output))
                boxes_list.append(refined)
                break
            ref_boxes = refined
            ref_boxes_detached = refined.detach()
        return torch.stack(boxes_list), torch.stack(logits_list)


class RTDETRTransformerv2(nn.Module):
    """The RT-DETRv2 decoder head.

    Args:
        num_classes: classes of the classification heads.
        feat_channels: channels of the encoder maps (all ``hidden_dim`` in the official sizes).
        num_points: deformable sampling points per level.
        eval_size: ``(height, width)`` for which anchors are precomputed as buffers; other sizes that are
            multiples of 32 generate them on the fly.
        sampling: ``"bilinear"`` or ``"discrete"``; can be changed later with ``set_sampling``.
    """

    def __init__(
        self,
        *,
        num_classes: int = 80,
        hidden_dim: int = 256,
        num_queries: int = 300,
        feat_channels: tuple[int, ...] = (256, 256, 256),
        feat_strides: tuple[int, ...] = (8, 16, 32),
        num_points: tuple[int, ...] = (4, 4, 4),
        nhead: int = 8,
        num_layers: int = 6,
        dim_feedforward: int = 1024,
        num_denoising: int = 100,
        label_noise_ratio: float = 0.5,
        box_noise_scale: float = 1.0,
        eval_size: tuple[int, int] | None = None,
        eval_idx: int = -1,
        sampling: str = "bilinear",
        eps: float = 1e-2,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.num_queries = num_queries
        self.feat_strides = tuple(feat_strides)
        self.num_denoising = num_denoising
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        self.eval_size = eval_size
        self.eps = eps

        self.input_proj = nn.ModuleList(
            nn.Sequential(
                OrderedDict([("conv", nn.Conv2d(c, hidden_dim, 1, bias=False)), ("norm", nn.BatchNorm2d(hidden_dim))])
            )
            for c in feat_channels
        )
        layer = TransformerDecoderLayer(hidden_dim, nhead, dim_feedforward, num_points=num_points, sampling=sampling)
        self.decoder = TransformerDecoder(layer, num_layers, eval_idx)
        if num_denoising > 0:
            self.denoising_class_embed = nn.Embedding(num_classes + 1, hidden_dim, padding_idx=num_classes)
        self.query_pos_head = MLP(4, 2 * hidden_dim, hidden_dim, 2)
        self.enc_output = nn.Sequential(
            OrderedDict([("proj", nn.Linear(hidden_dim, hidden_dim)), ("norm", nn.LayerNorm(hidden_dim))])
        )
        self.enc_score_head = nn.Linear(hidden_dim, num_classes)
        self.enc_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3)
        self.dec_score_head = nn.ModuleList(nn.Linear(hidden_dim, num_classes) for _ in range(num_layers))
        self.dec_bbox_head = nn.ModuleList(MLP(hidden_dim, hidden_dim, 4, 3) for _ in range(num_layers))
        if eval_size is not None:
            self.set_eval_size(eval_size)
        self._reset_parameters()

    def set_eval_size(self, eval_size: tuple[int, int]) -> None:
        """Precompute the anchors (stored as buffers, as the official model does) for ``(height, width)`` inputs."""
        device = self.input_proj[0][0].weight.device
        anchors, valid_mask = self.generate_anchors(self.level_shapes(eval_size), device=device)
        self.eval_size = tuple(eval_size)
        self.register_buffer("anchors", anchors)
        self.register_buffer("valid_mask", valid_mask)

    def _reset_parameters(self) -> None:
        prior_bias = -math.log((1 - 0.01) / 0.01)
        nn.init.constant_(self.enc_score_head.bias, prior_bias)
        nn.init.constant_(self.enc_bbox_head.layers[-1].weight, 0)
        nn.init.constant_(self.enc_bbox_head.layers[-1].bias, 0)
        for score_head, bbox_head in zip(self.dec_score_head, self.dec_bbox_head, strict=False):
            nn.init.constant_(score_head.bias, prior_bias)
            nn.init.constant_(bbox_head.layers[-1].weight, 0)
            nn.init.constant_(bbox_head.layers[-1].bias, 0)
        nn.init.xavier_uniform_(self.enc_output[0].weight)
        nn.init.xavier_uniform_(self.query_pos_head.layers[0].weight)
        nn.init.xavier_uniform_(self.query_pos_head.layers[1].weight)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight)

    def level_shapes(self, size: tuple[int, int]) -> list[tuple[int, int]]:
        """``(H, W)`` of each memory level for ``(height, width)`` inputs."""
        return [(size[0] // s, size[1] // s) for s in self.feat_strides]

    def generate_anchors(
        self, spatial_shapes: list[tuple[int, int]], *, grid_size: float = 0.05, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Anchor boxes at every cell centre, sized ``grid_size * 2**level``.

        Returns:
            anchors ``[1, L, 4]``: inverse-sigmoid cxcywh, ``inf`` where invalid;
            valid_mask ``[1, L, 1]``: True where every coordinate lies in ``(eps, 1 - eps)``.
        """
        anchors = []
        for level, (h, w) in enumerate(spatial_shapes):
            grid_y, grid_x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            centres = (torch.stack([grid_x, grid_y], dim=-1) + 0.5) / torch.tensor([w, h], dtype=torch.float32)
            sizes = torch.ones_like(centres) * grid_size * (2.0**level)
            anchors.append(torch.concat([centres, sizes], dim=-1).reshape(1, h * w, 4))
        anchors = torch.concat(anchors, dim=1).to(device)
        valid_mask = ((anchors > self.eps) * (anchors < 1 - self.eps)).all(-1, keepdim=True)
        anchors = torch.log(anchors / (1 - anchors))
        return torch.where(valid_mask, anchors, torch.inf), valid_mask

    def _anchors_for(self, spatial_shapes: list[tuple[int, int]], device: torch.device) -> tuple[torch.Tensor, ...]:
        if not self.training and self.eval_size is not None and spatial_shapes == self.level_shapes(self.eval_size):
            return self.anchors, self.valid_mask
        return self.generate_anchors(spatial_shapes, device=device)

    def flatten_memory(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """The encoder maps projected and flattened: ``memory [B, L, D]`` and the ``(H, W)`` of each level."""
        projected = [proj(feat) for proj, feat in zip(self.input_proj, feats, strict=False)]
        spatial_shapes = [(int(f.shape[2]), int(f.shape[3])) for f in projected]
        # Levels are joined channel-first and transposed once: a per-level ``[B, H*W, D]`` transpose is square when
        # H*W equals D (the tiny's 8x8 level at 64 channels), and onnx2tf lays such a tensor out the wrong way.
        memory = torch.concat([f.flatten(2) for f in projected], dim=2).permute(0, 2, 1)
        return memory, spatial_shapes

    def _select_queries(
        self, memory: torch.Tensor, spatial_shapes: list[tuple[int, int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Top ``num_queries`` memory positions by best class logit.

        Returns content ``[B, Q, D]`` (detached), the proposals' boxes_unact ``[B, Q, 4]`` and, in training
        only, their logits ``[B, Q, C]`` for the encoder's auxiliary loss.
        """
        positions = sum(h * w for h, w in spatial_shapes)
        if positions < self.num_queries:
            raise ValueError(
                f"the input gives {positions} encoder positions, fewer than the {self.num_queries} queries: "
                "use a larger image size"
            )
        anchors, valid_mask = self._anchors_for(spatial_shapes, memory.device)
        # Where, not a Mul by the 0/1 mask: NPU compilers fuse a constant Mul into the following Gemm, and
        # RKNN's fusion fails on the [L, 1] mask against the [D, D] weight.
        output_memory = self.enc_output(torch.where(valid_mask, memory, 0.0))
        logits = self.enc_score_head(output_memory)
        topk_ind = select_top(logits.max(-1).values, self.num_queries, where="query selection").unsqueeze(-1)
        content = output_memory.gather(1, topk_ind.repeat(1, 1, output_memory.shape[-1]))
        # The box head works position by position, so it runs on the selected positions only: the official code
        # runs it on all of them and then selects (the same boxes; at 640 px 300 positions instead of 8400).
        topk_anchors = anchors.expand(memory.shape[0], -1, -1).gather(1, topk_ind.repeat(1, 1, anchors.shape[-1]))
        topk_boxes_unact = self.enc_bbox_head(content) + topk_anchors
        topk_logits = logits.gather(1, topk_ind.repeat(1, 1, logits.shape[-1])) if self.training else None
        return content.detach(), topk_boxes_unact, topk_logits

    def forward(
        self, feats: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor]:
        """Encoder maps to ``pred_logits [B, Q, C]`` and ``pred_boxes [B, Q, 4]`` cxcywh in [0, 1].

        In training (with ``targets``: per image ``labels`` and cxcywh ``boxes``), also ``aux_outputs``,
        ``enc_aux_outputs`` and, with denoising, ``dn_aux_outputs`` and ``dn_meta``.
        """
        memory, spatial_shapes = self.flatten_memory(feats)
        content, enc_boxes_unact, enc_logits = self._select_queries(memory, spatial_shapes)
        ref_boxes_unact = enc_boxes_unact.detach()

        denoising: DenoisingGroups | None = None
        if self.training and self.num_denoising > 0 and targets is not None:
            denoising = contrastive_denoising_groups(
                targets,
                num_classes=self.num_classes,
                num_queries=self.num_queries,
                class_embed=self.denoising_class_embed,
                num_denoising=self.num_denoising,
                label_noise_ratio=self.label_noise_ratio,
                box_noise_scale=self.box_noise_scale,
            )
        attn_mask = None
        if denoising is not None:
            content = torch.concat([denoising.content, content], dim=1)
            ref_boxes_unact = torch.concat([denoising.boxes_unact, ref_boxes_unact], dim=1)
            attn_mask = denoising.attn_mask

        boxes, logits = self.decoder(
            content,
            ref_boxes_unact,
            memory,
            spatial_shapes,
            self.dec_bbox_head,
            self.dec_score_head,
            self.query_pos_head,
            attn_mask=attn_mask,
        )
        if denoising is not None:
            dn_boxes, boxes = torch.split(boxes, denoising.num_split, dim=2)
            dn_logits, logits = torch.split(logits, denoising.num_split, dim=2)

        out = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if self.training:
            out["aux_outputs"] = _pairs(logits[:-1], boxes[:-1])
            out["enc_aux_outputs"] = _pairs([enc_logits], [F.sigmoid(enc_boxes_unact)])
            if denoising is not None:
                out["dn_aux_outputs"] = _pairs(dn_logits, dn_boxes)
                out["dn_meta"] = denoising
        return out


def _pairs(logits: list[torch.Tensor], boxes: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    return [{"pred_logits": lg, "pred_boxes": bx} for lg, bx in zip(logits, boxes, strict=False)]


def build_decoder(
    *,
    num_classes: int,
    hidden_dim: int,
    feat_channels: tuple[int, ...],
    num_queries: int,
    num_points: tuple[int, ...],
    num_layers: int,
    eval_idx: int,
    dim_feedforward: int,
    num_denoising: int,
    nhead: int = 8,
    eval_size: tuple[int, int] | None = None,
    sampling: str = "bilinear",
) -> RTDETRTransformerv2:
    return RTDETRTransformerv2(
        num_classes=num_classes,
        hidden_dim=hidden_dim,
        num_queries=num_queries,
        feat_channels=feat_channels,
        num_points=num_points,
        nhead=nhead,
        num_layers=num_layers,
        dim_feedforward=dim_feedforward,
        num_denoising=num_denoising,
        eval_size=eval_size,
        eval_idx=eval_idx,
        sampling=sampling,
    )
