"""Initial schema: service secret, cards sent, their suggestions, and feedback.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "service_secret",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_service_secret"),
    )
    op.create_table(
        "card_sent",
        sa.Column("uuid", sa.String, nullable=False),
        sa.Column("hook_instance", sa.String, nullable=False),
        sa.Column("service_id", sa.String, nullable=False),
        sa.Column("hook", sa.String, nullable=False),
        sa.Column("patient_pseudonym", sa.String(64), nullable=False),
        sa.Column("pack_version", sa.String, nullable=False),
        sa.Column("primary_finding", sa.String, nullable=False),
        sa.Column("findings", sa.JSON, nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("uuid", name="pk_card_sent"),
    )
    op.create_table(
        "card_suggestion",
        sa.Column("uuid", sa.String, nullable=False),
        sa.Column("card_uuid", sa.String, nullable=False),
        sa.Column("key", sa.String, nullable=False),
        sa.PrimaryKeyConstraint("uuid", name="pk_card_suggestion"),
        sa.ForeignKeyConstraint(
            ["card_uuid"],
            ["card_sent.uuid"],
            name="fk_card_suggestion_card_uuid_card_sent",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "feedback",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("card_uuid", sa.String, nullable=False),
        sa.Column("card_sent_uuid", sa.String, nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("outcome_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("override_reason_system", sa.String, nullable=True),
        sa.Column("override_reason_code", sa.String, nullable=True),
        sa.Column("override_reason_display", sa.Text, nullable=True),
        sa.Column("user_comment", sa.Text, nullable=True),
        sa.Column("accepted_suggestions", sa.JSON, nullable=False),
        sa.Column("service_id", sa.String, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.ForeignKeyConstraint(
            ["card_sent_uuid"],
            ["card_sent.uuid"],
            name="fk_feedback_card_sent_uuid_card_sent",
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint(
            "card_uuid",
            "outcome",
            "outcome_timestamp",
            name="uq_feedback_card_uuid_outcome_outcome_timestamp",
        ),
    )


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("card_suggestion")
    op.drop_table("card_sent")
    op.drop_table("service_secret")
