"""INT8 Q/DQ ONNX calibrated on images: one code path for TensorRT and for ONNX Runtime on CPU.

Both targets get explicit quantization (QuantizeLinear/DequantizeLinear pairs in the graph) with symmetric
per-channel INT8 weights, calibrated by min/max over images preprocessed exactly as the runtime does. Only
``Conv``, ``MatMul`` with constant weights and ``Gemm`` are quantized; the FP32 islands of
``precision.fp32_islands`` (the discrete sampling operator's index arithmetic, box refinement, query selection
and post-processing) are excluded, since INT8 there would move pixel indices and boxes.

The targets differ only where their kernels do (see ``INT8_TARGETS``):

- ``tensorrt``: TensorRT's ONNX parser accepts only zero-point-0 INT8 Q/DQ and no INT32 DequantizeLinear, so
  activations are symmetric INT8 and biases stay float. The pattern follows NVIDIA's guidance for explicit
  quantization (TensorRT fuses Q/DQ itself): Q/DQ on the weights (float weights behind their own
  QuantizeLinear), a dedicated pair for every consumer, and no Q/DQ on the outputs of Conv/MatMul/Gemm, which
  ONNX Runtime's quantizer adds by default and its own comments call not recommended for TensorRT.
- ``onnxruntime``: ORT's CPU kernels run QDQ best as U8S8 (asymmetric uint8 activations, int8 weights), the
  setting ``quantize_static`` documents for x86-64 with VNNI; biases are quantized to INT32 so ORT fuses them
  into its QLinearConv/QGemm kernels, and outputs are quantized so that consecutive integer kernels chain.

Layer groups (``int8_groups``) can stay in float (``keep_float``); the calibration method is min/max by
default, entropy or percentile on request.

In a strongly typed TensorRT build every tensor keeps its ONNX type, so the layers left unquantized run in
FP32, as they do in ONNX Runtime.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from ..atomic import atomic_path
from ..errors import ExportError
from ..metadata import ModelMetadata, Preprocessing
from ..runtime.preprocess import preprocess
from ..runtime.sources import read_image_folder
from .int8_groups import check_groups, nodes_in_groups
from .precision import check_typed, ensure_node_names, fp32_islands, load_model_proto, set_precision

__all__ = [
    "Int8Target",
    "CALIBRATION_METHODS",
    "INT8_TARGETS",
    "QUANTIZED_OPS",
    "ImageCalibrationReader",
    "load_calibration_images",
    "quantize_int8",
]

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


@dataclass(frozen=True)
class Int8Target:
    """The INT8 settings one runtime runs best, all within symmetric per-channel INT8 weights.

    Attributes:
        name: ``"tensorrt"`` or ``"onnxruntime"``.
        activations: ``"int8"`` or ``"uint8"``.
        symmetric_activations: zero point 0 for activations.
        quantize_bias: store biases as INT32 behind a DequantizeLinear.
        quantize_outputs: quantize the outputs of Conv/MatMul/Gemm (else only their inputs and weights).
        dedicated_pairs: one Q/DQ pair per consumer instead of one shared pair per tensor.
        weight_pairs: keep weights float behind a QuantizeLinear/DequantizeLinear pair (else INT8 initializers).
    """

    name: str
    activations: str
    symmetric_activations: bool
    quantize_bias: bool
    quantize_outputs: bool
    dedicated_pairs: bool
    weight_pairs: bool


INT8_TARGETS: dict[str, Int8Target] = {
    "tensorrt": Int8Target(
        "tensorrt",
        activations="int8",
        symmetric_activations=True,
        quantize_bias=False,
        quantize_outputs=False,
        dedicated_pairs=True,
        weight_pairs=True,
    ),
    "onnxruntime": Int8Target(
        "onnxruntime",
        activations="uint8",
        symmetric_activations=False,
        quantize_bias=True,
        quantize_outputs=True,
        dedicated_pairs=False,
        weight_pairs=False,
    ),
}
CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


def load_calibration_images(
    source: Sequence[np.ndarray] | str | os.PathLike[str], *, limit: int | None = None
) -> list[np.ndarray]:
    """Calibration images as BGR uint8 ``[H, W, 3]`` arrays, from a list or a folder (sorted by name).

    Raises:
        FileNotFoundError: ``source`` is a path that is not a folder.
        ValueError: no images (or none readable), or an array that is not ``[H, W, 3]`` uint8.
    """
    if isinstance(source, (str, os.PathLike)):
        if not Path(source).is_dir():
            raise FileNotFoundError(f"calibration folder not found: {source}")
        return read_image_folder(source, limit=limit, what="calibration images")
    images = list(source)[:limit]
    if not images:
        raise ValueError("no calibration images given")
    for index, img in enumerate(images):
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"calibration image {index} must be a BGR uint8 [H, W, 3] array, got {_describe(img)}")
    return images


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds ``images`` and ``orig_target_sizes`` batches of calibration images to ONNX Runtime's calibrator.

    Args:
        images_bgr: BGR uint8 images.
        input_size: ``(height, width)`` of the model input.
        batch: images per feed (the model's fixed batch, or 1 for a dynamic batch); the last batch is filled
            by repeating images from the start.
        preprocessing: the model's preprocessing (None: the official one).
    """

    def __init__(
        self,
        images_bgr: Sequence[np.ndarray],
        *,
        input_size: tuple[int, int],
        batch: int = 1,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        if batch < 1:
            raise ValueError(f"calibration batch must be positive, got {batch}")
        self.images = list(images_bgr)
        self.input_size = input_size
        self.batch = batch
        self.preprocessing = preprocessing or Preprocessing()
        self._next = 0

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.images):
            return None
        chosen = [self.images[(self._next + i) % len(self.images)] for i in range(self.batch)]
        self._next += self.batch
        pixels, sizes = preprocess(chosen, input_size=self.input_size, preprocessing=self.preprocessing)
        return {"images": pixels, "orig_target_sizes": sizes}

    def rewind(self) -> None:
        """Start again from the first image."""
        self._next = 0


