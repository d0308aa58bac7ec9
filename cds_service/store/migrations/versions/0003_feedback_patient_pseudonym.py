"""Feedback carries its card's patient pseudonym, so suppressions read only that patient's feedback.

The suppression query used to find a patient's feedback through ``card_sent``, visiting every
card ever sent to the patient; its cost grew with each hook call. With the pseudonym on the
feedback row and an index on (patient, outcome, time), it visits that patient's feedback only.
The column is filled whenever feedback is linked to a card we recorded; feedback about unknown
cards keeps NULL until its card arrives.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INDEX = "ix_feedback_patient_pseudonym_outcome_outcome_timestamp"


def upgrade() -> None:
    op.add_column("feedback", sa.Column("patient_pseudonym", sa.String(64), nullable=True))
    # the old query matched feedback to cards by card_uuid (linked or not): backfill the same way
    op.execute(
        "UPDATE feedback SET patient_pseudonym = ("
        " SELECT card_sent.patient_pseudonym FROM card_sent"
        " WHERE card_sent.uuid = feedback.card_uuid)"
        " WHERE EXISTS (SELECT 1 FROM card_sent WHERE card_sent.uuid = feedback.card_uuid)"
    )
    op.create_index(INDEX, "feedback", ["patient_pseudonym", "outcome", "outcome_timestamp"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="feedback")
    op.drop_column("feedback", "patient_pseudonym")
