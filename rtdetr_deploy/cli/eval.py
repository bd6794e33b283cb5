"""``rtdetr-eval MODEL [MODEL ...] --data DIR|synthetic``: COCO AP of every deployed artifact, side by side.

Each model runs through the runtime's ``Detector`` (its preprocessing, its backend, its post-processing, no score
threshold): ``.pth`` on PyTorch, ``.onnx`` of any precision on ONNX Runtime, ``.engine`` on TensorRT. Prints one
table (AP, AP50, AP75, AP small/medium/large, ΔAP against the first model, p50 latency per image) and writes the
JSON and markdown reports when asked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..runtime.config import parse_device
from ..runtime.registry import BACKEND_CHOICES
from .eval_analytics import add_analytics_flags, run_analytics, wants_analytics
from .frame import CommandParser, run_command
from .names import add_names_option, names_from_args

__all__ = ["build_parser", "main"]

PROG = "rtdetr-eval"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        description="COCO box metrics of RT-DETRv2 models (checkpoints, .onnx of any precision, .engine, OpenVINO "
        ".xml) through the deployment runtime, side by side.",
    )
    parser.add_argument(
        "models",
        nargs="+",
        type=Path,
        metavar="MODEL",
        help=".pth, .safetensors, transformers folder, .onnx, .engine or .xml",
    )
    parser.add_argument(
        "--data", help="COCO-format dataset folder, or 'synthetic' (the embedded set); required without --track/--slice"
    )
    parser.add_argument("--split", default="val", help="split to evaluate (default: val)")
    parser.add_argument("--backend", default="auto", choices=BACKEND_CHOICES, help="default: by each file's suffix")
    parser.add_argument("--device", default=None, help="cpu or cuda:N (default: cuda:0 for .engine, cpu otherwise)")
    parser.add_argument("--batch", type=int, default=1, help="images per inference call (default: 1)")
    parser.add_argument("--per-class", action="store_true", help="also print AP per class")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the report as JSON")
    parser.add_argument("--markdown", type=Path, default=None, metavar="FILE", help="write the tables as markdown")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_names_option(parser, applies_to=" (applies to the checkpoints among the models)")
    add_analytics_flags(parser)
    return parser


def _evaluate(args: argparse.Namespace) -> int:
    if args.device is not None:
        parse_device(args.device)
    if args.batch < 1:
        raise ValueError(f"--batch must be positive, got {args.batch}")
    missing = [str(m) for m in args.models if not m.exists()]
    if missing:
        raise FileNotFoundError(f"model not found: {', '.join(missing)}")
    if wants_analytics(args):
        return run_analytics(args)
    if args.data is None:
        raise ValueError("--data is required (a COCO-format dataset folder, or 'synthetic')")
    if args.data != "synthetic" and not Path(args.data).is_dir():
        raise FileNotFoundError(f"data folder not found: {args.data}")
    names = names_from_args(args)
    from ..bench.device import describe_device
    from ..bench.report import device_line
    from ..eval.evaluate import evaluate_models, load_eval_data
    from ..eval.report import eval_report, markdown_tables, write_json, write_markdown

    data = load_eval_data(args.data, split=args.split)
    scores = evaluate_models(
        args.models,
        data,
        backend=args.backend,
        device=args.device,
        batch=args.batch,
        progress=args.progress,
        names=names,
    )
    device = args.device or ("cuda:0" if any(m.suffix == ".engine" for m in args.models) else "cpu")
    report = eval_report(scores, data, device=f"{device}: {device_line(describe_device(device))}")
    text = markdown_tables(report, per_class=args.per_class)
    print(text, end="")
    if args.json is not None:
        print(f"wrote {write_json(report, args.json)}", file=sys.stderr)
    if args.markdown is not None:
        print(f"wrote {write_markdown(text, args.markdown)}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``rtdetr-eval``; returns the exit status (0 done, 1 failed, 2 bad input, 130 interrupted)."""
    return run_command(PROG, build_parser(), argv, _evaluate)


if __name__ == "__main__":
    sys.exit(main())
