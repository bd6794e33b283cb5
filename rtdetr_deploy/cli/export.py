"""``rtdetr-export``: checkpoint -> verified discrete-sampling ONNX (-> precision ONNX -> TensorRT engine)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..contract import DEFAULT_SAMPLING, SAMPLING_METHODS
from ..export.config import (
    GELU_FORMS,
    OPENVINO_PRECISIONS,
    OUTPUT_KINDS,
    TRT_PRECISIONS,
    ExportConfig,
    parse_batch_range,
    parse_openvino,
)
from ..export.gates import DEFAULT_MAX_AP_DROP
from ..export.target_config import (
    NCNN_PYTHON_ENV,
    ONNX2TF_PYTHON_ENV,
    RKNN_PLATFORMS,
    RKNN_PRECISIONS,
    RKNN_PYTHON_ENV,
    TargetsConfig,
    interpreter_from,
)
from .frame import CommandParser, parse_imgsz, run_command
from .names import add_names_option, names_from_args

if TYPE_CHECKING:
    from ..export.triton import TritonOptions
from .knobs import add_speed_knob_flags

__all__ = ["main", "build_parser", "config_from_args"]

PROG = "rtdetr-export"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        description=(
            "Export an RT-DETRv2 checkpoint (official release, bare state dict, rtdetr-deploy checkpoint or "
            "Hugging Face transformers folder) to "
            "ONNX with the discrete sampling operator, verify it against PyTorch, and optionally build a "
            "TensorRT engine."
        ),
    )
    parser.add_argument(
        "weights", type=Path, help="checkpoint (.pth, .safetensors) or transformers save_pretrained folder"
    )
    parser.add_argument("-o", "--out", type=Path, default=None, help="output folder (default: beside the weights)")
    parser.add_argument("--preset", default=None, help="model preset (default: inferred from the weights)")
    parser.add_argument("--imgsz", default=None, help="input size: N or H,W, multiples of 32 (default: the model's)")
    parser.add_argument(
        "--sampling",
        choices=SAMPLING_METHODS,
        default=DEFAULT_SAMPLING,
        help="deformable sampling in the graph (default: discrete, no GridSample)",
    )
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, default=None, help="fixed batch size (default: 1)")
    batch.add_argument("--dynamic-batch", default=None, metavar="MIN,OPT,MAX", help="dynamic batch range")
    parser.add_argument("--topk", type=int, default=300, help="detections per image in the outputs (default: 300)")
    add_speed_knob_flags(parser)
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or newer (default: 17)")
    parser.add_argument("--no-simplify", action="store_true", help="skip onnxslim simplification")
    parser.add_argument("--keep-unsimplified", action="store_true", help="also keep the graph as traced")
    parser.add_argument("--verify-images", type=Path, default=None, help="folder of images to verify on")
    parser.add_argument("--trt", choices=TRT_PRECISIONS, default=None, help="build a TensorRT engine of this precision")
    parser.add_argument("--fp16", action="store_true", help="also write the FP16 ONNX (implied by --trt fp16)")
    parser.add_argument("--calib", type=Path, default=None, help="calibration image folder (INT8)")
    parser.add_argument("--calib-images", type=int, default=100, help="calibrate on at most N images (default: 100)")
    parser.add_argument(
        "--calib-method", default="minmax", help="INT8 calibration: minmax, entropy or percentile (default: minmax)"
    )
    parser.add_argument(
        "--int8-keep-float",
        default=None,
        metavar="GROUP,...",
        help="INT8 layer groups to keep in float (e.g. backbone.stem,decoder.value_proj); 'none' quantizes all",
    )
    parser.add_argument(
        "--int8-sensitivity",
        action="store_true",
        help="with --eval-data and --calib: measure each layer group's INT8 cost and record it in *.verify.json",
    )
    parser.add_argument("--int8-cpu", action="store_true", help="also write an ONNX Runtime INT8 model")
    parser.add_argument(
        "--openvino",
        default=None,
        metavar="PRECISIONS",
        help=f"also write OpenVINO IRs (.xml + .bin), comma-separated: {', '.join(OPENVINO_PRECISIONS)} (int8: NNCF, "
        "needs --calib); needs pip install 'rtdetr-deploy[openvino]'",
    )
    parser.add_argument(
        "--fuse-preprocess",
        action="store_true",
        help="also write NAME.fused.onnx beside each ONNX: uint8 BGR frames [N, H, W, 3] of any size in, colour "
        "conversion, resize and scaling in the graph (verified against the runtime's preprocessing)",
    )
    _add_acceptance_arguments(parser)
    _add_target_flags(parser)
    _add_graph_arguments(parser)
    parser.add_argument("--workspace", type=float, default=4.0, help="TensorRT workspace in GiB (default: 4)")
    parser.add_argument("--timing-cache", type=Path, default=None, help="TensorRT timing cache file to reuse")
    _add_triton_arguments(parser)
    add_names_option(parser)
    return parser


def _add_acceptance_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the accuracy gates (``docs/precision-acceptance.md``)."""
    parser.add_argument(
        "--eval-data",
        type=Path,
        default=None,
        help="labelled COCO data (folder or 'synthetic'): measure every graph's AP, accept FP16/INT8 by AP loss",
    )
    parser.add_argument("--eval-split", default="val", help="split of --eval-data (default: val)")
    for precision, what in (("fp16", "FP16"), ("int8", "INT8"), ("bf16", "OpenVINO BF16")):
        drop = DEFAULT_MAX_AP_DROP[precision]
        parser.add_argument(
            f"--max-{precision}-drop", type=float, default=drop, help=f"AP {what} may lose (default: {drop:g})"
        )
    parser.add_argument(
        "--strict-sampling",
        action="store_true",
        help="refuse the export when discrete sampling costs bilinear-trained weights accuracy (default: warn)",
    )


