"""The ``--names SOURCE`` option that commands loading a checkpoint share."""

from __future__ import annotations

import argparse

from ..coco.names import ClassNames, read_names

__all__ = ["NAMES_HELP", "add_names_option", "names_from_args"]

NAMES_HELP = (
    "class names and category ids of a checkpoint: 'coco' (COCO's 80, ids 1..90), a COCO annotation .json (its "
    "categories), or a .txt/.yaml list of names (ids 0..N-1); default: the checkpoint's own, COCO's for an "
    "80-class checkpoint without names"
)


def add_names_option(parser: argparse.ArgumentParser, *, applies_to: str = "") -> None:
    """Add ``--names SOURCE`` to ``parser`` (``applies_to``: a note on which models it relabels)."""
    parser.add_argument("--names", default=None, metavar="SOURCE", help=NAMES_HELP + applies_to)


def names_from_args(args: argparse.Namespace) -> ClassNames | None:
    """The parsed ``--names`` source, or ``None`` when not given (raises ``ValueError``/``FileNotFoundError``)."""
    return None if args.names is None else read_names(args.names)
