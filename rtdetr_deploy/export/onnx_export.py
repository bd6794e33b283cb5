"""Trace an RT-DETRv2 into ONNX with the official deploy I/O, check it, simplify it, stamp its metadata."""

from __future__ import annotations

import collections
import copy
import tempfile
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import ExportError
from ..metadata import ModelMetadata
from ..models.postprocess import DeployModel, PostProcessor
from ..models.rtdetr import RTDETR

__all__ = ["export_onnx", "export_raw_onnx", "op_census", "check_onnx", "INPUT_NAMES", "OUTPUT_NAMES"]

INPUT_NAMES = ["images", "orig_target_sizes"]
OUTPUT_NAMES = ["labels", "boxes", "scores"]
RAW_OUTPUT_NAMES = ["pred_logits", "pred_boxes"]


class _RawOutputs(nn.Module):
    """The detector with its dict output flattened to ``(pred_logits, pred_boxes)`` for tracing."""

    def __init__(self, model: RTDETR) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(images)
        return out["pred_logits"], out["pred_boxes"]


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


def _example_inputs(model: RTDETR, input_size: tuple[int, int], batch: int) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.rand(batch, 3, *input_size, device=device)


def export_raw_onnx(model: RTDETR, path: str | Path, *, input_size: tuple[int, int], opset: int = 17) -> Path:
    """Export the detector without post-processing (outputs ``pred_logits``, ``pred_boxes``), dynamic batch."""
    images = _example_inputs(model, input_size, 2)
    _trace(
        _RawOutputs(model).eval(),
        (images,),
        Path(path),
        input_names=["images"],
        output_names=RAW_OUTPUT_NAMES,
        dynamic=True,
        opset=opset,
    )
    return Path(path)


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


def _set_metadata(model: onnx.ModelProto, metadata: ModelMetadata) -> None:
    del model.metadata_props[:]
    for key, value in metadata.to_props().items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "rtdetr-deploy"
    model.producer_version = metadata.package_version
    model.doc_string = f"RT-DETRv2 {metadata.preset}, {metadata.sampling} sampling, {metadata.precision}"


def export_onnx(
    model: RTDETR,
    path: str | Path,
    *,
    metadata: ModelMetadata,
    simplify: bool = True,
    keep_unsimplified: bool = False,
) -> tuple[Path, dict[str, int]]:
    """Export ``model`` with in-graph post-processing to ``path`` (written atomically).

    The graph runs at ``metadata.input_size`` with the batch range ``metadata.batch`` and returns the
    ``metadata.topk`` best detections. The model is deep-copied and reparameterised; the caller's model is
    left as it was.

    Returns:
        The ONNX path and its operator census.
    """
    path = Path(path)
    if model.sampling != metadata.sampling:
        raise ExportError(f"model samples with {model.sampling!r} but metadata says {metadata.sampling!r}")
    deployable = DeployModel(copy.deepcopy(model).deploy(), PostProcessor(topk=metadata.topk)).eval()
    low, opt, high = metadata.batch
    dynamic = low != high
    batch = max(opt, 2) if dynamic else opt
    images = _example_inputs(model, metadata.input_size, batch)
    sizes = torch.tensor([metadata.input_size[::-1]] * batch, dtype=torch.int64, device=images.device)
    with tempfile.TemporaryDirectory() as tmp:
        traced_path = Path(tmp) / "traced.onnx"
        _trace(
            deployable,
            (images, sizes),
            traced_path,
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic=dynamic,
            opset=metadata.opset,
        )
        traced = onnx.load(str(traced_path))
    check_onnx(traced, sampling=metadata.sampling)
    final = _simplify(traced) if simplify else traced
    check_onnx(final, sampling=metadata.sampling)
    _set_metadata(final, metadata)
    if simplify and keep_unsimplified:
        _set_metadata(traced, metadata)
        with atomic_path(path.with_name(path.stem + ".unsimplified.onnx")) as tmp_path:
            onnx.save(traced, str(tmp_path))
    with atomic_path(path) as tmp_path:
        onnx.save(final, str(tmp_path))
    return path, op_census(final)
