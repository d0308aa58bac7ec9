"""Alarms for a finding whose card rate changed abruptly or fell to zero after a pack change.

Method: the cards of a finding are counted events, the hook calls the exposure; two periods
(two consecutive months under one pack version, or the whole period of a pack version and of
the one that replaced it) are compared with the conditional test for two Poisson rates: given
``k = k1 + k2`` cards in all, ``k2`` follows Binomial(``k``, ``n2 / (n1 + n2)``) when the rate
did not change (Przyborowski J, Wilenski H. Homogeneity of results in testing samples from
Poisson series. Biometrika 1940;31:313-323; the "C-test" of Krishnamoorthy K, Thomson J. J Stat
Plan Inference 2004;119:23-35). The exact binomial tail is used up to 2,000 cards, the normal
approximation with continuity correction beyond. An alarm is raised at p < ``ALPHA``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: the significance level of one comparison (strict, since a report makes many comparisons)
ALPHA = 0.001
_EXACT_LIMIT = 2000


@dataclass(frozen=True)
class Alarm:
    """One finding whose rate moved more than chance explains."""

    finding: str
    kind: str  # "stopped-after-pack-change" | "changed-after-pack-change" | "changed-abruptly"
    before: dict
    after: dict
    p_value: float
    message: str

    def as_dict(self) -> dict:
        return {"finding": self.finding, "kind": self.kind, "before": self.before, "after": self.after,
                "p_value": self.p_value, "message": self.message}


def _log_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p))


def binomial_tails(k: int, n: int, p: float) -> tuple[float, float]:
    """(P(X <= k), P(X >= k)) for X ~ Binomial(n, p)."""
    if n > _EXACT_LIMIT and 0.0 < p < 1.0:
        mean, sd = n * p, math.sqrt(n * p * (1 - p))
        def phi(z: float) -> float:
            return 0.5 * math.erfc(-z / math.sqrt(2))
        return phi((k + 0.5 - mean) / sd), 1.0 - phi((k - 0.5 - mean) / sd)
    pmf = [math.exp(_log_pmf(i, n, p)) for i in range(n + 1)]
    return min(1.0, sum(pmf[: k + 1])), min(1.0, sum(pmf[k:]))


def rate_test(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """(two-sided p, one-sided p for a fall) that the card rate k2/n2 equals k1/n1."""
    k = k1 + k2
    if k == 0 or n1 == 0 or n2 == 0:
        return 1.0, 1.0
    lower, upper = binomial_tails(k2, k, n2 / (n1 + n2))
    return min(1.0, 2 * min(lower, upper)), lower


def compare(finding: str, kind_prefix: str, before: dict, after: dict) -> Alarm | None:
    """An alarm when ``after`` (cards, calls) differs from ``before`` at p < ALPHA."""
    k1, n1, k2, n2 = before["cards"], before["calls"], after["cards"], after["calls"]
    two_sided, fall = rate_test(k1, n1, k2, n2)
    rate = lambda k, n: 1000 * k / n if n else 0.0  # noqa: E731 - one-line helper
    if kind_prefix == "pack" and k1 > 0 and k2 == 0 and fall < ALPHA:
        return Alarm(finding, "stopped-after-pack-change", before, after, fall,
                     f"{finding}: {k1} cards in {n1} calls ({rate(k1, n1):.1f} per 1,000) under "
                     f"{before['pack_version']}, none in {n2} calls under {after['pack_version']} "
                     f"(p = {fall:.2g}): check the rule after the pack change")
    if two_sided < ALPHA:
        kind = "changed-after-pack-change" if kind_prefix == "pack" else "changed-abruptly"
        where = (f"under {before['pack_version']} and {after['pack_version']}" if kind_prefix == "pack"
                 else f"from {before['month']} to {after['month']} under {after['pack_version']}")
        return Alarm(finding, kind, before, after, two_sided,
                     f"{finding}: {rate(k1, n1):.1f} -> {rate(k2, n2):.1f} cards per 1,000 calls {where} "
                     f"(p = {two_sided:.2g})")
    return None
