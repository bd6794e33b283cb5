"""Multi-scale deformable attention of the RT-DETRv2 decoder, with bilinear or discrete sampling.

Each query attends to a few sampling points per feature level, and the number of points may differ per
level (selective multi-scale sampling). The points are read either with bilinear ``grid_sample`` or with
the discrete operator: each location becomes one pixel index that is gathered, which keeps GridSample out
of exported graphs. The switch is a plain attribute; it changes no weight.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .decisions import round_index

__all__ = ["MSDeformableAttention", "sample_bilinear", "sample_discrete", "deformable_attention"]

# Whole numbers up to 2**24 are exact in float32, so flat indices of maps up to that many pixels are too.
_FLOAT_EXACT = 2**24


def sample_bilinear(value: torch.Tensor, locations: torch.Tensor, *, where: str = "") -> torch.Tensor:
    """Bilinear sampling with zero padding, as ``grid_sample(align_corners=False)``.

    Args:
        value: ``[N, C, H, W]`` feature map.
        locations: ``[N, Q, P, 2]`` sampling locations ``(x, y)`` normalised to [0, 1] over the map.
        where: which attention and level (unused: bilinear sampling decides nothing discretely).

    Returns:
        ``[N, C, Q, P]`` sampled features.
    """
    return F.grid_sample(value, 2 * locations - 1, mode="bilinear", padding_mode="zeros", align_corners=False)


def discrete_indices(locations: torch.Tensor, height: int, width: int, *, where: str = "") -> torch.Tensor:
    """Flat pixel indices ``y * W + x`` of the discrete operator, ``[N, Q, P]`` int64.

    The official rule: the integer part (cast toward zero) of ``loc * [W, H] + 0.5``, clamped into the map.
    x is clamped to ``W - 1`` and y to ``H - 1``; the official code clamps both to ``H - 1``, which only
    agrees for square maps. Each coordinate is a decision point (``decisions.round_index``).

    Each coordinate is clamped and floored in float and cast to int64 as a whole number; the flat index is then
    integer arithmetic. Engines that keep integer tensors as float (OpenCV 4 DNN) neither truncate in a
    float-to-int64 ``Cast`` nor honour int64 ``Clip`` bounds, which the float clamp and floor avoid; and engines
    that run float arithmetic in FP16 or BF16 (RKNN, OpenVINO BF16) cannot hold ``y * W + x`` exactly (BF16 holds
    whole numbers only up to 256), which the integer flat index avoids.
    """
    if height * width > _FLOAT_EXACT:
        raise ValueError(f"a {height}x{width} map has more pixels than float32 indexes exactly (2**24)")
    # Scalar factors rather than a [W, H] tensor: the same float32 products, and no host-to-device copy
    # (which CUDA-graph capture forbids). The coordinates are computed in the model's dtype, as before; the
    # rounding in float32 (a no-op for FP32 models), since FP16 holds whole numbers exactly only up to 2048.
    x = round_index((locations[..., 0] * width + 0.5).float(), width - 1, where=f"{where}, x").to(torch.int64)
    y = round_index((locations[..., 1] * height + 0.5).float(), height - 1, where=f"{where}, y").to(torch.int64)
    return y * width + x


def sample_discrete(value: torch.Tensor, locations: torch.Tensor, *, where: str = "") -> torch.Tensor:
    """Discrete sampling: gather the one pixel each location rounds to (same shapes as ``sample_bilinear``)."""
    n, c, h, w = value.shape
    index = discrete_indices(locations, h, w, where=where).flatten(1)
    gathered = value.flatten(2).gather(2, index.unsqueeze(1).expand(n, c, index.shape[1]))
    return gathered.reshape(n, c, locations.shape[1], locations.shape[2])


_SAMPLERS = {"bilinear": sample_bilinear, "discrete": sample_discrete}


def deformable_attention(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    num_points: tuple[int, ...],
    *,
    sampling: str = "bilinear",
    where: str = "",
) -> torch.Tensor:
    """Weighted sum of the features sampled at each query's points over all levels.

    Args:
        value: ``[B, L_v, heads, C_head]`` flattened multi-level values (levels concatenated, row-major).
        spatial_shapes: ``(H, W)`` of each level, in the order of ``value``.
        sampling_locations: ``[B, Q, heads, sum(num_points), 2]`` ``(x, y)`` in [0, 1].
        attention_weights: ``[B, Q, heads, sum(num_points)]``, softmax-normalised over the points.
        num_points: sampling points of each level.
        sampling: ``"bilinear"`` or ``"discrete"``.
        where: which attention this is, for the record of its decisions (see ``decisions``).

    Returns:
        ``[B, Q, heads * C_head]``.
    """
    sampler = _SAMPLERS[sampling]
    batch, _, heads, channels = value.shape
    num_queries = sampling_locations.shape[1]
    values = value.permute(0, 2, 3, 1).flatten(0, 1).split([h * w for h, w in spatial_shapes], dim=-1)
    locations = sampling_locations.permute(0, 2, 1, 3, 4).flatten(0, 1).split(list(num_points), dim=-2)
    sampled = [
        sampler(level_value.reshape(batch * heads, channels, h, w), level_locations, where=f"{where}, level {level}")
        for level, (level_value, level_locations, (h, w)) in enumerate(
            zip(values, locations, spatial_shapes, strict=False)
        )
    ]
    weights = attention_weights.permute(0, 2, 1, 3).reshape(batch * heads, 1, num_queries, sum(num_points))
    output = (torch.concat(sampled, dim=-1) * weights).sum(-1).reshape(batch, heads * channels, num_queries)
    return output.permute(0, 2, 1)


class MSDeformableAttention(nn.Module):
    """Deformable cross attention around 4-d reference boxes.

    Offsets are predicted per head and point, scaled by ``1 / num_points`` of their level, by the reference
    box size and by ``offset_scale``, and added to the box centre.
    """

    def __init__(
        self,
        embed_dim: int = 256,
        num_heads: int = 8,
        num_points: tuple[int, ...] = (4, 4, 4),
        *,
        offset_scale: float = 0.5,
        sampling: str = "bilinear",
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_points = tuple(num_points)
        self.offset_scale = offset_scale
        self.sampling = sampling
        # Which attention this is, for the record of its decisions; the decoder names its layers.
        self.where = "deformable attention"
        total_points = sum(self.num_points)
        scale = [1 / n for n in self.num_points for _ in range(n)]
        self.register_buffer("num_points_scale", torch.tensor(scale, dtype=torch.float32))
        self.sampling_offsets = nn.Linear(embed_dim, num_heads * total_points * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * total_points)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self._reset_parameters()

    @property
    def sampling(self) -> str:
        return self._sampling

    @sampling.setter
    def sampling(self, method: str) -> None:
        if method not in _SAMPLERS:
            raise ValueError(f"unknown sampling method {method!r}; choose from {', '.join(_SAMPLERS)}")
        self._sampling = method

    def _reset_parameters(self) -> None:
        # Initial offsets point each head in its own direction, point k of a level k steps along it.
        nn.init.constant_(self.sampling_offsets.weight, 0)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        directions = torch.stack([thetas.cos(), thetas.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values
        steps = torch.concat([torch.arange(1, n + 1) for n in self.num_points]).reshape(1, -1, 1)
        grid = directions.reshape(self.num_heads, 1, 2) * steps
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.constant_(self.attention_weights.weight, 0)
        nn.init.constant_(self.attention_weights.bias, 0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0)

    def forward(
        self,
        query: torch.Tensor,
        reference_boxes: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """Attend from queries to the multi-level memory.

        Args:
            query: ``[B, Q, D]`` queries (content plus position embedding).
            reference_boxes: ``[B, Q, 1, 4]`` cxcywh in [0, 1].
            value: ``[B, L_v, D]`` flattened multi-level memory.
            spatial_shapes: ``(H, W)`` of each level.

        Returns:
            ``[B, Q, D]``.
        """
        batch, num_queries = query.shape[:2]
        total_points = sum(self.num_points)
        value = self.value_proj(value).reshape(batch, value.shape[1], self.num_heads, self.embed_dim // self.num_heads)
        offsets = self.sampling_offsets(query).reshape(batch, num_queries, self.num_heads, total_points, 2)
        weights = self.attention_weights(query).reshape(batch, num_queries, self.num_heads, total_points)
        weights = F.softmax(weights, dim=-1)
        points_scale = self.num_points_scale.to(dtype=query.dtype).unsqueeze(-1)
        # A Reshape to the known rank-5 shape rather than indexing with None (an Unsqueeze; see the decoder).
        boxes = reference_boxes.reshape(-1, num_queries, 1, 1, 4)
        offsets = offsets * points_scale * boxes[..., 2:] * self.offset_scale
        locations = boxes[..., :2] + offsets
        output = deformable_attention(
            value, spatial_shapes, locations, weights, self.num_points, sampling=self.sampling, where=self.where
        )
        return self.output_proj(output)
