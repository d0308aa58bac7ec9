"""The store's tables as SQLAlchemy Core metadata: the shape the newest migration produces.

Migrations under ``migrations/versions`` are written by hand and never import this module, so
a migration keeps meaning what it meant when it was written. ``tests/store`` checks that the
migrated database and this metadata agree.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

#: constraint names that are the same on every database, so migrations can refer to them
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware instant, stored in UTC and always read back as an aware UTC datetime.

    PostgreSQL stores ``timestamptz``; SQLite stores the naive UTC wall time. Naive datetimes
    are refused: a timestamp whose zone is unknown is a bug in the caller.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given to the store; pass a timezone-aware one")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: an autoincrementing 64-bit key (plain INTEGER on SQLite, where only that autoincrements)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

service_secret = sa.Table(
    "service_secret",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

#: one row per answered hook call (0004): what the rules did, without patient data beyond the
#: pseudonym; ``detail`` holds names and codes only (rules fired, unknown facts, suppressions)
hook_call = sa.Table(
    "hook_call",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("hook_instance", sa.String, nullable=False),
    sa.Column("called_at", UTCDateTime, nullable=False),
    sa.Column("service_id", sa.String, nullable=False),
    sa.Column("hook", sa.String, nullable=False),
    sa.Column("issuer", sa.String, nullable=True),
    sa.Column("tenant", sa.String, nullable=True),
    sa.Column("patient_pseudonym", sa.String(64), nullable=True),
    sa.Column("pack_version", sa.String, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    # null for calls recorded before 0004 (only their cards were stored)
    sa.Column("duration_ms", sa.Float, nullable=True),
    sa.Column("cards", sa.Integer, nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    # for the report: the UTC month (YYYY-MM) and the duration in whole tenths of a ms, so that
    # its GROUP BY streams over this index in order, reading no row and sorting nothing
    sa.Column("month", sa.String(7), nullable=False),
    sa.Column("duration_tenths", sa.Integer, nullable=True),
    sa.Index("ix_hook_call_report", "month", "pack_version", "duration_tenths", "status", "called_at"),
    sa.Index(None, "hook_instance"),
)

#: the findings of a call that were made but hidden by earlier feedback ("suppressed"), or could
#: not be decided because data was unavailable ("undetermined", with the missing resource types)
call_finding = sa.Table(
    "call_finding",
    metadata,
    sa.Column(
        "call_id", sa.String, sa.ForeignKey("hook_call.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("finding", sa.String, primary_key=True),
    sa.Column("state", sa.String(16), primary_key=True),
    sa.Column("missing", sa.String, nullable=True),
)

card_sent = sa.Table(
    "card_sent",
    metadata,
    sa.Column("uuid", sa.String, primary_key=True),
    sa.Column("hook_instance", sa.String, nullable=False),
    sa.Column("service_id", sa.String, nullable=False),
    sa.Column("hook", sa.String, nullable=False),
    sa.Column("patient_pseudonym", sa.String(64), nullable=False),
    sa.Column("pack_version", sa.String, nullable=False),
    sa.Column("primary_finding", sa.String, nullable=False),
    sa.Column("findings", sa.JSON, nullable=False),
    sa.Column("sent_at", UTCDateTime, nullable=False),
    # 0004: the call that sent it, and who called (null: recorded before scoping existed)
    sa.Column("call_id", sa.String, nullable=True),
    sa.Column("issuer", sa.String, nullable=True),
    sa.Column("tenant", sa.String, nullable=True),
    sa.Index(None, "patient_pseudonym"),
    # for the report, as hook_call.month: its GROUP BY streams over this index
    sa.Column("month", sa.String(7), nullable=True),
    sa.Index("ix_card_sent_report", "month", "pack_version", "primary_finding", "sent_at"),
)

card_suggestion = sa.Table(
    "card_suggestion",
    metadata,
    sa.Column("uuid", sa.String, primary_key=True),
    sa.Column(
        "card_uuid",
        sa.String,
        sa.ForeignKey("card_sent.uuid", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("key", sa.String, nullable=False),
    sa.Index(None, "card_uuid"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # the card uuid exactly as the EHR sent it, known to us or not
    sa.Column("card_uuid", sa.String, nullable=False),
    # the same uuid when it names a card we recorded (null for unknown cards)
    sa.Column(
        "card_sent_uuid",
        sa.String,
        sa.ForeignKey("card_sent.uuid", ondelete="SET NULL"),
        nullable=True,
    ),
    # that card's patient, copied when the feedback is linked, so suppressions read a
    # patient's feedback without visiting every card ever sent to them (null while unlinked)
    sa.Column("patient_pseudonym", sa.String(64), nullable=True),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("outcome_timestamp", UTCDateTime, nullable=False),
    sa.Column("override_reason_system", sa.String, nullable=True),
    sa.Column("override_reason_code", sa.String, nullable=True),
    sa.Column("override_reason_display", sa.Text, nullable=True),
    # free text from the clinician: may hold PHI, never logged
    sa.Column("user_comment", sa.Text, nullable=True),
    sa.Column("accepted_suggestions", sa.JSON, nullable=False),
    sa.Column("service_id", sa.String, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    # 0004: who posted it ('' without an authenticated issuer; null: posted before 0004)
    sa.Column("issuer", sa.String, nullable=True),
    sa.Column("tenant", sa.String, nullable=True),
    # the lift that ended the suppression this entry caused (null: not lifted)
    sa.Column("lift_id", sa.String(64), nullable=True),
    sa.UniqueConstraint(
        "card_uuid", "outcome", "outcome_timestamp", "service_id", "issuer", "tenant",
        name="uq_feedback_entry_per_caller",
    ),
    sa.Index(None, "card_sent_uuid"),
    sa.Index(None, "patient_pseudonym", "outcome", "outcome_timestamp"),
)


#: an operator's lift of a patient's suppressions (0004): who, when, why; the feedback it ended
#: points back at it through ``feedback.lift_id``
suppression_lift = sa.Table(
    "suppression_lift",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("patient_pseudonym", sa.String(64), nullable=False),
    sa.Column("finding", sa.String, nullable=True),
    sa.Column("lifted_at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("entries", sa.Integer, nullable=False),
    sa.Index(None, "patient_pseudonym"),
)

#: every admin action (0004): who did what and when, never patient data
admin_audit = sa.Table(
    "admin_audit",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index(None, "at"),
)
