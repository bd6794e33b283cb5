"""ExportConfig: everything ``rtdetr-export`` does, validated before any work starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..artifacts import OPENVINO_PRECISIONS
from ..coco.names import ClassNames
from ..contract import DEFAULT_SAMPLING, check_batch_range, check_sampling
from ..metadata import GELU_FORMS, OUTPUT_KINDS
from .gates import DEFAULT_MAX_AP_DROP, FP32_AP_TOLERANCE
from .int8_groups import DEFAULT_KEEP_FLOAT, check_groups
from .target_config import TargetsConfig

__all__ = [
    "CALIBRATION_METHODS",
    "ExportConfig",
    "GELU_FORMS",
    "OUTPUT_KINDS",
    "OPENVINO_PRECISIONS",
    "TRT_PRECISIONS",
    "parse_batch_range",
    "parse_openvino",
]

TRT_PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class ExportConfig:
    """Options of one export.

    Attributes:
        weights: checkpoint to export (official release, bare state dict or our own).
        out_dir: folder for the ONNX, the verification report and the engine.
        preset: preset name; inferred from the weights when None.
        imgsz: ``(height, width)``; the checkpoint's input size when None.
        sampling: ``"discrete"`` (the default: no GridSample in the graph) or ``"bilinear"``.
        batch: ``(min, opt, max)`` batch sizes; a fixed batch when all three are equal.
        topk: detections per image in the graph's outputs.
        opset: ONNX opset (17 or newer keeps LayerNormalization as one op).
        simplify: run onnxslim on the exported graph.
        keep_unsimplified: also keep the graph as traced, beside the simplified one.
        verify_images: folder of images for verification; generated images when None.
        trt: TensorRT precision to build for (None: ONNX only).
        fp16: also write the FP16 ONNX (FP32 islands), as ``--trt fp16`` does, without building an engine.
        calib: folder of calibration images (required for int8).
        calib_images: calibrate on at most this many of them (the first, sorted by name).
        calib_method: ``"minmax"`` (default), ``"entropy"`` or ``"percentile"``.
        int8_keep_float: INT8 layer groups (``int8_groups.INT8_GROUPS``) kept in float.
        int8_sensitivity: measure, with ``eval_data``, what each layer group costs in INT8 (one group in float at
            a time) and record the table in the report.
        int8_cpu: also write an ONNX Runtime static-quantized INT8 model.
        openvino: OpenVINO IRs to write beside the ONNX (``fp32``, ``bf16``, ``int8``; int8 needs ``calib``).
        fuse_preprocess: also write ``<name>.fused.onnx`` beside each ONNX graph, taking uint8 BGR frames of any
            size and preprocessing them in the graph (``export.fused``), verified against the runtime's.
        workspace_gib: TensorRT builder workspace limit.
        timing_cache: TensorRT timing cache file, read if present and updated after the build.
        eval_data: labelled COCO-format data (a dataset folder or ``"synthetic"``): every written graph is
            evaluated on it, and FP16 and INT8 are accepted by their loss in AP against FP32.
        eval_split: the split of ``eval_data`` to evaluate on.
        max_fp16_drop: COCO AP the FP16 graph may lose against FP32 (with ``eval_data``).
        max_int8_drop: COCO AP an INT8 graph may lose against FP32 (with ``eval_data``).
        max_bf16_drop: COCO AP the OpenVINO BF16 IR may lose against FP32 (with ``eval_data``).
        strict_sampling: refuse the export when discrete sampling costs weights trained with bilinear sampling
            more than a small share of their accuracy (``export.swap``) instead of warning.
        names: class names and original category ids to record instead of the checkpoint's (``--names``); their
            count must be the model's.
        targets: third-party engines (MNN, LiteRT, RKNN, ncnn) to convert the verified ONNX (ncnn: the model) to
            (``export.targets``).
        gelu: how the graph computes the encoder's GELU (``metadata.GELU_FORMS``): ``"erf"`` (ONNX Erf, as
            trained), ``"poly"`` (Erf-free, verified against the Erf model) or ``"tanh"`` (the tanh approximation,
            verified against itself; its accuracy cost is the user's to measure, e.g. with ``eval_data``).
        outputs: ``"detections"`` (labels, boxes, scores; the official deploy outputs) or ``"raw"`` (the graph ends
            at ``pred_logits`` and ``pred_boxes``; the runtime does sigmoid and top-k on the host). FP32 ONNX only.
        decoder_layers: stop the decoder after this many layers and use that layer's head (``None``: all of them);
            checked against the model's layer count when it is loaded.
        queries: queries the query selection keeps (``None``: the trained number, which is also the upper bound).
    """

    weights: Path
    out_dir: Path
    preset: str | None = None
    imgsz: tuple[int, int] | None = None
    sampling: str = DEFAULT_SAMPLING
    batch: tuple[int, int, int] = (1, 1, 1)
    topk: int = 300
    opset: int = 17
    simplify: bool = True
    keep_unsimplified: bool = False
    verify_images: Path | None = None
    trt: str | None = None
    fp16: bool = False
    calib: Path | None = None
    calib_images: int = 100
    calib_method: str = "minmax"
    int8_keep_float: tuple[str, ...] = DEFAULT_KEEP_FLOAT
    int8_sensitivity: bool = False
    int8_cpu: bool = False
    openvino: tuple[str, ...] = ()
    fuse_preprocess: bool = False
    workspace_gib: float = 4.0
    timing_cache: Path | None = None
    eval_data: Path | None = None
    eval_split: str = "val"
    names: ClassNames | None = None
    max_fp16_drop: float = DEFAULT_MAX_AP_DROP["fp16"]
    max_int8_drop: float = DEFAULT_MAX_AP_DROP["int8"]
    max_bf16_drop: float = DEFAULT_MAX_AP_DROP["bf16"]
    targets: TargetsConfig = TargetsConfig()
    gelu: str = "erf"
    outputs: str = "detections"
    decoder_layers: int | None = None
    queries: int | None = None
    strict_sampling: bool = False

    def __post_init__(self) -> None:
        check_sampling(self.sampling)
        if self.gelu not in GELU_FORMS:
            raise ValueError(f"--gelu must be one of {', '.join(GELU_FORMS)}, got {self.gelu!r}")
        if self.outputs not in OUTPUT_KINDS:
            raise ValueError(f"--outputs must be one of {', '.join(OUTPUT_KINDS)}, got {self.outputs!r}")
        if self.outputs == "raw" and (self.trt or self.fp16 or self.int8_cpu or self.openvino or self.fuse_preprocess):
            raise ValueError(
                "--outputs raw writes the FP32 ONNX only: leave out --trt, --fp16, --int8-cpu, --openvino and "
                "--fuse-preprocess"
            )
        if self.outputs == "raw" and self.targets.any:
            raise ValueError("--mnn, --tflite, --rknn and --ncnn convert the detections graph: leave out --outputs raw")
        if self.targets.ncnn and self.sampling != "bilinear":
            raise ValueError(
                "--ncnn needs --sampling bilinear: ncnn has no GatherElements layer for the discrete sampling"
            )
        if self.imgsz is not None:
            if len(self.imgsz) != 2 or any(s <= 0 or s % 32 for s in self.imgsz):
                raise ValueError(f"--imgsz must be positive multiples of 32, got {self.imgsz}")
        check_batch_range(self.batch)
        if self.topk < 1:
            raise ValueError(f"--topk must be positive, got {self.topk}")
        for flag, value in (("--decoder-layers", self.decoder_layers), ("--queries", self.queries)):
            if value is not None and value < 1:
                raise ValueError(f"{flag} must be positive, got {value}")
        if self.opset < 17:
            raise ValueError(f"--opset must be 17 or newer (LayerNormalization), got {self.opset}")
        if self.trt is not None and self.trt not in TRT_PRECISIONS:
            raise ValueError(f"--trt must be one of {', '.join(TRT_PRECISIONS)}, got {self.trt!r}")
        if self.calib_images < 1:
            raise ValueError(f"--calib-images must be positive, got {self.calib_images}")
        if self.calib_method not in CALIBRATION_METHODS:
            raise ValueError(
                f"--calib-method must be one of {', '.join(CALIBRATION_METHODS)}, got {self.calib_method!r}"
            )
        object.__setattr__(self, "int8_keep_float", check_groups(self.int8_keep_float))
        if self.int8_sensitivity and (self.eval_data is None or self.calib is None):
            raise ValueError(
                "--int8-sensitivity needs labelled data and calibration images: pass --eval-data and --calib"
            )
        for precision in self.openvino:
            if precision not in OPENVINO_PRECISIONS:
                raise ValueError(f"--openvino {precision!r}: choose from {', '.join(OPENVINO_PRECISIONS)}")
        if len(set(self.openvino)) != len(self.openvino):
            raise ValueError(f"--openvino names a precision twice: {','.join(self.openvino)}")
        if (self.trt == "int8" or self.int8_cpu or "int8" in self.openvino) and self.calib is None:
            raise ValueError("INT8 needs calibration images: pass --calib DIR")
        if self.workspace_gib <= 0:
            raise ValueError(f"--workspace must be positive, got {self.workspace_gib}")
        for name in ("max_fp16_drop", "max_int8_drop", "max_bf16_drop"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"--{name.replace('_', '-')} must lie in [0, 1], got {getattr(self, name)}")

    def allowed_ap_drop(self, precision: str) -> float:
        """The AP a ``precision`` graph may lose against the FP32 ONNX (``fp16``, ``bf16`` or ``int8``; ``fp32``:
        an FP32 graph on another runtime, ``FP32_AP_TOLERANCE``)."""
        drops = {"fp32": FP32_AP_TOLERANCE, "fp16": self.max_fp16_drop, "bf16": self.max_bf16_drop}
        return {**drops, "int8": self.max_int8_drop}[precision]

    @property
    def dynamic_batch(self) -> bool:
        return self.batch[0] != self.batch[2]


def parse_openvino(text: str) -> tuple[str, ...]:
    """``"fp32,int8"`` -> ``("fp32", "int8")`` (validated by ``ExportConfig``)."""
    precisions = tuple(item.strip().lower() for item in str(text).split(",") if item.strip())
    if not precisions:
        raise ValueError(f"--openvino needs one or more of {', '.join(OPENVINO_PRECISIONS)}, got {text!r}")
    return precisions


def parse_batch_range(text: str) -> tuple[int, int, int]:
    """``"1,4,8"`` -> (1, 4, 8) as (min, opt, max)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--dynamic-batch must be MIN,OPT,MAX (integers), got {text!r}") from None
    if len(values) != 3:
        raise ValueError(f"--dynamic-batch must be MIN,OPT,MAX, got {text!r}")
    return values
