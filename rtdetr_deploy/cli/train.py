"""``rtdetr-train``: train or fine-tune RT-DETRv2 on a COCO-format dataset or the embedded synthetic one.

The flags map one-to-one onto ``TrainConfig``; bad input ends with one line on stderr and exit status 2.
Several processes: ``torchrun --nproc_per_node N -m rtdetr_deploy.train ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .frame import CommandParser, parse_imgsz, run_command

__all__ = ["main", "build_parser", "parse_args"]


def _imgsz(text: str) -> tuple[int, int]:
    try:
        return parse_imgsz(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser(prog: str = "rtdetr-train") -> argparse.ArgumentParser:
    """The flags, named after ``TrainConfig``'s fields (``--no-amp``, ``--no-multiscale``, ``--no-progress`` negate)."""
    p = CommandParser(
        prog=prog,
        description="Train RT-DETRv2 (official recipe: AdamW, EMA, dynamic augmentation, multi-scale batches).",
    )
    p.add_argument(
        "--data", default="synthetic", help="'synthetic' (embedded, generated once) or a COCO dataset folder"
    )
    p.add_argument("--preset", default="r18vd", help="r18vd, r34vd, r50vd_m, r50vd, r101vd or tiny (default r18vd)")
    p.add_argument("--sampling", default="bilinear", help="bilinear or discrete (discrete freezes sampling offsets)")
    p.add_argument(
        "--imgsz", type=_imgsz, default=None, help="SIZE or HEIGHT,WIDTH, multiples of 32 (default: preset's)"
    )
    p.add_argument("--epochs", type=int, default=72, help="epochs (default 72)")
    p.add_argument("--stop-epoch", type=int, default=None, help="first epoch without strong aug (default epochs-3)")
    p.add_argument("--minutes", type=float, default=None, help="time budget; then evaluate and save")
    p.add_argument("--batch", type=int, default=16, help="images per step over all processes (default 16)")
    p.add_argument("--workers", type=int, default=2, help="data-loading processes per training process (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: cores minus workers)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--out", type=Path, default=Path("runs/train"), help="output folder (default runs/train)")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    p.add_argument("--backbone-lr", type=float, default=None, help="backbone learning rate (default: the preset's)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default 1e-4)")
    p.add_argument("--warmup-steps", type=int, default=2000, help="linear warm-up steps (default 2000)")
    p.add_argument("--ema-decay", type=float, default=0.9999, help="EMA decay (default 0.9999)")
    p.add_argument("--ema-warmups", type=int, default=2000, help="EMA decay ramp-up steps (default 2000)")
    p.add_argument("--clip-max-norm", type=float, default=0.1, help="gradient clipping, 0 to disable (default 0.1)")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="no mixed precision on CUDA")
    p.add_argument("--no-multiscale", dest="multiscale", action="store_false", help="train at --imgsz only")
    p.add_argument("--init", type=Path, default=None, help="start from these weights (official or ours)")
    p.add_argument(
        "--resume", nargs="?", const="", default=None, help="continue a run: a checkpoint, or bare for OUT/last.pth"
    )
    p.add_argument("--overwrite", action="store_true", help="let a new run replace checkpoints in --out")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--checkpoint-steps", type=int, default=0, help="also save last.pth every N steps (default 0: off)")
    p.add_argument("--eval-topk", type=int, default=300, help="detections per image in evaluation (default 300)")
    p.add_argument("--synthetic-images", type=int, default=800, help="training images of --data synthetic")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``rtdetr-train``'s flags (argparse exits on bad usage)."""
    return build_parser().parse_args(argv)


def _prog() -> str:
    rank = int(os.environ.get("RANK", "0"))
    return f"rtdetr-train [rank {rank}]" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "rtdetr-train"


def _train(args: argparse.Namespace) -> int:
    from ..train import TrainConfig, fit
    from ..train.distributed import cleanup_distributed

    options = vars(args)
    if options["resume"] == "":
        options["resume"] = args.out / "last.pth"
    elif options["resume"] is not None:
        options["resume"] = Path(options["resume"])
    try:
        fit(TrainConfig(**options))
    finally:
        cleanup_distributed()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``rtdetr-train``; returns the exit status (0 done, 1 failed, 2 bad input, 130 interrupted)."""
    prog = _prog()
    interrupted = "continue with --resume (from the last checkpoint)"
    return run_command(prog, build_parser(prog), argv, _train, interrupted=interrupted)


if __name__ == "__main__":
    sys.exit(main())
