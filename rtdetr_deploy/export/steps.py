"""The export's step timer: each step printed as it finishes, with its duration, kept for the report."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Steps"]


class Steps:
    """Prints each step as it finishes, with its duration; keeps the durations for the report."""

    def __init__(self, *, verbose: bool) -> None:
        self.verbose = verbose
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, detail: str = "") -> Iterator[dict[str, str]]:
        note = {"detail": detail}
        if self.verbose and sys.stdout.isatty():
            print(f"  {name:<9} ...", end="\r", flush=True)
        start = time.perf_counter()
        yield note
        self.timings[name] = time.perf_counter() - start
        if self.verbose:
            print(f"  {name:<9} {self.timings[name]:6.1f} s  {note['detail']}", flush=True)
