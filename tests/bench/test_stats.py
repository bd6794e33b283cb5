"""Latency statistics on known arrays: percentiles, spread, throughput, and refused input."""

from __future__ import annotations

import numpy as np
import pytest

from rtdetr_deploy.bench.stats import summarize


def test_percentiles_mean_std_and_throughput_of_a_known_ramp() -> None:
    latencies_s = np.arange(1, 101) / 1e3  # 1 .. 100 ms
    stats = summarize(latencies_s, batch=4)
    assert stats.runs == 100 and stats.batch == 4
    assert stats.min_ms == pytest.approx(1.0) and stats.max_ms == pytest.approx(100.0)
    assert stats.mean_ms == pytest.approx(50.5)
    # Linear interpolation between order statistics: rank q/100 * (n - 1).
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.std_ms == pytest.approx(np.sqrt((100**2 - 1) / 12))  # population std of 1..n
    assert stats.images_per_s == pytest.approx(4 * 1000 / 50.5)
    assert stats.per_image_ms == pytest.approx(50.5 / 4)


def test_constant_latency_has_no_spread() -> None:
    stats = summarize([0.02] * 7)
    assert stats.p50_ms == stats.p99_ms == stats.min_ms == pytest.approx(20.0)
    assert stats.std_ms == pytest.approx(0.0)
    assert stats.images_per_s == pytest.approx(50.0)


def test_single_run_and_outlier() -> None:
    assert summarize([0.5]).p99_ms == pytest.approx(500.0)
    stats = summarize([0.01] * 99 + [1.0])
    assert stats.p50_ms == pytest.approx(10.0)
    assert stats.p99_ms == pytest.approx(10.0 + 0.01 * 990.0)  # one step of the interpolation towards the outlier
    assert stats.max_ms == pytest.approx(1000.0)


def test_as_dict_is_json_ready() -> None:
    data = summarize([0.001, 0.002]).as_dict()
    assert set(data) == {
        "runs",
        "batch",
        "min_ms",
        "mean_ms",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "max_ms",
        "std_ms",
        "images_per_s",
    }
    assert all(isinstance(v, int | float) for v in data.values())


@pytest.mark.parametrize(
    ("latencies", "batch", "message"),
    [
        ([], 1, "non-empty"),
        ([[0.1, 0.2]], 1, "non-empty"),
        ([0.1, -0.1], 1, "non-negative"),
        ([0.1, float("nan")], 1, "finite"),
        ([0.1], 0, "batch"),
    ],
)
def test_bad_input_is_refused(latencies: list, batch: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        summarize(latencies, batch=batch)
