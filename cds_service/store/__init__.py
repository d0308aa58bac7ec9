"""Storage: hook calls and cards sent, CDS Hooks feedback, patient pseudonyms, the suppressions
they imply, lifts and the admin audit.

``Store`` is the whole API; the schema is migrated by Alembic from scripts inside this package.
The store imports nothing from the engine: the suppression it produces is the neutral value
``cds_service.suppression.Suppression``, which the engine consumes.
"""

from __future__ import annotations

from cds_service.store.repository import (
    FeedbackRejected,
    Store,
    make_suppression,
    parse_timestamp,
)
from cds_service.store.types import FeedbackResult, LiftResult
from cds_service.suppression import Suppression

__all__ = [
    "FeedbackRejected",
    "FeedbackResult",
    "LiftResult",
    "Store",
    "Suppression",
    "make_suppression",
    "parse_timestamp",
]
