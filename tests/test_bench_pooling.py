"""The load benchmark pools the latency distributions of the slices a run is cut into."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_service import pooled  # noqa: E402


def slice_of(requests: int, seconds: float, latency_us: float, cpu_s: float = 0.0) -> dict:
    """A slice whose every request took `latency_us`."""
    return {"requests": requests, "errors": 0, "seconds": seconds, "quantiles_us": [latency_us] * 1000,
            "cpu_s": cpu_s, "ticks": 100, "stolen": 5}


def test_percentiles_weigh_each_slice_by_the_requests_it_served():
    # 98 fast requests in one slice, 2 slow ones in another: p50 is fast, p99 slow
    result = pooled([slice_of(98, 1.0, 1000), slice_of(2, 1.0, 30000)])
    assert result["p50_ms"] == 1.0
    assert result["p99_ms"] == 30.0
    assert result["requests"] == 100


def test_a_slow_slice_below_the_tail_does_not_move_p99():
    # 995 requests at 2 ms and 5 at 9 ms: the 990th request is still a 2 ms one
    result = pooled([slice_of(995, 3.0, 2000), slice_of(5, 2.0, 9000)])
    assert result["p99_ms"] == 2.0


def test_rate_cpu_and_steal_are_totals_over_all_slices():
    result = pooled([slice_of(300, 1.0, 1000, cpu_s=0.6), slice_of(100, 1.0, 1000, cpu_s=0.2)])
    assert result["rps"] == 200.0
    assert result["cpu_ms"] == 2.0  # 0.8 s over 400 requests
    assert result["steal"] == 5.0
