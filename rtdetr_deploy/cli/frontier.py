"""``rtdetr-bench MODEL.pth --frontier --data DIR|synthetic``: flags and the run of the speed/accuracy frontier."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .frame import parse_imgsz
from .knobs import parse_counts

__all__ = ["add_frontier_flags", "check_not_frontier", "frontier_config", "run_frontier_command"]

_FRONTIER_ONLY = ("data", "sizes", "rounds")


def add_frontier_flags(parser: argparse.ArgumentParser) -> None:
    """``--frontier`` and the flags only it reads."""
    group = parser.add_argument_group("frontier (a checkpoint: export, evaluate and time every combination)")
    group.add_argument(
        "--frontier",
        action="store_true",
        help="measure COCO AP and p50 of every combination of --sizes, --decoder-layers, --queries and --precision "
        "(ONNX Runtime on --device, batch 1) and print the Pareto-optimal settings",
    )
    group.add_argument("--data", default=None, help="labelled COCO data for --frontier: a folder or 'synthetic'")
    group.add_argument("--split", default="val", help="split of --data (default: val)")
    group.add_argument(
        "--sizes",
        default=None,
        metavar="SIZES",
        help="input sizes for --frontier: comma-separated N or HxW, e.g. 640,512,384x640,320 (default: the "
        "checkpoint's size, 4/5 and 1/2 of it)",
    )
    group.add_argument("--rounds", type=int, default=None, help="timing rounds over all points (default: 5)")


def check_not_frontier(args: argparse.Namespace) -> None:
    """Refuse the frontier's own flags without ``--frontier``."""
    given = [f"--{name}" for name in _FRONTIER_ONLY if getattr(args, name) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} only apply with --frontier")


def _sizes(text: str | None) -> tuple[tuple[int, int], ...] | None:
    if text is None:
        return None
    sizes = tuple(parse_imgsz(item.replace("x", ",")) for item in text.split(",") if item.strip())
    if not sizes:
        raise ValueError(f"--sizes is empty, got {text!r}")
    return tuple(dict.fromkeys(sizes))


def frontier_config(args: argparse.Namespace):  # noqa: ANN201 - FrontierConfig, imported lazily
    """Map the flags onto a ``FrontierConfig`` (raises ``ValueError`` for bad values)."""
    from ..bench.config import parse_list
    from ..bench.frontier import FrontierConfig

    if args.data is None:
        raise ValueError("--frontier needs labelled data: pass --data DIR or --data synthetic")
    if args.data != "synthetic" and not Path(args.data).is_dir():
        raise FileNotFoundError(f"data folder not found: {args.data}")
    if args.model.suffix.lower() not in (".pth", ".safetensors") and not args.model.is_dir():
        raise ValueError(f"--frontier exports a checkpoint (.pth, .safetensors, model folder), not {args.model.name}")
    ignored = {"--seconds": args.seconds, "--video": args.video, "--imgsz (use --sizes)": args.imgsz}
    given = [flag for flag, value in ignored.items() if value is not None] + (["--batch"] if args.batch != "1" else [])
    if given:
        raise ValueError(f"--frontier times batch 1 for --rounds x --iters calls; it does not take {', '.join(given)}")
    if args.backend not in ("auto", "onnxruntime"):
        raise ValueError(f"--frontier measures on onnxruntime, not --backend {args.backend}")
    samplings = parse_list(args.sampling) if args.sampling is not None else ("discrete",)
    if len(samplings) != 1:
        raise ValueError(f"--frontier takes one --sampling, got {args.sampling!r}")
    return FrontierConfig(
        weights=args.model,
        data=args.data,
        split=args.split,
        sizes=_sizes(args.sizes),
        decoder_layers=parse_counts(args.decoder_layers, "--decoder-layers"),
        queries=parse_counts(args.queries, "--queries"),
        precisions=parse_list(args.precision) if args.precision is not None else ("fp32",),
        sampling=samplings[0],
        calib=args.calib,
        warmup=args.warmup,
        rounds=args.rounds if args.rounds is not None else 5,
        iters=args.iters if args.iters is not None else 10,
        device=args.device.strip().lower(),
    )


def _write_text(path: Path, text: str) -> Path:
    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def run_frontier_command(args: argparse.Namespace, *, command: str, log: Callable[[str], None]) -> int:
    """Run the frontier, print its table, write the JSON, markdown and plot when asked."""
    config = frontier_config(args)
    if not config.weights.exists():
        raise FileNotFoundError(f"checkpoint not found: {config.weights}")
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise ImportError("--plot needs matplotlib", name="matplotlib")
    from ..bench.frontier import run_frontier
    from ..bench.frontier_report import frontier_markdown, write_frontier_plot

    report = run_frontier(config, log=log, command=command)
    text = frontier_markdown(report)
    print(text, end="")
    sys.stdout.flush()
    if args.json is not None:
        log(f"wrote {_write_text(args.json, json.dumps(report, indent=2) + chr(10))}")
    if args.markdown is not None:
        log(f"wrote {_write_text(args.markdown, text)}")
    if args.plot is not None:
        log(f"wrote {write_frontier_plot(report, args.plot)}")
    return 0
