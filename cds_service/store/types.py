"""Plain values the store hands back: the results of recording feedback and of a lift."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FeedbackResult:
    """What ``Store.record_feedback`` did with one POST's entries."""

    #: entries written now
    stored: int
    #: entries already present (same card uuid, outcome and outcomeTimestamp)
    duplicates: int
    #: card uuids (first-seen order, no repeats) that name no card this service recorded;
    #: their feedback is stored all the same, unlinked
    unknown_cards: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LiftResult:
    """What ``Store.lift_suppressions`` ended: the lift's id and the feedback entries it lifted."""

    lift_id: str
    entries: int
    findings: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
