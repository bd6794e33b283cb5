"""FP16 ONNX with FP32 islands: precision decided in the graph, so a strongly typed TensorRT build only compiles it.

Most of RT-DETRv2 runs well in FP16, but a few parts do not:

- the discrete sampling operator turns each location into a pixel index with ``Cast(loc * [W, H] + 0.5)``;
  in FP16 the spacing of ``loc * W`` is 1/16 pixel at ``W = 80``, so indices flip and every decoder layer
  reads other pixels;
- the iterative box refinement (``sigmoid(head + inverse_sigmoid(ref))``) and the query selection feed the
  same indices and the final boxes;
- LayerNormalization and Softmax reduce over many values; post-processing (sigmoid, top-k, scaling by the
  original image size in pixels) decides which detections exist at all.

``fp32_islands`` finds these parts by walking the graph backwards from every float-to-integer ``Cast``, every
``TopK`` and every graph output, through float edges, up to the LayerNorm, Softmax or Conv that bounds them.
The walk passes through ``MatMul``/``Gemm``, so the small per-query MLPs that predict reference boxes and
sampling offsets stay FP32 too; the backbone, the encoder and the value projections (the bulk of the cost)
become FP16.

The conversion is our own rather than ``onnxconverter_common.float16``: in version 1.16 that converter leaves
``Cast(to=FLOAT)`` nodes unchanged while retyping their outputs to FP16 (ONNX Runtime refuses the graph),
and a blocked node whose output feeds several blocked nodes gets an FP32 -> FP16 -> FP32 round trip that
its cast clean-up does not remove, so an FP32 island silently rounds to FP16 at every fan-out. Here each
tensor is cast at most once per target type, constants are converted at most once, and the result must
pass the ONNX checker and strict type inference.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..atomic import atomic_path
from ..errors import ExportError

__all__ = [
    "FP32_OPS",
    "check_typed",
    "convert_fp16",
    "ensure_node_names",
    "fp32_islands",
    "load_model_proto",
    "set_precision",
]

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
_INTEGER_TYPES = frozenset(
    {
        TensorProto.INT8,
        TensorProto.INT16,
        TensorProto.INT32,
        TensorProto.INT64,
        TensorProto.UINT8,
        TensorProto.UINT16,
        TensorProto.UINT32,
        TensorProto.UINT64,
    }
)

FP32_OPS = frozenset({"LayerNormalization", "Softmax", "TopK", "Log", "Pow", "ReduceMean", "ReduceL2"})
"""Operators that always stay FP32: normalisations and reductions over many values, and selections."""

# The walk from a fragile tensor stops at these producers (they are kept FP32 but their inputs are not).
_BARRIERS = frozenset({"LayerNormalization", "Softmax", "Conv", "ConvTranspose"})

# Operators that compute in FP16 when not kept FP32: op type -> indices of the inputs that take the
# computation type (None: every float input). Everything else stays FP32 and gets FP32 inputs.
_FP16_OPS: dict[str, tuple[int, ...] | None] = dict.fromkeys(
    """
    Add Sub Mul Div Neg Abs Sqrt Exp Erf Tanh Sigmoid Relu LeakyRelu HardSigmoid HardSwish Gelu
    MatMul Gemm Conv ConvTranspose AveragePool MaxPool GlobalAveragePool GlobalMaxPool
    Reshape Transpose Concat Split Slice Gather GatherElements GatherND Unsqueeze Squeeze Flatten Expand Tile
    Where Clip Pad Identity Equal Less Greater ReduceSum ReduceMax ReduceMin Max Min DepthToSpace SpaceToDepth
    """.split()
)
_FP16_OPS["Resize"] = (0,)  # roi and scales keep their own types
# Operators that read their input's type but not its values (Shape) or take any type (Cast).
_ANY_INPUT_OPS = frozenset({"Shape", "Size", "Cast"})
_SUBGRAPH_ATTRIBUTES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
_FP16_MAX = float(np.finfo(np.float16).max)


def load_model_proto(model: str | os.PathLike[str] | onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model``, or the model loaded from a path (``FileNotFoundError`` when there is none)."""
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    return onnx.load(str(path))


def ensure_node_names(graph: onnx.GraphProto) -> None:
    """Give every node a unique name: the islands and the inserted casts are identified by node name."""
    seen: set[str] = set()
    for index, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.name or node.op_type}__{index}"
        seen.add(node.name)


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor of the main graph (shape inference plus initializers)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True)
    except onnx.shape_inference.InferenceError as exc:
        raise ExportError(f"shape inference failed on the FP32 graph: {str(exc).splitlines()[0]}") from None
    graph = inferred.graph
    types = {init.name: init.data_type for init in graph.initializer}
    for info in (*graph.input, *graph.value_info, *graph.output):
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            types[info.name] = info.type.tensor_type.elem_type
    return types


def _attr(node: onnx.NodeProto, name: str) -> object:
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return None


