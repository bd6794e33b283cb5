"""The speed-knob flags shared by the commands that load a checkpoint: ``--decoder-layers`` and ``--queries``."""

from __future__ import annotations

import argparse

__all__ = ["add_speed_knob_flags", "parse_counts"]


def parse_counts(text: str | None, flag: str) -> tuple[int, ...] | None:
    """``"1,2,3"`` -> ``(1, 2, 3)``; ``None`` stays ``None``; raises ``ValueError`` for anything but integers."""
    if text is None:
        return None
    try:
        values = tuple(int(item) for item in str(text).split(",") if item.strip())
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"{flag} is empty, got {text!r}")
    return tuple(dict.fromkeys(values))


def add_speed_knob_flags(parser: argparse.ArgumentParser, *, what: str = "the graph", many: bool = False) -> None:
    """Add ``--decoder-layers N`` and ``--queries K`` (``None`` when not given: the model's own).

    With ``many`` they take comma-separated lists (strings, for ``parse_counts``): the frontier measures each.
    """
    listed = " (--frontier: a comma-separated list)" if many else ""
    parser.add_argument(
        "--decoder-layers",
        type=str if many else int,
        default=None,
        metavar="N",
        help=f"{what} stops after N decoder layers and uses that layer's trained head (1..the model's layers; "
        f"default: all){listed}",
    )
    parser.add_argument(
        "--queries",
        type=str if many else int,
        default=None,
        metavar="K",
        help="query selection keeps the K best encoder positions (1..the trained number; default: the trained "
        f"number){listed}",
    )
