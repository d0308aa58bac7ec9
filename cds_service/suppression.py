"""What to hold back for one patient: a plain value the store produces and the engine consumes.

It lives outside both rooms so that neither imports the other: the store builds it from stored
feedback, the engine reads ``findings`` and ``suggestions`` and nothing else, and the record of
a call keeps ``reasons`` so that ``explain`` and the report can say why a card was hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class SuppressionReason:
    """One stored feedback entry that hides a finding (or suggestion key) until ``until``."""

    #: a finding code, or a suggestion key when ``kind`` is "suggestion"
    target: str
    kind: str  # "finding" (an override with a reason) or "suggestion" (an accepted suggestion)
    card: str  # the card uuid the feedback was about
    feedback_id: int
    reason: str | None  # the override reason code (None for an acceptance or a display-only reason)
    since: datetime
    until: datetime
    service: str = ""  # the service the card was sent by

    def as_record(self) -> dict[str, str | int | None]:
        """JSON-ready, for the call record (no patient data: ids of our own rows and codes)."""
        return {
            "target": self.target, "kind": self.kind, "card": self.card, "feedback": self.feedback_id,
            "reason": self.reason, "since": self.since.isoformat(), "until": self.until.isoformat(),
            "service": self.service,
        }


@dataclass(frozen=True)
class Suppression:
    """Finding codes and suggestion keys to hide (alert-fatigue control), and why."""

    findings: frozenset[str] = frozenset()
    suggestions: frozenset[str] = frozenset()
    reasons: tuple[SuppressionReason, ...] = ()


NONE = Suppression()
