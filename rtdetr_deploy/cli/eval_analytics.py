"""The video-analytics part of ``rtdetr-eval``: ``--track SEQ_DIR`` (HOTA, MOTA, IDF1 per tracker) and ``--slice``
(AP and AP_small with and without sliced inference)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..runtime.slicing import SliceConfig, parse_slice
from ..runtime.tracking import TRACKERS, check_tracker_name, parse_thresholds
from .infer_analytics import tracker_config

__all__ = ["add_analytics_flags", "wants_analytics", "run_analytics"]

SMALL_OBJECTS = "small-objects"


def add_analytics_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--track``, ``--trackers``, ``--slice`` and ``--overlap`` to the eval parser."""
    parser.add_argument(
        "--track",
        nargs="+",
        type=Path,
        metavar="SEQ_DIR",
        help="MOTChallenge sequence folders (seqinfo.ini, img1/, gt/gt.txt): HOTA, MOTA and IDF1 per tracker",
    )
    parser.add_argument(
        "--trackers",
        default=",".join(TRACKERS),
        metavar="NAMES",
        help=f"with --track: comma-separated trackers (default: {','.join(TRACKERS)})",
    )
    parser.add_argument(
        "--track-thresholds",
        type=parse_thresholds,
        metavar="LOW,HIGH,NEW",
        help="with --track: the trackers' scores (default: measured on the shipped model, docs/tracking.md)",
    )
    parser.add_argument(
        "--slice",
        type=parse_slice,
        metavar="H,W",
        help=f"AP with and without sliced inference of H,W tiles (default --data: {SMALL_OBJECTS}, the large-image "
        "small-object split)",
    )
    parser.add_argument("--overlap", type=float, default=0.2, metavar="R", help="with --slice: tile overlap (0.2)")


def wants_analytics(args: argparse.Namespace) -> bool:
    return args.track is not None or args.slice is not None


def run_analytics(args: argparse.Namespace) -> int:
    """Run ``--track`` and/or ``--slice`` for the first model; prints markdown tables (``--markdown`` too)."""
    if len(args.models) != 1:
        raise ValueError("--track and --slice evaluate one model at a time")
    if args.track is not None and args.slice is not None:
        raise ValueError("--track and --slice are separate evaluations; run them one at a time")
    if args.json is not None or args.per_class:
        raise ValueError("--json and --per-class belong to the COCO evaluation; --track and --slice write --markdown")
    model = args.models[0]
    if args.track is not None:
        from ..eval.tracking import evaluate_tracking, tracking_table

        names = [check_tracker_name(n.strip()) for n in args.trackers.split(",") if n.strip()]
        missing = [str(s) for s in args.track if not s.is_dir()]
        if missing:
            raise FileNotFoundError(f"sequence folder not found: {', '.join(missing)}")
        config = tracker_config(names[0], args.track_thresholds)
        scores = evaluate_tracking(
            model, args.track, trackers=names, config=config, backend=args.backend, device=args.device, batch=args.batch
        )
        text = tracking_table(scores)
    else:
        from ..data.small_objects import ensure_small_objects
        from ..eval.evaluate import load_eval_data
        from ..eval.slicing import evaluate_sliced, sliced_table

        config = SliceConfig(args.slice, overlap=args.overlap)
        data_name = args.data or SMALL_OBJECTS
        folder = ensure_small_objects() if data_name == SMALL_OBJECTS else data_name
        data = load_eval_data(folder, split=args.split)
        text = sliced_table(evaluate_sliced(model, data, config, backend=args.backend, device=args.device))
    print(text, end="")
    if args.markdown is not None:
        from ..eval.report import write_markdown

        print(f"wrote {write_markdown(text, args.markdown)}", file=sys.stderr)
    return 0
