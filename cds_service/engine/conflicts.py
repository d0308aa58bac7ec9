"""Values of one fact that contradict each other: the `same_day` check in time linear in the values.

A value is excluded when some other value measured less than 24 hours from it differs by more than
the limit. Comparing every pair within 24 hours costs the square of a burst (an inpatient monitor
feed sends thousands of weights a day); here a value is first compared with the smallest and the
largest of the values near it, which settles most values at once, and the few that may disagree
search their window through a tree of minima and maxima. The outcome, including which pair each
excluded value is reported with, is that of the pairwise scan (facts.Run._conflicts documents it).
"""

from __future__ import annotations

from .facts import DAY, gt

#: windows holding at most this many other values are compared value by value
SCAN = 12
#: values per leaf of the tree of minima and maxima (compared value by value)
LEAF = 32


def disagree(high: float, low: float, relative: bool, limit: float) -> bool:
    """Whether two values differ by more than the limit (`high` is the larger one)."""
    spread = high - low
    if relative:
        if high <= 0:
            return False
        spread = spread / high
    return gt(spread, limit)


def _differ(x: float, y: float, relative: bool, limit: float) -> bool:
    return disagree(x, y, relative, limit) if x >= y else disagree(y, x, relative, limit)


def _may_differ(x: float, low: float, high: float, relative: bool, limit: float) -> bool:
    """Whether some value between `low` and `high` can differ from `x` by more than the limit.
    The spread, absolute or relative to the larger value, is largest at one of the two ends,
    except for a relative limit and x ≤ 0, where any positive value may be the one."""
    if _differ(x, high, relative, limit) or _differ(x, low, relative, limit):
        return True
    return relative and x <= 0 < high


def same_day(dated: list, relative: bool, limit: float) -> dict[int, tuple]:
    """id(item) -> (high, low): the first disagreeing pair of each item that has one, in the
    order of the pairwise scan (later item ascending, then earlier item ascending). `dated` is
    sorted by time (item.ts) and every item has a date."""
    n = len(dated)
    if n < 2:
        return {}
    values = [item.value for item in dated]
    low, high = min(values), max(values)
    if not disagree(high, low, relative, limit) and not (relative and low <= 0 < high):
        return {}  # no two values of the whole list differ by more than the limit
    stamps = [item.ts for item in dated]
    starts = [0] * n  # first value less than a day before
    ends = [0] * n  # one past the last value less than a day after
    first = 0
    for j, t in enumerate(stamps):
        while t - stamps[first] >= DAY:
            first += 1
        starts[j] = first
    last = 0
    for j, t in enumerate(stamps):
        if last <= j:
            last = j + 1
        while last < n and stamps[last] - t < DAY:
            last += 1
        ends[j] = last
    tree = None
    found: dict[int, tuple] = {}
    for p in range(n):
        x = values[p]
        a, b = starts[p], ends[p]
        if b - a - 1 <= SCAN:
            partner = -1
            for i in range(a, p):
                if _differ(values[i], x, relative, limit):
                    partner = i
                    break
            else:
                for i in range(p + 1, b):
                    if _differ(x, values[i], relative, limit):
                        partner = i
                        break
        else:
            if tree is None:
                tree = _Tree(values)
            partner = tree.first(a, p, x, relative, limit)
            if partner < 0:
                partner = tree.first(p + 1, b, x, relative, limit)
        if partner >= 0:
            earlier, later = (dated[partner], dated[p]) if partner < p else (dated[p], dated[partner])
            found[id(dated[p])] = (
                (earlier, later) if earlier.value >= later.value else (later, earlier)
            )
    return found


class _Tree:
    """Minimum and maximum of each run of LEAF values, and of each pair of runs above them."""

    __slots__ = ("high", "low", "size", "values")

    def __init__(self, values: list[float]) -> None:
        self.values = values
        leaves = (len(values) + LEAF - 1) // LEAF
        size = 1
        while size < leaves:
            size *= 2
        self.size = size
        low = [float("inf")] * (2 * size)
        high = [float("-inf")] * (2 * size)
        for k in range(leaves):
            run = values[k * LEAF : (k + 1) * LEAF]
            low[size + k] = min(run)
            high[size + k] = max(run)
        for node in range(size - 1, 0, -1):
            low[node] = min(low[2 * node], low[2 * node + 1])
            high[node] = max(high[2 * node], high[2 * node + 1])
        self.low, self.high = low, high

    def first(self, a: int, b: int, x: float, relative: bool, limit: float) -> int:
        """The first position in [a, b) whose value differs from x by more than the limit, or -1."""
        if a >= b:
            return -1
        return self._first(1, 0, self.size * LEAF, a, b, x, relative, limit)

    def _first(self, node, start, stop, a, b, x, relative, limit) -> int:
        if stop <= a or b <= start:
            return -1
        if not _may_differ(x, self.low[node], self.high[node], relative, limit):
            return -1
        if node >= self.size:  # a leaf: its values one by one
            values = self.values
            for i in range(max(a, start), min(b, stop)):
                if _differ(x, values[i], relative, limit):
                    return i
            return -1
        middle = (start + stop) // 2
        found = self._first(2 * node, start, middle, a, b, x, relative, limit)
        if found >= 0:
            return found
        return self._first(2 * node + 1, middle, stop, a, b, x, relative, limit)
