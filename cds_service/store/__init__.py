"""Storage: cards sent, CDS Hooks feedback, patient pseudonyms and the suppressions they imply.

``Store`` is the whole API; the schema is migrated by Alembic from scripts inside this package.
"""

from __future__ import annotations

from cds_service.store.repository import (
    Store,
    _suppression_class,
    make_suppression,
    parse_timestamp,
)
from cds_service.store.types import FeedbackResult

#: the engine's Suppression when the engine defines one (same shape), else the store's own
Suppression = _suppression_class()

__all__ = ["FeedbackResult", "Store", "Suppression", "make_suppression", "parse_timestamp"]
