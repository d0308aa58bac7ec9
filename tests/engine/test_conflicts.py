"""The same_day conflict check: the outcome of the pairwise scan, in work linear in the values."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from cds_service.engine import conflicts
from cds_service.engine.facts import DAY, Item

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pairwise(dated, relative, limit):
    """The check as every pair less than 24 h apart, compared one by one (the reference)."""
    found = {}
    first = 0
    for j, later in enumerate(dated):
        while later.ts - dated[first].ts >= DAY:
            first += 1
        for earlier in dated[first:j]:
            high, low = (earlier, later) if earlier.value >= later.value else (later, earlier)
            if conflicts.disagree(high.value, low.value, relative, limit):
                found.setdefault(id(earlier), (high, low))
                found.setdefault(id(later), (high, low))
    return found


def items(values_and_seconds):
    out = [Item(v, T0 + timedelta(seconds=s), f"Observation/{k}") for k, (v, s) in enumerate(values_and_seconds)]
    return sorted(out, key=lambda i: i.ts)


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("relative", [True, False])
def test_the_same_pairs_as_comparing_every_pair(seed, relative):
    rnd = random.Random(seed)
    n = rnd.choice([2, 5, 20, 60, 200])
    spread = rnd.choice([600, 3600, 86400, 5 * 86400])  # seconds the values are spread over
    values = [(round(rnd.choice([70.0, 72.0, 66.0, -1.0, 0.0, 80.0]) + rnd.uniform(-2, 2), 1),
               rnd.randrange(spread)) for _ in range(n)]
    if rnd.random() < 0.3:  # ties in time and value
        values += values[: n // 3]
    dated = items(values)
    limit = 0.05 if relative else 3.0
    expected = pairwise(dated, relative, limit)
    found = conflicts.same_day(dated, relative, limit)
    assert {k: (h.reference, lo.reference) for k, (h, lo) in found.items()} == \
        {k: (h.reference, lo.reference) for k, (h, lo) in expected.items()}


def test_values_exactly_a_day_apart_are_not_compared():
    dated = items([(70.0, 0), (90.0, 86400), (50.0, 2 * 86400 - 1)])
    found = conflicts.same_day(dated, True, 0.05)
    assert [(h.value, lo.value) for h, lo in found.values()] == [(90.0, 50.0), (90.0, 50.0)]


class Counting:
    """Counts the value comparisons the check makes."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = conflicts.disagree

        def counted(*args):
            self.calls += 1
            return original(*args)

        monkeypatch.setattr(conflicts, "disagree", counted)


def burst(n, outlier):
    """n weights a second apart (one day holds them all), one of them far off when `outlier`."""
    values = [(70.0 + (k % 5) * 0.1, k) for k in range(n)]
    if outlier:
        values[n // 2] = (50.0, n // 2)
    return items(values)


def history(n):
    """One weight a day for n days, drifting by more than the limit over the years."""
    return items([(60.0 + 20.0 * k / n + (k % 3) * 0.2, k * 86400) for k in range(n)])


@pytest.mark.parametrize("shape", ["burst", "burst with outlier", "history"])
def test_ten_times_the_values_cost_about_ten_times_the_comparisons(monkeypatch, shape):
    counts = []
    for n in (300, 3000):
        dated = history(n) if shape == "history" else burst(n, outlier=shape != "burst")
        counter = Counting(monkeypatch)
        found = conflicts.same_day(dated, True, 0.05)
        monkeypatch.undo()
        if n == 300:
            assert found == pairwise(dated, True, 0.05)
        counts.append(max(counter.calls, 1))
    # pairwise: 100x (44,850 -> 4,498,500 comparisons for a burst); linear with a log factor: < 20x
    assert counts[1] <= 20 * counts[0], counts
    assert counts[1] <= 60 * 3000, counts  # (about 45 per value with an outlier)
