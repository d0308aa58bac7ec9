"""Storage: cards sent, CDS Hooks feedback, patient pseudonyms and the suppressions they imply.

``Store`` is the whole API; the schema is migrated by Alembic from scripts inside this package.
"""

from __future__ import annotations

from cds_service.store.repository import Store, make_suppression, parse_timestamp
from cds_service.store.types import FeedbackResult

try:  # the engine owns the name when it exists; the store's shape is the same
    from cds_service.engine import Suppression  # type: ignore[attr-defined]
except ImportError:
    from cds_service.store.types import Suppression

__all__ = ["FeedbackResult", "Store", "Suppression", "make_suppression", "parse_timestamp"]
