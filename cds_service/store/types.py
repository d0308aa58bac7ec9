"""Plain values the store hands back: the suppression set and the result of recording feedback."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Suppression:
    """What not to show again for one patient: finding codes and suggestion keys.

    The engine defines a class of the same name and shape; the store returns the engine's
    when it exists (see ``cds_service.store.make_suppression``) and this one otherwise.
    """

    findings: frozenset[str] = frozenset()
    suggestions: frozenset[str] = frozenset()


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
