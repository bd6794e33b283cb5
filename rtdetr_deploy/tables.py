"""Markdown tables, as the reports of ``rtdetr-bench`` and ``rtdetr-eval`` and the README's figures print them."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["markdown_table"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a GitHub markdown table: the header, the separator, one line per row (cells already text).

    Raises:
        ValueError: a row whose length differs from the header's.
    """
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"table row has {len(row)} cells for {len(header)} columns: {list(row)}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
