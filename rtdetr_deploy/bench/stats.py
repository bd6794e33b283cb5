"""Latency statistics of a timed loop: min, mean, percentiles, spread and the throughput they imply."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["LatencyStats", "summarize"]


@dataclass(frozen=True)
class LatencyStats:
    """Distribution of per-iteration latencies, in milliseconds.

    Attributes:
        runs: timed iterations (warm-up excluded).
        batch: images per iteration.
        min_ms, mean_ms, p50_ms, p90_ms, p99_ms, max_ms: over the runs; percentiles interpolate linearly
            between the two nearest runs (numpy's default), so with few runs p99 lies close to the maximum.
        std_ms: population standard deviation.
        images_per_s: ``batch / mean`` latency, the sustained rate of back-to-back iterations (0 if every
            latency is 0).
    """

    runs: int
    batch: int
    min_ms: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    std_ms: float
    images_per_s: float

    @property
    def per_image_ms(self) -> float:
        """Mean latency divided by the batch."""
        return self.mean_ms / self.batch

    def as_dict(self) -> dict[str, float | int]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def summarize(latencies_s: Sequence[float] | np.ndarray, *, batch: int = 1) -> LatencyStats:
    """Statistics of per-iteration latencies.

    Args:
        latencies_s: one wall-clock duration per timed iteration, in seconds.
        batch: images processed per iteration.

    Raises:
        ValueError: no latencies, a negative or non-finite one, or a batch below 1.
    """
    values = np.asarray(latencies_s, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"expected a non-empty list of latencies, got shape {list(values.shape)}")
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError("latencies must be finite and non-negative")
    if batch < 1:
        raise ValueError(f"batch must be positive, got {batch}")
    ms = values * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    mean = float(ms.mean())
    return LatencyStats(
        runs=int(ms.size),
        batch=int(batch),
        min_ms=float(ms.min()),
        mean_ms=mean,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        max_ms=float(ms.max()),
        std_ms=float(ms.std()),
        images_per_s=batch * 1e3 / mean if mean > 0 else 0.0,
    )
