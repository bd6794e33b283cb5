"""The training log: one record per epoch, printed as a table row and kept as CSV and JSON beside the checkpoints."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..atomic import atomic_path

__all__ = ["COLUMNS", "format_header", "format_row", "write_history"]

# (key, header, format) of the printed table.
COLUMNS = (
    ("epoch", "epoch", "{:>5.0f}"),
    ("minutes", "min", "{:>6.1f}"),
    ("loss", "loss", "{:>7.3f}"),
    ("loss_vfl", "vfl", "{:>6.3f}"),
    ("loss_bbox", "l1", "{:>6.3f}"),
    ("loss_giou", "giou", "{:>6.3f}"),
    ("AP", "AP", "{:>6.3f}"),
    ("AP50", "AP50", "{:>6.3f}"),
    ("lr", "lr", "{:>9.2e}"),
)


def format_header() -> str:
    """Column titles of the per-epoch table, aligned with ``format_row``."""
    widths = [len(fmt.format(0)) for _, _, fmt in COLUMNS]
    return "  ".join(f"{header:>{w}}" for (_, header, _), w in zip(COLUMNS, widths, strict=True))


def format_row(record: dict[str, float]) -> str:
    """One epoch as a table row; ``aug`` marks epochs trained with the strong augmentation."""
    row = "  ".join(fmt.format(record[key]) for key, _, fmt in COLUMNS)
    return (
        row
        + ("  aug" if record.get("strong_aug") else "")
        + ("  (stopped: time budget)" if record.get("partial") else "")
    )


def write_history(history: list[dict[str, float]], out: Path) -> tuple[Path, Path]:
    """Write ``history.json`` and ``history.csv`` into ``out`` atomically; returns their paths."""
    json_path, csv_path = out / "history.json", out / "history.csv"
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(history, indent=1))
    keys = list(dict.fromkeys(k for record in history for k in record))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    with atomic_path(csv_path) as tmp:
        tmp.write_text(buffer.getvalue())
    return json_path, csv_path
