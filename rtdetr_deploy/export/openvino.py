"""OpenVINO IRs of the verified ONNX: FP32, BF16 and NNCF INT8, each verified like the ONNX precision variants.

What is converted (``openvino.convert_model``) is the verified FP32 *probe*, so every IR can be checked with the
probe's extra outputs (``onnx_export.Probe``). The published IR is that probe IR with the extra ``Result`` nodes
removed (``strip_results``; OpenVINO drops what fed only them), as ``strip_probe`` does for the ONNX, and its
deploy outputs must equal its probe's. Each IR is one ``.xml`` plus its ``.bin`` (weights kept FP32:
``save_model`` would otherwise round them to FP16), with the metadata of the ONNX in ``rt_info`` (see
``runtime.openvino_backend``), whose ``precision`` decides the inference precision the runtime asks for:

- ``fp32``: the f32 hint, always set: OpenVINO's default on a CPU with BF16 is to run in BF16.
- ``bf16``: the same graph, run with the bf16 hint (OpenVINO's CPU plugin picks which nodes compute in BF16).
- ``int8``: NNCF post-training quantization on calibration images preprocessed exactly as the runtime does, with
  the FP32 islands (``precision.fp32_islands``: the discrete sampling operator's index arithmetic, box
  refinement, query selection, post-processing) as NNCF's ignored scope; the rest runs with the f32 hint.

Each IR is judged against the FP32 probe (run in ONNX Runtime) by ``variants.check_variant`` with the OpenVINO
runner and ``VARIANT_RULES[precision]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..artifacts import OPENVINO_PRECISIONS, openvino_path, openvino_weights_path
from ..contract import OUTPUT_NAMES
from ..errors import ExportError
from ..metadata import ModelMetadata
from ..runtime.onnxruntime_backend import read_onnx_metadata
from ..runtime.openvino_backend import INFERENCE_PRECISION, RT_INFO_SECTION, OpenVinoBackend, read_openvino_metadata
from .config import ExportConfig
from .gates import VARIANT_RULES
from .graphs import run_in_chunks
from .onnx_export import Probe
from .precision import fp32_islands
from .quantize import ImageCalibrationReader, load_calibration_images
from .report import VariantReport
from .variants import GraphRunner, check_variant

__all__ = ["quantize_nncf", "run_ir", "strip_results", "write_ir"]

# The operators NNCF quantizes; an FP32 island of these types must be found in the IR to be left alone.
_QUANTIZABLE = ("MatMul", "Gemm", "Conv")
# The ONNX frontend names a Conv/Gemm with bias "<name>/WithoutBiases" and gives the bias Add the node's name.
_BIAS_SUFFIX = "/WithoutBiases"
MAX_CALIBRATION_IMAGES = 300


def run_ir(
    path: str | os.PathLike[str],
    pixels: np.ndarray,
    sizes_wh: np.ndarray,
    *,
    batch: tuple[int, int, int],
    outputs: Sequence[str] | None = None,
    inference_precision: str | None = None,
) -> dict[str, np.ndarray]:
    """``graphs.run_graph`` for an IR: run it through the runtime's ``OpenVinoBackend`` on the CPU, in chunks of
    the largest batch it accepts (a fixed batch is padded), with its metadata's inference precision unless
    ``inference_precision`` is given.

    Returns:
        Each output (every output when ``outputs`` is None), concatenated over the chunks, ``[N, ...]``.
    """
    with OpenVinoBackend.from_path(path, inference_precision=inference_precision) as backend:
        names = list(outputs) if outputs is not None else [spec.name for spec in backend.output_specs]
        return run_in_chunks(backend.infer, names, pixels, sizes_wh, batch=batch)


def _runner(precision: str) -> GraphRunner:
    exact = partial(run_ir, inference_precision="f32") if precision == "bf16" else None
    return GraphRunner(read_metadata=read_openvino_metadata, run=run_ir, run_exact=exact)


def strip_results(model: Any, *, outputs: Sequence[str] = OUTPUT_NAMES) -> Any:
    """A copy of the ``openvino.Model`` ``model`` whose only outputs are ``outputs``, in that order; the nodes
    that fed nothing else go with the removed results."""
    stripped = model.clone()
    kept = []
    for result in list(stripped.get_results()):
        names = result.output(0).get_names() | result.input_value(0).get_names()
        if names & set(outputs):
            kept.append(next(iter(names & set(outputs))))
        else:
            stripped.remove_result(result)
    if kept != list(outputs):
        raise ExportError(f"the probe IR lacks the outputs {list(outputs)}: it has {kept}")
    stripped.validate_nodes_and_infer_types()
    return stripped


def _stamp(model: Any, metadata: ModelMetadata, record: dict[str, object]) -> None:
    """Write ``metadata`` and the conversion ``record`` into the model's ``rt_info``; the ONNX frontend's copy of
    the ONNX ``metadata_props`` (``framework``, precision fp32) goes, so that the IR states one precision."""
    rt_info = model.get_rt_info()
    if "framework" in rt_info.keys():
        del rt_info["framework"]
    for key, value in metadata.to_props().items():
        model.set_rt_info(value, [RT_INFO_SECTION, key])
    model.set_rt_info(json.dumps(record), [RT_INFO_SECTION, "openvino"])
    model.set_friendly_name(f"rtdetr-deploy {metadata.preset} {metadata.precision}")


def _save(model: Any, path: Path) -> Path:
    import openvino

    openvino.save_model(model, str(path), compress_to_fp16=False)
    return path


def _ignored_names(islands: set[str], onnx_types: dict[str, str], ir_names: set[str]) -> list[str]:
    """The IR's names of the FP32 islands; raises ``ExportError`` when a quantizable island is missing from it
    (NNCF would quantize it)."""
    found = {candidate for name in islands for candidate in (name, name + _BIAS_SUFFIX) if candidate in ir_names}
    missing = sorted(
        name for name in islands if onnx_types.get(name) in _QUANTIZABLE and not {name, name + _BIAS_SUFFIX} & found
    )
    if missing:
        raise ExportError(
            f"{len(missing)} FP32-island nodes are not in OpenVINO's graph by name (e.g. {missing[0]!r}): NNCF "
            "cannot be told to leave them unquantized"
        )
    return sorted(found)


def _quantized_islands(model: Any, ignored: set[str]) -> list[str]:
    """Names of ignored MatMul/Convolution nodes that nevertheless read a FakeQuantize output (through Converts)."""
    fed = []
    for op in model.get_ops():
        if op.get_friendly_name() not in ignored or op.get_type_name() not in ("MatMul", "Convolution"):
            continue
        for value in op.input_values():
            node = value.get_node()
            while node.get_type_name() == "Convert":
                node = node.input_value(0).get_node()
            if node.get_type_name() == "FakeQuantize":
                fed.append(op.get_friendly_name())
    return fed


class _Feeds:
    """The calibration reader's feeds as the re-iterable, sized data source ``nncf.Dataset`` wants (each pass
    preprocesses the images again, so they are never all in memory as tensors)."""

    def __init__(self, reader: ImageCalibrationReader) -> None:
        self.reader = reader

    def __len__(self) -> int:
        return len(self.reader)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.reader.rewind()
        return iter(self.reader.get_next, None)


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF logs every ignored node at INFO and draws progress bars on stdout; keep its warnings only."""
    from nncf.common.logging.logger import nncf_logger, set_log_level

    level = nncf_logger.level
    set_log_level(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        set_log_level(level)


def quantize_nncf(
    model: Any,
    probe_onnx: Path,
    calibration_images: Sequence[np.ndarray] | str | os.PathLike[str],
    *,
    metadata: ModelMetadata,
) -> tuple[Any, dict[str, object]]:
    """NNCF INT8 post-training quantization of the probe IR ``model`` (converted from ``probe_onnx``).

    Calibration feeds are made by the runtime's preprocessing (``metadata.preprocessing``, at
    ``metadata.input_size``, in the model's fixed batch or 1); the FP32 islands of the probe ONNX are NNCF's
    ignored scope, and none of their MatMuls may read a quantized input afterwards.

    Returns:
        The quantized ``openvino.Model`` and a JSON-ready record of the settings.

    Raises:
        FileNotFoundError / ValueError: no calibration folder or images.
        ExportError: islands missing from the IR, NNCF failed, or an island was quantized after all.
    """
    import nncf

    images = load_calibration_images(calibration_images, limit=MAX_CALIBRATION_IMAGES)
    probe_model = onnx.load(str(probe_onnx))
    ignored = _ignored_names(
        fp32_islands(probe_model),
        {node.name: node.op_type for node in probe_model.graph.node},
        {op.get_friendly_name() for op in model.get_ops()},
    )
    low, _, high = metadata.batch
    reader = ImageCalibrationReader(
        images, input_size=metadata.input_size, batch=low if low == high else 1, preprocessing=metadata.preprocessing
    )
    settings = {"preset": "performance", "target_device": "CPU", "subset_size": len(reader)}
    try:
        with _quiet_nncf():
            quantized = nncf.quantize(
                model,
                nncf.Dataset(_Feeds(reader)),
                preset=nncf.QuantizationPreset.PERFORMANCE,
                target_device=nncf.TargetDevice.CPU,
                subset_size=len(reader),
                ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
            )
    except Exception as exc:  # NNCF's own errors derive from Exception only; each is a failed export
        raise ExportError(f"NNCF INT8 quantization failed: {str(exc).strip().splitlines()[-1]}") from None
    fed = _quantized_islands(quantized, set(ignored))
    if fed:
        raise ExportError(f"NNCF quantized the inputs of {len(fed)} FP32-island nodes, e.g. {fed[0]!r}")
    record = {
        "nncf": nncf.__version__,
        **settings,
        "weights": "int8 symmetric per-channel",
        "activations": "8-bit symmetric per-tensor",
        "calibration_images": len(images),
        "ignored_scope": f"{len(ignored)} FP32-island nodes (precision.fp32_islands)",
    }
    return quantized, record


def write_ir(
    config: ExportConfig, probe: Probe, staging: Path, stem: str, images: list[np.ndarray], *, precision: str
) -> tuple[Path, VariantReport]:
    """Convert, stamp, (quantize,) strip and verify the IR of ``precision``; ``(published .xml, report)``, the
    report's ``target`` holding the weights file and the OpenVINO settings.

    The probe IR goes to ``staging/probes``, the published ``.xml`` and ``.bin`` to ``staging``
    (``artifacts.openvino_path``).

    Raises:
        ValueError: unknown precision; FileNotFoundError / ValueError: bad calibration images (int8).
        ExportError: conversion, quantization or the CPU cannot do it (bf16 on a CPU without BF16).
    """
    import openvino

    if precision not in OPENVINO_PRECISIONS:
        raise ValueError(f"unknown OpenVINO precision {precision!r}; choose from {', '.join(OPENVINO_PRECISIONS)}")
    if precision == "bf16" and "BF16" not in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise ExportError("this CPU has no BF16: OpenVINO cannot run, so cannot verify, a BF16 IR here")
    try:
        model = openvino.convert_model(str(probe.path))
    except Exception as exc:  # OpenVINO's frontends raise assorted types; each is a failed export
        raise ExportError(f"openvino.convert_model failed on the probe: {str(exc).strip().splitlines()[-1]}") from None
    metadata = dataclasses.replace(read_onnx_metadata(probe.path), precision=precision)
    record: dict[str, object] = {
        "openvino": openvino.__version__.split("-")[0],
        "inference_precision_hint": INFERENCE_PRECISION[precision],
        "weights_stored_as": "f32",
    }
    if precision == "int8":
        if config.calib is None:
            raise ValueError("OpenVINO INT8 needs calibration images: pass --calib DIR")
        model, record["quantization"] = quantize_nncf(model, probe.path, config.calib, metadata=metadata)
    _stamp(model, metadata, record)
    probe_ir = _save(model, openvino_path(staging / "probes", stem, precision))
    published = _save(strip_results(model), openvino_path(staging, stem, precision))
    report = check_variant(
        probe,
        probe_ir,
        published,
        images,
        precision=precision,
        rules=VARIANT_RULES[precision],
        runner=_runner(precision),
    )
    target = {"weights": openvino_weights_path(published).name, **record}
    return published, dataclasses.replace(report, target=target)