def fp32_islands(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes an FP16 conversion must keep in FP32.

    These are the operators in ``FP32_OPS`` plus every node reached by walking backwards through float
    tensors from (1) each ``Cast`` of a float tensor to an integer type (the discrete operator's pixel
    indices), (2) each ``TopK`` (query selection and post-processing), (3) each graph output (boxes
    scaled to pixels, scores) and (4) the sampling grid of each ``GridSample`` (bilinear sampling). The walk
    ignores ``Shape``/``Size`` inputs (only their shape is read) and stops at LayerNormalization, Softmax and
    Conv, which it keeps FP32 but does not pass.

    Args:
        model: an FP32 graph whose nodes have unique names.

    Returns:
        Node names.
    """
    graph = model.graph
    types = _tensor_types(model)
    producer = {out: node for node in graph.node for out in node.output}
    seeds = [producer[out.name] for out in graph.output if out.name in producer]
    for node in graph.node:
        is_index_cast = (
            node.op_type == "Cast" and _attr(node, "to") in _INTEGER_TYPES and types.get(node.input[0]) == FLOAT
        )
        if is_index_cast or node.op_type == "TopK":
            seeds.append(node)
        elif node.op_type == "GridSample" and node.input[1] in producer:
            seeds.append(producer[node.input[1]])  # bilinear sampling: its locations, not the sampled values
    keep = {node.name for node in graph.node if node.op_type in FP32_OPS}
    visited: set[str] = set()
    while seeds:
        node = seeds.pop()
        if node.name in visited:
            continue
        visited.add(node.name)
        keep.add(node.name)
        if node.op_type in _BARRIERS or node.op_type in ("Shape", "Size"):
            continue
        seeds.extend(producer[name] for name in node.input if name in producer and types.get(name) == FLOAT)
    return keep


def _input_requirement(node: onnx.NodeProto, index: int, fp16_nodes: set[str]) -> int | None:
    """The type ``node`` needs for its float input ``index``: FLOAT16, FLOAT, or None (any)."""
    if node.op_type in _ANY_INPUT_OPS:
        return None
    if node.name in fp16_nodes:
        t_inputs = _FP16_OPS[node.op_type]
        if t_inputs is None or index in t_inputs:
            return FLOAT16
    return FLOAT


def _to_fp16_array(array: np.ndarray) -> np.ndarray:
    """FP32 -> FP16 keeping finite values finite (clipped to +-65504); inf and nan pass through."""
    finite = np.isfinite(array)
    return np.where(finite, np.clip(array, -_FP16_MAX, _FP16_MAX), array).astype(np.float16)


def _convert_tensor(tensor: TensorProto) -> TensorProto:
    converted = numpy_helper.from_array(_to_fp16_array(numpy_helper.to_array(tensor)), tensor.name)
    tensor.CopyFrom(converted)
    return tensor


def _consumer_needs(graph: onnx.GraphProto, types: dict[str, int], fp16_nodes: set[str]) -> dict[str, set[int]]:
    """What each float tensor's consumers (and the graph outputs) need it as: FLOAT16, FLOAT or both."""
    needs: dict[str, set[int]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name and types.get(name) == FLOAT:
                need = _input_requirement(node, index, fp16_nodes)
                if need is not None:
                    needs.setdefault(name, set()).add(need)
    for out in graph.output:
        if out.type.tensor_type.elem_type == FLOAT:
            needs.setdefault(out.name, set()).add(FLOAT)
    return needs


def _retype_producers(
    graph: onnx.GraphProto,
    types: dict[str, int],
    fp16_nodes: set[str],
    keep_fp32: set[str],
    needs: dict[str, set[int]],
) -> dict[str, int]:
    """What each float tensor is produced as. Constants and ``Cast(to=FLOAT)`` follow their consumers when all of
    them want FP16 (converted in place); other producers compute in their node's type."""
    produced: dict[str, int] = {}
    for init in graph.initializer:
        if init.data_type == FLOAT and needs.get(init.name) == {FLOAT16}:
            _convert_tensor(init)
            produced[init.name] = FLOAT16
    for node in graph.node:
        float_outputs = [name for name in node.output if types.get(name) == FLOAT]
        if not float_outputs:
            continue
        if node.name in fp16_nodes:
            for name in float_outputs:
                produced[name] = FLOAT16
        elif node.name not in keep_fp32 and needs.get(node.output[0]) == {FLOAT16}:
            if node.op_type in ("Constant", "ConstantOfShape") and isinstance(_attr(node, "value"), TensorProto):
                value = next(attr for attr in node.attribute if attr.name == "value")
                _convert_tensor(value.t)
                produced[node.output[0]] = FLOAT16
            elif node.op_type == "Cast":
                next(attr for attr in node.attribute if attr.name == "to").i = FLOAT16
                produced[node.output[0]] = FLOAT16
    return produced


def _insert_casts(
    graph: onnx.GraphProto, types: dict[str, int], fp16_nodes: set[str], produced: dict[str, int]
) -> None:
    """One cast (or converted copy of a constant) per tensor and missing type, shared by its consumers. Each cast
    goes right after the producer of its input, which keeps the node list topologically sorted."""
    initializers = {init.name: init for init in graph.initializer}
    position = {out: float(index) for index, node in enumerate(graph.node) for out in node.output}
    order: list[tuple[float, onnx.NodeProto]] = [(float(index), node) for index, node in enumerate(graph.node)]
    casts: dict[tuple[str, int], str] = {}

    def cast_of(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            cast_name = f"{name}__{'fp16' if to == FLOAT16 else 'fp32'}"
            if name in initializers and to == FLOAT16:
                copy = numpy_helper.from_array(_to_fp16_array(numpy_helper.to_array(initializers[name])), cast_name)
                graph.initializer.append(copy)
            else:
                cast = helper.make_node("Cast", [name], [cast_name], name=f"{cast_name}__cast", to=to)
                order.append((position.get(name, -1.0) + 0.5, cast))
            casts[key] = cast_name
        return casts[key]

    for node in graph.node:
        for index, name in enumerate(node.input):
            if not name or types.get(name) != FLOAT:
                continue
            need = _input_requirement(node, index, fp16_nodes)
            have = produced.get(name, FLOAT)
            if need is not None and need != have:
                node.input[index] = cast_of(name, need)
    for out in graph.output:
        if out.type.tensor_type.elem_type == FLOAT and produced.get(out.name, FLOAT) != FLOAT:
            raise ExportError(f"graph output {out.name!r} would be FP16; its producer must stay FP32")
    nodes = [node for _, node in sorted(order, key=lambda item: item[0])]
    del graph.node[:]
    graph.node.extend(nodes)


def _cast_nodes_to_fp16(model: onnx.ModelProto, keep_fp32: set[str]) -> onnx.ModelProto:
    """Retype every float computation outside ``keep_fp32`` to FP16, inserting one Cast per tensor and type."""
    graph = model.graph
    types = _tensor_types(model)
    if any(t == FLOAT16 for t in types.values()):
        raise ValueError("the ONNX already holds FP16 tensors; convert_fp16 expects an FP32 graph")
    if any(attr.type in _SUBGRAPH_ATTRIBUTES for node in graph.node for attr in node.attribute):
        raise ExportError("graphs with subgraphs (If/Loop/Scan) are not supported by the FP16 conversion")
    fp16_nodes = {
        node.name
        for node in graph.node
        if node.op_type in _FP16_OPS
        and node.name not in keep_fp32
        and any(types.get(name) == FLOAT for name in (*node.input, *node.output))
    }
    needs = _consumer_needs(graph, types, fp16_nodes)
    produced = _retype_producers(graph, types, fp16_nodes, keep_fp32, needs)
    _insert_casts(graph, types, fp16_nodes, produced)
    del graph.value_info[:]
    return model


def set_precision(model: onnx.ModelProto, precision: str) -> None:
    """Set (or add) the ``precision`` entry of the model's ``metadata_props`` and its doc string mention."""
    for prop in model.metadata_props:
        if prop.key == "precision":
            prop.value = precision
            break
    else:
        model.metadata_props.add(key="precision", value=precision)
    if model.doc_string:
        model.doc_string = model.doc_string.replace(", fp32", f", {precision}")


def check_typed(model: onnx.ModelProto, what: str) -> None:
    """ONNX checker plus strict type inference; raises ``ExportError`` naming ``what`` on failure."""
    try:
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{what} fails the ONNX checker: {str(exc).splitlines()[0]}") from None


def convert_fp16(
    onnx_in: str | os.PathLike[str] | onnx.ModelProto,
    onnx_out: str | os.PathLike[str],
    *,
    keep_fp32: Iterable[str] = (),
) -> Path:
    """Write an FP16 copy of an FP32 RT-DETRv2 ONNX with FP32 islands (see ``fp32_islands``).

    Inputs and outputs keep their types (``images`` float32 in; ``labels`` int64, ``boxes`` and ``scores``
    float32 out), so callers feed and read the FP16 model exactly like the FP32 one. The metadata's
    ``precision`` becomes ``"fp16"``. The file is written atomically.

    Args:
        onnx_in: FP32 ONNX path or model.
        onnx_out: where to write the FP16 ONNX.
        keep_fp32: names of further nodes to keep in FP32.

    Returns:
        ``onnx_out`` as a ``Path``.

    Raises:
        FileNotFoundError: ``onnx_in`` does not exist.
        ValueError: the graph already holds FP16 tensors.
        ExportError: the converted graph fails the ONNX checker or type inference.
    """
    model = load_model_proto(onnx_in)
    ensure_node_names(model.graph)
    islands = fp32_islands(model) | set(keep_fp32)
    converted = _cast_nodes_to_fp16(model, islands)
    set_precision(converted, "fp16")
    check_typed(converted, "the FP16 graph")
    out = Path(onnx_out)
    with atomic_path(out) as tmp:
        onnx.save(converted, str(tmp))
    return out
