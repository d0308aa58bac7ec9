"""Governance: a record of every hook call, scoping by issuer, suppression lifts, admin audit.

- ``hook_call``: one row per answered call (rules fired, facts unknown for missing data,
  suppressions applied, hook, service, pack version, status, timing), linked to its cards by
  ``card_sent.call_id``; ``call_finding`` lists the findings a call hid or could not decide.
  Calls stored before this revision were recorded only through their cards: each distinct
  (hookInstance, service) of ``card_sent`` becomes one call (status 200, no timing, its cards),
  so the report keeps counting them and nothing stored is lost.
- ``card_sent`` and ``feedback`` get ``issuer`` and ``tenant`` (null for rows stored before:
  their caller is unknown, so they keep applying to every caller, as they did).
- ``feedback.lift_id`` and ``suppression_lift``: an operator's audited lift of a suppression.
- ``admin_audit``: every admin action, without patient data.
- feedback's unique key gains service, issuer and tenant.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Instant = sa.DateTime(timezone=True)
UNIQUE = "uq_feedback_entry_per_caller"


def upgrade() -> None:
    op.create_table(
        "hook_call",
        sa.Column("id", sa.String, nullable=False),
        sa.Column("hook_instance", sa.String, nullable=False),
        sa.Column("called_at", Instant, nullable=False),
        sa.Column("service_id", sa.String, nullable=False),
        sa.Column("hook", sa.String, nullable=False),
        sa.Column("issuer", sa.String, nullable=True),
        sa.Column("tenant", sa.String, nullable=True),
        sa.Column("patient_pseudonym", sa.String(64), nullable=True),
        sa.Column("pack_version", sa.String, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=True),
        sa.Column("cards", sa.Integer, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("duration_tenths", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_hook_call"),
    )
    op.create_index(
        "ix_hook_call_report", "hook_call", ["month", "pack_version", "duration_tenths", "status", "called_at"]
    )
    op.create_index("ix_hook_call_hook_instance", "hook_call", ["hook_instance"])
    op.create_table(
        "call_finding",
        sa.Column("call_id", sa.String, nullable=False),
        sa.Column("finding", sa.String, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("missing", sa.String, nullable=True),
        sa.PrimaryKeyConstraint("call_id", "finding", "state", name="pk_call_finding"),
        sa.ForeignKeyConstraint(
            ["call_id"], ["hook_call.id"], name="fk_call_finding_call_id_hook_call", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "suppression_lift",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("patient_pseudonym", sa.String(64), nullable=False),
        sa.Column("finding", sa.String, nullable=True),
        sa.Column("lifted_at", Instant, nullable=False),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_suppression_lift"),
    )
    op.create_index(
        "ix_suppression_lift_patient_pseudonym", "suppression_lift", ["patient_pseudonym"]
    )
    op.create_table(
        "admin_audit",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("at", Instant, nullable=False),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admin_audit"),
    )
    op.create_index("ix_admin_audit_at", "admin_audit", ["at"])
    for column in ("call_id", "issuer", "tenant"):
        op.add_column("card_sent", sa.Column(column, sa.String, nullable=True))
    op.add_column("card_sent", sa.Column("month", sa.String(7), nullable=True))
    month = (
        "to_char(sent_at AT TIME ZONE 'UTC', 'YYYY-MM')" if op.get_bind().dialect.name == "postgresql"
        else "substr(sent_at, 1, 7)"  # SQLite holds the naive UTC time as text
    )
    op.execute(f"UPDATE card_sent SET month = {month}")
    op.create_index(
        "ix_card_sent_report", "card_sent", ["month", "pack_version", "primary_finding", "sent_at"]
    )
    op.add_column("feedback", sa.Column("issuer", sa.String, nullable=True))
    op.add_column("feedback", sa.Column("tenant", sa.String, nullable=True))
    op.add_column("feedback", sa.Column("lift_id", sa.String(64), nullable=True))
    # an entry is the same entry only from the same caller to the same service: another caller
    # (or service) naming the card cannot pre-empt the real feedback as a "duplicate"
    with op.batch_alter_table("feedback") as batch:
        batch.drop_constraint("uq_feedback_card_uuid_outcome_outcome_timestamp", type_="unique")
        batch.create_unique_constraint(
            UNIQUE, ["card_uuid", "outcome", "outcome_timestamp", "service_id", "issuer", "tenant"]
        )
    # the calls behind the cards already stored: one per (hookInstance, service)
    op.execute(
        "INSERT INTO hook_call (id, hook_instance, called_at, service_id, hook, patient_pseudonym,"
        " pack_version, status, duration_ms, cards, detail, month)"
        " SELECT 'legacy:' || service_id || ':' || hook_instance, hook_instance, min(sent_at),"
        " service_id, min(hook), min(patient_pseudonym), min(pack_version), 200, NULL, count(*),"
        " '{\"recorded\": \"before 0004: cards only\"}', min(month)"
        " FROM card_sent GROUP BY service_id, hook_instance"
    )
    op.execute("UPDATE card_sent SET call_id = 'legacy:' || service_id || ':' || hook_instance")


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_constraint(UNIQUE, type_="unique")
        batch.create_unique_constraint(
            "uq_feedback_card_uuid_outcome_outcome_timestamp", ["card_uuid", "outcome", "outcome_timestamp"]
        )
    op.drop_column("feedback", "lift_id")
    op.drop_column("feedback", "tenant")
    op.drop_column("feedback", "issuer")
    op.drop_index("ix_card_sent_report", table_name="card_sent")
    for column in ("month", "tenant", "issuer", "call_id"):
        op.drop_column("card_sent", column)
    op.drop_index("ix_admin_audit_at", table_name="admin_audit")
    op.drop_table("admin_audit")
    op.drop_index("ix_suppression_lift_patient_pseudonym", table_name="suppression_lift")
    op.drop_table("suppression_lift")
    op.drop_table("call_finding")
    op.drop_index("ix_hook_call_hook_instance", table_name="hook_call")
    op.drop_index("ix_hook_call_report", table_name="hook_call")
    op.drop_table("hook_call")