def _input_geometry(model: onnx.ModelProto) -> tuple[tuple[int, int], int]:
    """``(height, width)`` and the calibration batch (fixed batch, or 1) from the ``images`` input."""
    inputs = {info.name: info for info in model.graph.input}
    if "images" not in inputs or "orig_target_sizes" not in inputs:
        raise ValueError(f"expected inputs 'images' and 'orig_target_sizes', the ONNX has {', '.join(inputs)}")
    dims = inputs["images"].type.tensor_type.shape.dim
    if len(dims) != 4 or not all(d.HasField("dim_value") for d in dims[2:]):
        raise ValueError("the 'images' input must be [N, 3, H, W] with a fixed H and W")
    batch = dims[0].dim_value if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else 1
    return (dims[2].dim_value, dims[3].dim_value), batch


def _preprocessing(model: onnx.ModelProto) -> Preprocessing:
    """The preprocessing recorded in the metadata, or the official one (RGB in [0, 1]) for a bare graph."""
    props = {p.key: p.value for p in model.metadata_props}
    return ModelMetadata.from_props(props).preprocessing if "preset" in props else Preprocessing()


def _unshare_initializers(model: onnx.ModelProto, nodes: set[str]) -> None:
    """Give ``nodes`` their own copy of every initializer they share with other nodes.

    The simplifier merges equal constants (zero biases, say) into one initializer; once the quantizer replaces it
    for a quantized consumer with a DequantizeLinear of INT32 or INT8 values, an excluded node sharing it would
    read the quantized version too.
    """
    initializers = {init.name: init for init in model.graph.initializer}
    users: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            if name in initializers:
                users.setdefault(name, set()).add(node.name)
    for node in model.graph.node:
        if node.name not in nodes:
            continue
        for index, name in enumerate(node.input):
            if name in initializers and users[name] - nodes:
                copy = onnx.TensorProto()
                copy.CopyFrom(initializers[name])
                copy.name = f"{name}__float_for_{node.name}"
                model.graph.initializer.append(copy)
                node.input[index] = copy.name


def _restore_float_inputs(model: onnx.ModelProto, nodes: set[str]) -> None:
    """Point ``nodes`` back at the float tensors that ONNX Runtime's quantizer gave them through a Q/DQ pair.

    ``quantize_static`` inserts one QuantizeLinear/DequantizeLinear pair per quantized activation and rewires
    *every* consumer to it, excluded nodes included: the sampling-offset projection, excluded because it feeds
    the pixel indices, would read INT8-rounded queries through the pair of the attention-weight projection.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.name not in nodes:
            continue
        for index, name in enumerate(node.input):
            dequant = producer.get(name)
            if dequant is None or dequant.op_type != "DequantizeLinear":
                continue
            quant = producer.get(dequant.input[0])
            if quant is not None and quant.op_type == "QuantizeLinear":
                node.input[index] = quant.input[0]
    while True:  # drop the pairs nobody reads any more, DequantizeLinear first, then its QuantizeLinear
        used = {name for node in model.graph.node for name in node.input} | {out.name for out in model.graph.output}
        dead = [
            node
            for node in model.graph.node
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.output[0] not in used
        ]
        if not dead:
            return
        for node in dead:
            model.graph.node.remove(node)


def _extra_options(settings: Int8Target) -> dict[str, object]:
    """``quantize_static``'s extra options for a target (names as ONNX Runtime documents them)."""
    options: dict[str, object] = {
        "ActivationSymmetric": settings.symmetric_activations,
        "WeightSymmetric": True,
        "MatMulConstBOnly": True,
        "QuantizeBias": settings.quantize_bias,
        "DedicatedQDQPair": settings.dedicated_pairs,
        "AddQDQPairToWeight": settings.weight_pairs,
    }
    if not settings.quantize_outputs:
        options["OpTypesToExcludeOutputQuantization"] = list(QUANTIZED_OPS)
    return options