def _add_triton_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--triton",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write a Triton model repository of the exported models into DIR (needs --dynamic-batch 1,OPT,MAX)",
    )
    parser.add_argument("--triton-instances", type=int, default=1, help="Triton instances per device (default: 1)")
    parser.add_argument(
        "--triton-kind", choices=("auto", "cpu", "gpu"), default="auto", help="Triton instance kind (default: auto)"
    )


def _add_target_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of the third-party engines (``export.targets``; usage in docs/targets.md)."""
    parser.add_argument(
        "--mnn", action="store_true", help="also write NAME.mnn (FP32), verified in MNN; needs 'rtdetr-deploy[mnn]'"
    )
    parser.add_argument(
        "--tflite",
        action="store_true",
        help="also write NAME.tflite (FP32) with onnx2tf, verified in LiteRT; needs 'rtdetr-deploy[litert]'",
    )
    parser.add_argument(
        "--tflite-python",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"interpreter that has onnx2tf (default: ${ONNX2TF_PYTHON_ENV}, else this one)",
    )
    parser.add_argument(
        "--rknn",
        choices=RKNN_PLATFORMS,
        default=None,
        metavar="PLATFORM",
        help="also build NAME.PLATFORM-PRECISION.rknn, verified in rknn-toolkit2's simulator: "
        + ", ".join(RKNN_PLATFORMS),
    )
    parser.add_argument(
        "--rknn-precision", choices=RKNN_PRECISIONS, default="fp16", help="default: fp16 (int8: --calib)"
    )
    parser.add_argument(
        "--rknn-python",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"interpreter that has rknn-toolkit2 (default: ${RKNN_PYTHON_ENV})",
    )

    parser.add_argument(
        "--ncnn",
        action="store_true",
        help="also write the NAME.ncnn folder (FP32; needs --sampling bilinear) with pnnx, verified in ncnn; needs "
        "'rtdetr-deploy[ncnn]'",
    )
    parser.add_argument(
        "--ncnn-python",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"interpreter that has pnnx (default: ${NCNN_PYTHON_ENV})",
    )


def _targets(args: argparse.Namespace) -> TargetsConfig:
    return TargetsConfig(
        mnn=args.mnn,
        tflite=args.tflite,
        tflite_python=interpreter_from(args.tflite_python, ONNX2TF_PYTHON_ENV),
        rknn=args.rknn,
        rknn_precision=args.rknn_precision,
        rknn_python=interpreter_from(args.rknn_python, RKNN_PYTHON_ENV) if args.rknn is not None else None,
        ncnn=args.ncnn,
        ncnn_python=interpreter_from(args.ncnn_python, NCNN_PYTHON_ENV) if args.ncnn else None,
    )


def _add_graph_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that shape the graph for engines with narrower ONNX support (``docs/portable-graph.md``)."""
    parser.add_argument(
        "--gelu",
        choices=GELU_FORMS,
        default="erf",
        help="GELU in the graph: erf (ONNX Erf, as trained), poly (no Erf, within 1e-6 of it) or tanh (the tanh "
        "approximation) (default: erf)",
    )
    parser.add_argument(
        "--outputs",
        choices=OUTPUT_KINDS,
        default="detections",
        help="detections (labels, boxes, scores) or raw (pred_logits, pred_boxes; top-k on the host, for engines "
        "without TopK) (default: detections)",
    )


