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
from typing import NoReturn

from .errors import RtdetrDeployError

__all__ = ["main", "build_parser", "config_from_args"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Optional module -> the extra that installs it.
EXTRAS = {
    "matplotlib": "bench",
    "psutil": "bench",
    "onnxslim": "export",
    "torch": "torch",
    "torchvision": "torch",
    "tensorrt": "trt",
    "cuda": "trt",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rtdetr-bench",
        description=(
            "Benchmark an RT-DETRv2 model: inference latency (p50/p90/p99) and throughput per backend, precision "
            "and batch; per-stage timings and end-to-end FPS on a video; ratios between the cases."
        ),
    )
    parser.add_argument("model", type=Path, help=".onnx (onnxruntime), .engine (TensorRT) or .pth (PyTorch) file")
    parser.add_argument(
        "--backend",
        default="auto",
        help="comma-separated: onnxruntime, tensorrt, torch (default: by the file suffix; a .pth also runs on "
        "onnxruntime, exported on the fly)",
    )
    parser.add_argument(
        "--precision",
        default=None,
        help="comma-separated: fp32, fp16, int8 (default: the model's own; other precisions of an .onnx/.engine "
        "are the files rtdetr-export writes beside it)",
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
    return parser


def config_from_args(args: argparse.Namespace):  # noqa: ANN201 - BenchConfig, imported lazily
    """Map parsed flags onto a ``BenchConfig`` (validated there; raises ``ValueError``)."""
    from .bench.config import BenchConfig, parse_batches, parse_list
    from .export.config import parse_imgsz

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
    )


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rtdetr-bench``; returns the exit status (0 ok, 1 error, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        config = config_from_args(args)
        if config.plot_path is not None and importlib.util.find_spec("matplotlib") is None:
            raise ImportError("--plot needs matplotlib", name="matplotlib")
        from .bench.report import markdown_report, write_json, write_markdown, write_plot
        from .bench.run import run_benchmark

        command = "rtdetr-bench " + shlex.join(sys.argv[1:] if argv is None else [str(a) for a in argv])
        report = run_benchmark(config, log=_log, command=command)
    except KeyboardInterrupt:
        print("rtdetr-bench: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, FileNotFoundError) as exc:
        print(f"rtdetr-bench: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (RtdetrDeployError, OSError) as exc:
        print(f"rtdetr-bench: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except ImportError as exc:  # an optional dependency of the chosen path
        module = (exc.name or "").split(".")[0]
        extra = EXTRAS.get(module, "all")
        print(
            f"rtdetr-bench: error: {module or exc} is not installed: pip install 'rtdetr-deploy[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_ERROR
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
    return EXIT_OK


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
