"""Graph rewrites that the PyTorch model cannot express, so that engines with narrower ONNX support read the graph.

Most of the portable graph comes from the model itself (``models``: float index arithmetic, Reshape instead of
multi-axis Unsqueeze, the anchor valid-mask as Where, an Erf-free GELU). What is left is a property of the
exported file: tracing and simplification fold every constant condition into a BOOL initializer, and OpenCV 4
DNN cannot read BOOL tensors ("Unsupported data type: BOOL"). ``float_conditions`` stores each such constant as
float 0/1 and recomputes the condition with one ``Greater(x, 0.5)`` node; ONNX Runtime folds it back at load time.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["float_conditions"]


def _bool_constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """``{name: array}`` of the BOOL initializers and BOOL ``Constant`` nodes of ``graph``."""
    found = {init.name: numpy_helper.to_array(init) for init in graph.initializer if init.data_type == TensorProto.BOOL}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensor = node.attribute[0].t
            if tensor.data_type == TensorProto.BOOL:
                found[node.output[0]] = numpy_helper.to_array(tensor)
    return found


def float_conditions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite every BOOL constant of the main graph as a float 0/1 initializer followed by ``Greater(x, 0.5)``
    (the same values, computed); returns ``model``, changed in place. Graph outputs keep their names."""
    graph = model.graph
    constants = _bool_constants(graph)
    if not constants:
        return model
    kept_inits = [init for init in graph.initializer if init.name not in constants]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    kept_nodes = [node for node in graph.node if not (node.op_type == "Constant" and node.output[0] in constants)]
    half = f"{_unique_prefix(graph)}half"
    graph.initializer.append(numpy_helper.from_array(np.array(0.5, dtype=np.float32), half))
    recompute = []
    for name, value in constants.items():
        stored = f"{name}.as_float"
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), stored))
        recompute.append(helper.make_node("Greater", [stored, half], [name], name=f"{name}.from_float"))
    del graph.node[:]
    graph.node.extend(recompute + kept_nodes)
    return model


def _unique_prefix(graph: onnx.GraphProto) -> str:
    names = {init.name for init in graph.initializer} | {out for node in graph.node for out in node.output}
    prefix = "portable."
    while any(name.startswith(prefix) for name in names):
        prefix = "_" + prefix
    return prefix
