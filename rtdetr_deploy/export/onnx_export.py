"""Trace an RT-DETRv2 into ONNX with the official deploy I/O, check it, simplify it, stamp its metadata.

What is traced is the *probe* (``ProbedDeployModel``): the deploy graph of ``models.DeployModel`` (``images``,
``orig_target_sizes`` in; ``labels``, ``boxes``, ``scores`` out) with extra outputs for the raw decoder outputs
(``pred_logits``, ``pred_boxes``) and for the inputs and outcomes of every decision point (``decision.<i>.values``,
``decision.<i>.outcome``; see ``models.decisions``). Verification runs the probe; the file that is published is the
probe with those outputs removed (``strip_probe``), so what was verified is exactly what ships, node for node.
"""

from __future__ import annotations

import collections
import copy
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from ..atomic import atomic_path
from ..contract import INPUT_NAMES, OUTPUT_NAMES, RAW_OUTPUT_NAMES
from ..errors import ExportError
from ..metadata import ModelMetadata
from ..models.attention import set_explicit_attention
from ..models.decisions import DecisionLog
from ..models.postprocess import DeployModel, PostProcessor
from ..models.rtdetr import RTDETR
from .portable import float_conditions

__all__ = [
    "Probe",
    "ProbedDeployModel",
    "check_onnx",
    "export_probe",
    "op_census",
    "strip_probe",
    "trace_graph",
]


@dataclass(frozen=True)
class Probe:
    """A traced probe graph and what its extra outputs hold.

    Attributes:
        path: the probe ONNX.
        decisions: ``(kind, where)`` of each decision point, in the order of its ``decision.<i>`` outputs.
    """

    path: Path
    decisions: tuple[tuple[str, str], ...]

    @property
    def decision_outputs(self) -> list[str]:
        return [f"decision.{i}.{part}" for i in range(len(self.decisions)) for part in ("values", "outcome")]


class ProbedDeployModel(DeployModel):
    """The deployed model (``DeployModel``: the detector and its post-processing, the modules the published graph
    keeps) traced with what verification reads besides: the raw outputs and every decision.

    ``forward(images, orig_target_sizes)`` returns ``labels, boxes, scores`` (``DeployModel``'s outputs),
    ``pred_logits [B, Q, C]``, ``pred_boxes [B, Q, 4]`` and, for each decision point, its values and outcome
    flattened to ``[B, -1]``. ``strip_probe`` removes all but the first three.
    """

    def forward(self, images: torch.Tensor, orig_target_sizes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with DecisionLog() as log:
            raw = self.model(images)
        labels, boxes, scores = self.postprocessor(raw, orig_target_sizes)
        batch = images.shape[0]
        decided = [t.reshape(batch, -1) for d in log.decisions for t in (d.values, d.outcome)]
        return (labels, boxes, scores, raw["pred_logits"], raw["pred_boxes"], *decided)


def _trace(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    *,
    input_names: list[str],
    output_names: list[str],
    dynamic: bool,
    opset: int,
) -> None:
    dynamic_axes = {name: {0: "N"} for name in input_names + output_names} if dynamic else None
    with warnings.catch_warnings():
        # Tracing warns about every Python int taken from a shape; the shapes it bakes in are the spatial
        # ones, which a fixed input size makes constant on purpose.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            opset_version=opset,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            # The TorchScript exporter keeps the batch symbolic; the dynamo exporter specialises it to the
            # example batch for this model.
            dynamo=False,
        )


def op_census(model: onnx.ModelProto) -> dict[str, int]:
    """Count of each operator type in the main graph, most frequent first."""
    return dict(collections.Counter(node.op_type for node in model.graph.node).most_common())


def check_onnx(model: onnx.ModelProto, *, sampling: str) -> onnx.ModelProto:
    """Run the ONNX checker and shape inference; a discrete-sampling graph must hold no GridSample."""
    try:
        onnx.checker.check_model(model, full_check=False)
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"exported graph fails the ONNX checker: {str(exc).splitlines()[0]}") from None
    if sampling == "discrete" and "GridSample" in op_census(model):
        raise ExportError("discrete-sampling export still contains GridSample nodes")
    return inferred


def _simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    try:
        return onnxslim.slim(model)
    except Exception as exc:  # onnxslim raises assorted types; any failure is an export failure
        raise ExportError(f"onnxslim failed to simplify the graph: {exc}") from None


def trace_graph(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    sampling: str,
    opset: int = 17,
) -> Path:
    """Trace a graph other than the probe (the split graphs of ``export.split_graphs``) as the probe is traced:
    fixed batch, checked, simplified with onnxslim, BOOL constants as floats, checked again; no metadata."""
    with tempfile.TemporaryDirectory() as tmp:
        traced_path = Path(tmp) / "traced.onnx"
        _trace(
            module,
            args,
            traced_path,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic=False,
            opset=opset,
        )
        traced = onnx.load(str(traced_path))
    check_onnx(traced, sampling=sampling)
    final = float_conditions(_simplify(traced))
    check_onnx(final, sampling=sampling)
    with atomic_path(path) as tmp_path:
        onnx.save(final, str(tmp_path))
    return path


