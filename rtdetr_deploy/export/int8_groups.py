"""The layer groups of RT-DETRv2 that INT8 quantization can leave in float, by name.

Each group is a set of the graph's quantizable nodes (``Conv``, ``Gemm``, ``MatMul`` with constant weights),
found by the module path that tracing writes into every node name (``/model/backbone/res_layers.2/...``). The
sensitivity analysis (``int8_sensitivity``) leaves one group in float at a time and measures what it costs;
``rtdetr-export --int8-keep-float GROUP,...`` keeps the chosen groups float. The discrete sampling operator's
index arithmetic and everything else in ``precision.fp32_islands`` stay float whatever the groups say.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence

import onnx

__all__ = ["DEFAULT_KEEP_FLOAT", "INT8_GROUPS", "check_groups", "group_of", "nodes_in_groups"]

# Group -> pattern of the node names it holds (searched in the traced name).
INT8_GROUPS: dict[str, str] = {
    "backbone.stem": r"/backbone/conv1/",
    "backbone.stage1": r"/backbone/res_layers\.0/",
    "backbone.stage2": r"/backbone/res_layers\.1/",
    "backbone.stage3": r"/backbone/res_layers\.2/",
    "backbone.stage4": r"/backbone/res_layers\.3/",
    "encoder.input_proj": r"/encoder/input_proj\.",
    "encoder.attention": r"/encoder/encoder\.\d+/layers\.\d+/self_attn/",
    "encoder.ffn": r"/encoder/encoder\.\d+/layers\.\d+/linear[12]/",
    "encoder.ccff": r"/encoder/(fpn_blocks|pan_blocks|lateral_convs|downsample_convs)\.",
    "decoder.input_proj": r"/decoder/input_proj\.",
    "decoder.query_selection": r"/decoder/(enc_output|enc_score_head|enc_bbox_head)/",
    "decoder.self_attention": r"/decoder/decoder/layers\.\d+/self_attn/",
    "decoder.value_proj": r"/cross_attn/value_proj/",
    "decoder.sampling": r"/cross_attn/(sampling_offsets|attention_weights)/",
    "decoder.output_proj": r"/cross_attn/output_proj/",
    "decoder.ffn": r"/decoder/decoder/layers\.\d+/linear[12]/",
    "decoder.heads": r"/decoder/decoder/(dec_score_head|dec_bbox_head|query_pos_head)",
}
_COMPILED = {name: re.compile(pattern) for name, pattern in INT8_GROUPS.items()}
QUANTIZABLE = ("Conv", "Gemm", "MatMul")

# The groups the INT8 export keeps in float unless told otherwise: chosen by the sensitivity analysis on the
# trained reference models (benchmarks/int8_cpu.py, results in benchmarks/results/int8_cpu.json).
DEFAULT_KEEP_FLOAT: tuple[str, ...] = ()


def check_groups(groups: Iterable[str]) -> tuple[str, ...]:
    """The groups, validated: ``ValueError`` naming an unknown one and every valid name (with a close match)."""
    groups = tuple(dict.fromkeys(g.strip() for g in groups if g.strip()))
    for group in groups:
        if group not in INT8_GROUPS:
            hint = difflib.get_close_matches(group, INT8_GROUPS, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(f"unknown INT8 layer group {group!r}{suggestion}; valid groups: {', '.join(INT8_GROUPS)}")
    return groups


def group_of(node_name: str) -> str | None:
    """The group a node name belongs to, or None."""
    return next((name for name, pattern in _COMPILED.items() if pattern.search(node_name)), None)


def nodes_in_groups(model: onnx.ModelProto, groups: Sequence[str]) -> set[str]:
    """Names of the quantizable nodes of ``model`` in ``groups``."""
    wanted = set(check_groups(groups))
    return {node.name for node in model.graph.node if node.op_type in QUANTIZABLE and group_of(node.name) in wanted}
