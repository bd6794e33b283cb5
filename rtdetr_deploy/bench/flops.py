"""Count a model's floating-point work once, from its ONNX graph: the Conv, ConvTranspose, MatMul and Gemm nodes.

These carry nearly all of RT-DETRv2's arithmetic; element-wise ops, normalisations, softmax and the sampling
gathers are ignored, so the count is a slight underestimate. One multiply-add counts as 2 FLOPs, the convention
of measured matrix-multiply rates (``2 * M * N * K``) that the count is compared with.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["FlopCount", "count_onnx_flops", "count_torch_flops"]

COUNTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one image through a graph.

    Attributes:
        gflops: total over the counted nodes, in 1e9 FLOPs (2 per multiply-add), for batch 1.
        by_op: GFLOPs per op type.
        counted: counted nodes.
        uncounted: nodes of a counted type whose shapes could not be inferred (their work is missing).
    """

    gflops: float
    by_op: dict[str, float] = field(default_factory=dict)
    counted: int = 0
    uncounted: int = 0


def _fix_batch(model: object, batch: int) -> None:
    """Give every graph input a static first dimension ``batch`` so shape inference resolves all shapes."""
    for graph_input in model.graph.input:  # type: ignore[attr-defined]
        dims = graph_input.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = batch


def count_onnx_flops(path: str | os.PathLike[str], *, batch: int = 1) -> FlopCount:
    """FLOPs per image of an FP32 ONNX model, from shape inference with the batch fixed to ``batch``.

    Args:
        path: ONNX file with static spatial input sizes.
        batch: batch used for shape inference; the result is divided by it.

    Raises:
        FileNotFoundError: no such file.
    """
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {path}")
    model = onnx.load(str(path))
    _fix_batch(model, batch)
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, tuple[int, ...] | None] = {}
    for info in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        dims = info.type.tensor_type.shape.dim
        known = all(d.HasField("dim_value") for d in dims)
        shapes[info.name] = tuple(d.dim_value for d in dims) if known else None
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    constants = {init.name for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = tuple(numpy_helper.to_array(attr.t).shape)
                    constants.add(node.output[0])
    by_op: Counter[str] = Counter()
    counted = uncounted = 0
    for node in model.graph.node:
        if node.op_type not in COUNTED_OPS:
            continue
        flops = _node_flops(node, shapes)
        if flops is None:
            uncounted += 1
            continue
        counted += 1
        by_op[node.op_type] += flops
    by_gflops = {op: value / batch / 1e9 for op, value in sorted(by_op.items())}
    return FlopCount(gflops=sum(by_gflops.values()), by_op=by_gflops, counted=counted, uncounted=uncounted)


def _node_flops(node: object, shapes: dict[str, tuple[int, ...] | None]) -> float | None:
    """FLOPs of one node (2 per multiply-add), or ``None`` when a shape it needs is unknown."""
    op = node.op_type  # type: ignore[attr-defined]
    inputs, outputs = list(node.input), list(node.output)  # type: ignore[attr-defined]
    out = shapes.get(outputs[0])
    if out is None:
        return None
    if op in ("Conv", "ConvTranspose"):
        weight = shapes.get(inputs[1])
        if weight is None:
            return None
        # Conv weight [M, C/group, k...]: each output element costs C/group * prod(k) multiply-adds.
        # ConvTranspose weight [C, M/group, k...]: each input element is spread over M/group * prod(k) outputs.
        if op == "Conv":
            return 2.0 * float(np.prod(out)) * float(np.prod(weight[1:]))
        source = shapes.get(inputs[0])
        return None if source is None else 2.0 * float(np.prod(source)) * float(np.prod(weight[1:]))
    if op == "MatMul":
        a = shapes.get(inputs[0])
        if a is None or not a:
            return None
        return 2.0 * float(np.prod(out)) * a[-1]
    if op == "Gemm":
        a = shapes.get(inputs[0])
        if a is None or len(a) != 2:
            return None
        trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)  # type: ignore[attr-defined]
        return 2.0 * float(np.prod(out)) * (a[0] if trans_a else a[1])
    return None


def count_torch_flops(model: object, input_size: tuple[int, int]) -> FlopCount:
    """FLOPs per image of a torch ``RTDETR`` module at ``input_size`` (torch's own counter; needs torch).

    ``torch.utils.flop_counter`` counts matrix products and convolutions with the same 2-per-multiply-add
    convention, so the figure is comparable with ``count_onnx_flops`` (attention's batched products aside).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    parameter = next(model.parameters())  # type: ignore[attr-defined]
    images = torch.rand(1, 3, *input_size, device=parameter.device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images)  # type: ignore[operator]
    by_op: Counter[str] = Counter()
    for op, value in counter.get_flop_counts().get("Global", {}).items():
        by_op[str(op).split(".")[-1]] += value
    by_gflops = {op: value / 1e9 for op, value in sorted(by_op.items())}
    return FlopCount(gflops=sum(by_gflops.values()), by_op=by_gflops, counted=0, uncounted=0)
