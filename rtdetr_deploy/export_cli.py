"""``rtdetr-export``: checkpoint -> verified discrete-sampling ONNX (-> precision ONNX -> TensorRT engine)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import RtdetrDeployError
from .export.config import TRT_PRECISIONS, ExportConfig, parse_batch_range, parse_imgsz

__all__ = ["main", "build_parser", "config_from_args"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtdetr-export",
        description=(
            "Export an RT-DETRv2 checkpoint (official release, bare state dict or rtdetr-deploy checkpoint) to "
            "ONNX with the discrete sampling operator, verify it against PyTorch, and optionally build a "
            "TensorRT engine."
        ),
    )
    parser.add_argument("weights", type=Path, help="checkpoint file (.pth)")
    parser.add_argument("-o", "--out", type=Path, default=None, help="output folder (default: beside the weights)")
    parser.add_argument("--preset", default=None, help="model preset (default: inferred from the weights)")
    parser.add_argument("--imgsz", default=None, help="input size: N or H,W, multiples of 32 (default: the model's)")
    parser.add_argument(
        "--sampling",
        choices=("discrete", "bilinear"),
        default="discrete",
        help="deformable sampling in the graph (default: discrete, no GridSample)",
    )
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, default=None, help="fixed batch size (default: 1)")
    batch.add_argument("--dynamic-batch", default=None, metavar="MIN,OPT,MAX", help="dynamic batch range")
    parser.add_argument("--topk", type=int, default=300, help="detections per image in the outputs (default: 300)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or newer (default: 17)")
    parser.add_argument("--no-simplify", action="store_true", help="skip onnxslim simplification")
    parser.add_argument("--keep-unsimplified", action="store_true", help="also keep the graph as traced")
    parser.add_argument("--verify-images", type=Path, default=None, help="folder of images to verify on")
    parser.add_argument("--trt", choices=TRT_PRECISIONS, default=None, help="build a TensorRT engine of this precision")
    parser.add_argument("--calib", type=Path, default=None, help="calibration image folder (INT8)")
    parser.add_argument("--int8-cpu", action="store_true", help="also write an ONNX Runtime INT8 model")
    parser.add_argument("--workspace", type=float, default=4.0, help="TensorRT workspace in GiB (default: 4)")
    parser.add_argument("--timing-cache", type=Path, default=None, help="TensorRT timing cache file to reuse")
    return parser


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
    return ExportConfig(
        weights=args.weights,
        out_dir=args.out if args.out is not None else args.weights.parent,
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
        calib=args.calib,
        int8_cpu=args.int8_cpu,
        workspace_gib=args.workspace,
        timing_cache=args.timing_cache,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        if not config.weights.is_file():
            raise FileNotFoundError(f"checkpoint not found: {config.weights}")
        from .export.pipeline import export

        result = export(config)
    except KeyboardInterrupt:
        print("rtdetr-export: interrupted; nothing was written", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RtdetrDeployError) as exc:
        print(f"rtdetr-export: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, (ValueError, FileNotFoundError)) else 1
    except ImportError as exc:
        hint = "pip install 'rtdetr-deploy[export]'"
        print(f"rtdetr-export: error: {exc.name} is not installed: {hint}", file=sys.stderr)
        return 1
    census = result.report["op_census"]
    print("Op census: " + ", ".join(f"{op} {count}" for op, count in census.items()))  # type: ignore[union-attr]
    swap = result.report["swap"]
    print(
        f"Discrete vs bilinear on the same weights: {swap['agreement']:.1%} of the top detections agree, "  # type: ignore[index]
        f"mean score change {swap['mean_abs_score_delta']:.1e}"  # type: ignore[index]
    )
    print("Wrote:")
    for path in result.files:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