def _set_metadata(model: onnx.ModelProto, metadata: ModelMetadata) -> None:
    del model.metadata_props[:]
    for key, value in metadata.to_props().items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "rtdetr-deploy"
    model.producer_version = metadata.package_version
    model.doc_string = f"RT-DETRv2 {metadata.preset}, {metadata.sampling} sampling, {metadata.precision}"


def strip_probe(probe: onnx.ModelProto, *, outputs: Sequence[str] = OUTPUT_NAMES) -> onnx.ModelProto:
    """The deploy graph of a probe: only ``outputs`` (``labels``, ``boxes``, ``scores``) stay outputs; nodes and
    initializers that fed nothing but the removed outputs go (the others are the probe's own, untouched), and so
    do inputs that feed nothing. ``outputs=RAW_OUTPUT_NAMES`` gives the graph without post-processing (and without
    ``orig_target_sizes``)."""
    deploy = onnx.ModelProto()
    deploy.CopyFrom(probe)
    graph = deploy.graph
    kept = [out for out in graph.output if out.name in outputs]
    if [out.name for out in kept] != list(outputs):
        raise ExportError(f"the probe lacks the outputs {list(outputs)}: {[o.name for o in graph.output]}")
    del graph.output[:]
    graph.output.extend(kept)
    while True:
        used = {name for node in graph.node for name in node.input} | set(outputs)
        dead = [node for node in graph.node if not any(name in used for name in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    # A raw-output graph does not scale boxes: its orig_target_sizes input goes too (engines reject unused inputs).
    inputs = [value for value in graph.input if value.name in used or value.name in outputs]
    del graph.input[:]
    graph.input.extend(inputs)
    initializers = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    kept_info = [info for info in graph.value_info if info.name in used]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
    return deploy


def _decision_points(model: RTDETR, input_size: tuple[int, int]) -> tuple[tuple[str, str], ...]:
    """``(kind, where)`` of every decision the model makes on one image, in order (a dry run)."""
    device = next(model.parameters()).device
    with torch.no_grad(), DecisionLog() as log:
        model(torch.rand(1, 3, *input_size, device=device))
    return tuple((d.kind, d.where) for d in log.decisions)


def export_probe(
    model: RTDETR,
    path: str | Path,
    *,
    metadata: ModelMetadata,
    simplify: bool = True,
    keep_unsimplified: Path | None = None,
) -> Probe:
    """Trace the probe of ``model`` (see the module docstring) to ``path``, checked, simplified, with metadata.

    The graph runs at ``metadata.input_size`` with the batch range ``metadata.batch`` and returns the
    ``metadata.topk`` best detections. The model is deep-copied and reparameterised; the caller's model is left as
    it was. With ``keep_unsimplified``, the deploy graph as traced (before onnxslim) is also written there.
    """
    path = Path(path)
    if model.sampling != metadata.sampling:
        raise ExportError(f"model samples with {model.sampling!r} but metadata says {metadata.sampling!r}")
    # Attention is traced batch-first (models.attention); the caller's model keeps PyTorch's own, so that
    # verification compares the graph with a reference computed the other way.
    deployable = set_explicit_attention(copy.deepcopy(model).deploy(), True)
    decisions = _decision_points(deployable, metadata.input_size)
    probe_module = ProbedDeployModel(deployable, PostProcessor(topk=metadata.topk)).eval()
    output_names = [*OUTPUT_NAMES, *RAW_OUTPUT_NAMES, *Probe(path, decisions).decision_outputs]
    low, opt, high = metadata.batch
    dynamic = low != high
    batch = max(opt, 2) if dynamic else opt
    images = torch.rand(batch, 3, *metadata.input_size, device=next(model.parameters()).device)
    sizes_wh = torch.tensor([metadata.input_size[::-1]] * batch, dtype=torch.int64, device=images.device)
    with tempfile.TemporaryDirectory() as tmp:
        traced_path = Path(tmp) / "traced.onnx"
        _trace(
            probe_module,
            (images, sizes_wh),
            traced_path,
            input_names=list(INPUT_NAMES),
            output_names=output_names,
            dynamic=dynamic,
            opset=metadata.opset,
        )
        traced = onnx.load(str(traced_path))
    check_onnx(traced, sampling=metadata.sampling)
    final = float_conditions(_simplify(traced) if simplify else traced)
    check_onnx(final, sampling=metadata.sampling)
    _set_metadata(final, metadata)
    if keep_unsimplified is not None:
        _set_metadata(traced, metadata)
        with atomic_path(keep_unsimplified) as tmp_path:
            onnx.save(strip_probe(traced), str(tmp_path))
    with atomic_path(path) as tmp_path:
        onnx.save(final, str(tmp_path))
    return Probe(path, decisions)