class _PreprocessingAdvice(logging.Filter):
    """Drops ONNX Runtime's advice to run its quantization pre-processing (shape inference and graph
    optimisation), which would rename the nodes that the FP32 islands and layer groups are found by."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
    root = logging.getLogger()
    advice = _PreprocessingAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def _quantize(
    model: onnx.ModelProto,
    reader: CalibrationDataReader,
    settings: Int8Target,
    *,
    excluded: list[str],
    calibration: str,
) -> onnx.ModelProto:
    """ONNX Runtime's static QDQ quantization of ``model`` with a target's settings (in a scratch folder)."""
    quant_type = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    with tempfile.TemporaryDirectory(prefix="rtdetr-int8-") as work, _without_preprocessing_advice():
        quantized_path = Path(work) / "int8.onnx"
        try:
            quantize_static(
                model,
                quantized_path,
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS),
                per_channel=True,
                reduce_range=False,
                activation_type=quant_type[settings.activations],
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                calibrate_method=CALIBRATION_METHODS[calibration],
                extra_options=_extra_options(settings),
            )
        except (ValueError, RuntimeError, onnx.checker.ValidationError) as exc:
            raise ExportError(f"INT8 quantization ({settings.name}) failed: {str(exc).splitlines()[0]}") from None
        return onnx.load(str(quantized_path))


def quantize_int8(
    onnx_in: str | os.PathLike[str] | onnx.ModelProto,
    onnx_out: str | os.PathLike[str],
    calibration_images: Sequence[np.ndarray] | str | os.PathLike[str],
    *,
    target: str = "tensorrt",
    max_images: int | None = None,
    keep_float: Sequence[str] = (),
    calibration: str = "minmax",
) -> Path:
    """Write a Q/DQ INT8 copy of an FP32 RT-DETRv2 ONNX, calibrated on images.

    Inputs and outputs keep their names and types. The metadata's ``precision`` becomes ``"int8"`` and a
    ``quantization`` entry records the target and settings. The file is written atomically.

    Args:
        onnx_in: FP32 ONNX path or model (inputs ``images``, ``orig_target_sizes``).
        onnx_out: where to write the INT8 ONNX.
        calibration_images: BGR uint8 images, or a folder of image files.
        target: ``"tensorrt"`` or ``"onnxruntime"`` (see ``INT8_TARGETS``).
        max_images: use at most this many calibration images.
        keep_float: layer groups (``int8_groups.INT8_GROUPS``) to leave in float.
        calibration: ``"minmax"``, ``"entropy"`` or ``"percentile"``.

    Returns:
        ``onnx_out`` as a ``Path``.

    Raises:
        FileNotFoundError: ``onnx_in`` or the calibration folder does not exist.
        ValueError: unknown target, group or calibration method, no calibration images, a model without the
            deploy inputs, or one that is not FP32.
        ExportError: quantization failed or produced an invalid graph.
    """
    if target not in INT8_TARGETS:
        raise ValueError(f"unknown INT8 target {target!r}; choose from {', '.join(INT8_TARGETS)}")
    if calibration not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {calibration!r}; choose from {', '.join(CALIBRATION_METHODS)}")
    keep_float = check_groups(keep_float)
    settings = INT8_TARGETS[target]
    model = load_model_proto(onnx_in)
    input_size, batch = _input_geometry(model)
    if any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node) or any(
        init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer
    ):
        raise ValueError("quantize_int8 expects the FP32 ONNX; this one is already FP16 or quantized")
    images = load_calibration_images(calibration_images, limit=max_images)
    ensure_node_names(model.graph)
    excluded = sorted(fp32_islands(model) | nodes_in_groups(model, keep_float))
    _unshare_initializers(model, set(excluded))
    reader = ImageCalibrationReader(images, input_size=input_size, batch=batch, preprocessing=_preprocessing(model))
    quantized = _quantize(model, reader, settings, excluded=excluded, calibration=calibration)
    _restore_float_inputs(quantized, set(excluded))
    set_precision(quantized, "int8")
    record = {
        **asdict(settings),
        "weights": "int8 symmetric per-channel",
        "calibration": calibration,
        "calibration_images": len(images),
        "keep_float": list(keep_float),
    }
    quantized.metadata_props.add(key="quantization", value=json.dumps(record))
    check_typed(quantized, "the INT8 graph")
    out = Path(onnx_out)
    with atomic_path(out) as tmp:
        onnx.save(quantized, str(tmp))
    return out