def config_from_args(args: argparse.Namespace) -> ExportConfig:
    """Map parsed flags onto an ``ExportConfig`` (raises ``ValueError`` for bad values)."""
    if args.dynamic_batch is not None:
        batch = parse_batch_range(args.dynamic_batch)
    else:
        size = 1 if args.batch is None else args.batch
        if size < 1:
            raise ValueError(f"--batch must be positive, got {size}")
        batch = (size, size, size)
    if args.calib is not None and not args.calib.is_dir():
        raise FileNotFoundError(f"calibration folder not found: {args.calib}")
    # A folder is named by its own name (``rtdetr-export .`` writes ``<folder name>.onnx`` beside it).
    weights = args.weights.resolve() if args.weights.is_dir() else args.weights
    return ExportConfig(
        weights=weights,
        out_dir=args.out if args.out is not None else weights.parent,
        preset=args.preset,
        imgsz=parse_imgsz(args.imgsz) if args.imgsz is not None else None,
        sampling=args.sampling,
        batch=batch,
        topk=args.topk,
        opset=args.opset,
        simplify=not args.no_simplify,
        keep_unsimplified=args.keep_unsimplified,
        verify_images=args.verify_images,
        trt=args.trt,
        fp16=args.fp16,
        calib=args.calib,
        calib_images=args.calib_images,
        calib_method=args.calib_method,
        int8_keep_float=_keep_float(args.int8_keep_float),
        int8_sensitivity=args.int8_sensitivity,
        int8_cpu=args.int8_cpu,
        openvino=parse_openvino(args.openvino) if args.openvino is not None else (),
        fuse_preprocess=args.fuse_preprocess,
        workspace_gib=args.workspace,
        timing_cache=args.timing_cache,
        eval_data=args.eval_data,
        eval_split=args.eval_split,
        max_fp16_drop=args.max_fp16_drop,
        max_int8_drop=args.max_int8_drop,
        max_bf16_drop=args.max_bf16_drop,
        names=names_from_args(args),
        targets=_targets(args),
        gelu=args.gelu,
        outputs=args.outputs,
        decoder_layers=args.decoder_layers,
        queries=args.queries,
        strict_sampling=args.strict_sampling,
    )


def _require(*modules: str) -> None:
    """Fail before any work when a package the export needs is missing (the frame names its extra)."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise ImportError(f"No module named {module!r}", name=module)


def _keep_float(text: str | None) -> tuple[str, ...]:
    from ..export.int8_groups import DEFAULT_KEEP_FLOAT

    if text is None:
        return DEFAULT_KEEP_FLOAT
    if text.strip().lower() == "none":
        return ()
    return tuple(text.split(","))


def _export(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if not config.weights.exists():
        raise FileNotFoundError(f"checkpoint not found: {config.weights}")
    if config.openvino:
        _require("openvino", *(("nncf",) if "int8" in config.openvino else ()))
    triton = _triton_options(args, config.batch)
    if config.targets.mnn:
        _require("MNN")
    if config.targets.tflite:
        _require("ai_edge_litert")
    if config.targets.ncnn:
        _require("ncnn")
    from ..export.pipeline import export

    result = export(config)
    report = result.report
    print("Op census: " + ", ".join(f"{op} {count}" for op, count in report.op_census.items()))
    kept = report.swap.kept_ap
    print(
        f"Discrete vs bilinear on the same weights: {report.swap.agreement:.1%} of the top detections agree, "
        f"mean score change {report.swap.mean_abs_score_delta:.1e}"
        + (
            ""
            if kept is None or kept.ap is None
            else f", kept AP {kept.ap:.3f} of {kept.pseudo_objects} confident detections"
        )
    )
    print(f"Classes: {result.report.classes}")
    print("Wrote:")
    for path in result.files:
        print(f"  {path}")
    if triton is not None:
        from ..export.triton import write_triton_repository

        print(f"Triton model repository {args.triton}:")
        for model in write_triton_repository(result.files, args.triton, options=triton):
            print(f"  {model.config.parent.name}: {model.source.name}, max_batch_size {model.max_batch_size}")
    return 0


def _triton_options(args: argparse.Namespace, batch: tuple[int, int, int]) -> TritonOptions | None:
    """``--triton``'s options, checked before the export starts (a batch Triton cannot drive is refused)."""
    if args.triton is None:
        return None
    from ..export.triton import TritonOptions, check_servable_batch

    check_servable_batch(batch, "the export")
    return TritonOptions(instances=args.triton_instances, kind=args.triton_kind)


def main(argv: list[str] | None = None) -> int:
    """``rtdetr-export``; returns the exit status (0 done, 1 failed, 2 bad input, 130 interrupted)."""
    return run_command(PROG, build_parser(), argv, _export, interrupted="nothing was written")


if __name__ == "__main__":
    sys.exit(main())
