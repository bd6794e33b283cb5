"""The speed-knob flags shared by the commands that load a checkpoint: ``--decoder-layers`` and ``--queries``."""

from __future__ import annotations

import argparse

__all__ = ["add_speed_knob_flags"]


def add_speed_knob_flags(parser: argparse.ArgumentParser, *, what: str = "the graph") -> None:
    """Add ``--decoder-layers N`` and ``--queries K`` (``None`` when not given: the model's own)."""
    parser.add_argument(
        "--decoder-layers",
        type=int,
        default=None,
        metavar="N",
        help=f"{what} stops after N decoder layers and uses that layer's trained head (1..the model's layers; "
        "default: all)",
    )
    parser.add_argument(
        "--queries",
        type=int,
        default=None,
        metavar="K",
        help="query selection keeps the K best encoder positions (1..the trained number; default: the trained number)",
    )
