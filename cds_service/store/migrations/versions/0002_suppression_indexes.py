"""Indexes for the suppression query: cards by patient pseudonym, suggestions and feedback by card.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_card_sent_patient_pseudonym", "card_sent", ["patient_pseudonym"])
    op.create_index("ix_card_suggestion_card_uuid", "card_suggestion", ["card_uuid"])
    op.create_index("ix_feedback_card_sent_uuid", "feedback", ["card_sent_uuid"])


def downgrade() -> None:
    op.drop_index("ix_feedback_card_sent_uuid", table_name="feedback")
    op.drop_index("ix_card_suggestion_card_uuid", table_name="card_suggestion")
    op.drop_index("ix_card_sent_patient_pseudonym", table_name="card_sent")
