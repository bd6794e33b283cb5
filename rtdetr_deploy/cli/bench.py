"""``rtdetr-bench MODEL``: latency percentiles, throughput, per-stage timings and comparisons of a detector.

Prints the markdown tables, writes the JSON report and the plot when asked. Bad input ends with one
``rtdetr-bench: error:`` line and a non-zero exit status (2 for bad arguments, 1 for a missing backend or a
failing toolchain), before any timing starts where it can be found out early.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
from pathlib import Path

from .frame import CommandParser, parse_imgsz, run_command
from .names import add_names_option, names_from_args

__all__ = ["main", "build_parser", "config_from_args"]

PROG = "rtdetr-bench"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        description=(
            "Benchmark an RT-DETRv2 model: inference latency (p50/p90/p99) and throughput per backend, precision "
            "and batch; per-stage timings and end-to-end FPS on a video; ratios between the cases."
        ),
    )
    parser.add_argument(
        "model",
        type=Path,
        help=".onnx (onnxruntime), .engine (TensorRT), .xml (OpenVINO), or a checkpoint for PyTorch (.pth, "
        ".safetensors, transformers folder)",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        help="comma-separated: onnxruntime, tensorrt, openvino, torch (default: by the file suffix; a checkpoint also "
        "runs on onnxruntime, exported on the fly)",
    )
    parser.add_argument(
        "--precision",
        default=None,
        help="comma-separated: fp32, fp16, int8, bf16 (default: the model's own; other precisions of an "
        ".onnx/.engine/.xml are the files rtdetr-export writes beside it)",
    )
    parser.add_argument(
        "--sampling", default=None, help="comma-separated: discrete, bilinear (a .pth only; default: discrete)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda:N (default: cpu)")
    parser.add_argument("--batch", default="1", help="comma-separated batch sizes (default: 1)")
    parser.add_argument("--imgsz", default=None, help="input size N or H,W for a .pth (default: the checkpoint's)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs before each case (default: 10)")
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument("--iters", type=int, default=None, help="timed runs per case and batch (default: 50)")
    timing.add_argument("--seconds", type=float, default=None, help="time each case and batch for this long instead")
    parser.add_argument("--video", type=Path, default=None, help="video for the per-stage split and end-to-end FPS")
    parser.add_argument("--frames", type=int, default=64, help="video frames per case and batch (default: 64)")
    parser.add_argument(
        "--cuda-graph",
        default="off",
        help="torch on CUDA: off, on (capture and replay) or both (measure each) (default: off)",
    )
    parser.add_argument("--calib", type=Path, default=None, help="calibration images for INT8 of a .pth")
    parser.add_argument("--no-peak", action="store_true", help="skip measuring the CPU's FP32 matmul rate")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the full report as JSON")
    parser.add_argument("--markdown", type=Path, default=None, metavar="OUT", help="write the tables as markdown")
    parser.add_argument("--plot", type=Path, default=None, metavar="OUT.png", help="draw the results as a PNG")
    add_names_option(parser, applies_to=" (a checkpoint only)")
    return parser


def config_from_args(args: argparse.Namespace):  # noqa: ANN201 - BenchConfig, imported lazily
    """Map parsed flags onto a ``BenchConfig`` (validated there; raises ``ValueError``)."""
    from ..bench.config import BenchConfig, parse_batches, parse_list

    return BenchConfig(
        model=args.model,
        backends=parse_list(args.backend),
        precisions=parse_list(args.precision) if args.precision is not None else None,
        samplings=parse_list(args.sampling) if args.sampling is not None else None,
        device=args.device.strip().lower(),
        batches=parse_batches(args.batch),
        imgsz=parse_imgsz(args.imgsz) if args.imgsz is not None else None,
        warmup=args.warmup,
        iters=args.iters,
        seconds=args.seconds,
        video=args.video,
        frames=args.frames,
        cuda_graph=args.cuda_graph.strip().lower(),
        calib=args.calib,
        matmul_peak=not args.no_peak,
        json_path=args.json,
        markdown_path=args.markdown,
        plot_path=args.plot,
        names=names_from_args(args),
    )


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _bench(args: argparse.Namespace, argv: list[str] | None) -> int:
    config = config_from_args(args)
    if config.plot_path is not None and importlib.util.find_spec("matplotlib") is None:
        raise ImportError("--plot needs matplotlib", name="matplotlib")
    from ..bench.benchmark import run_benchmark
    from ..bench.report import markdown_report, write_json, write_markdown, write_plot

    command = "rtdetr-bench " + shlex.join(sys.argv[1:] if argv is None else [str(a) for a in argv])
    report = run_benchmark(config, log=_log, command=command)
    print(markdown_report(report), end="")
    written = []
    if config.json_path is not None:
        written.append(write_json(report, config.json_path))
    if config.markdown_path is not None:
        written.append(write_markdown(report, config.markdown_path))
    if config.plot_path is not None:
        written.append(write_plot(report, config.plot_path))
    for path in written:
        _log(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``rtdetr-bench``; returns the exit status (0 done, 1 failed, 2 bad input, 130 interrupted)."""
    return run_command(PROG, build_parser(), argv, lambda args: _bench(args, argv), interrupted="nothing was written")


if __name__ == "__main__":
    sys.exit(main())
