"""Migrations: idempotent, race-safe, matching the models, and never losing feedback."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cds_service.store import Store, migrator
from cds_service.store.models import metadata

from .helpers import card, overridden, record

TABLES = {
    "service_secret", "card_sent", "card_suggestion", "feedback", "alembic_version",
    "hook_call", "call_finding", "suppression_lift", "admin_audit",
}


def test_migrate_is_idempotent(make_store):
    store = make_store(migrate=False)
    assert migrator.current(store.engine) is None
    store.migrate()
    store.migrate()
    store.migrate()
    assert migrator.current(store.engine) == migrator.head()
    assert set(sa.inspect(store.engine).get_table_names()) == TABLES


def test_concurrent_migrate_from_many_workers(make_store):
    stores = [make_store(migrate=False) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def start(store: Store) -> None:
        barrier.wait()
        try:
            store.migrate()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert migrator.current(stores[0].engine) == migrator.head()


def test_migrated_schema_matches_models(store):
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def _insert_feedback_at_0001(connection: sa.Connection, n: int) -> None:
    """Rows written with the 0001 column set, independent of today's models."""
    for i in range(n):
        connection.execute(
            sa.text(
                "INSERT INTO feedback (card_uuid, card_sent_uuid, outcome, outcome_timestamp,"
                " override_reason_system, override_reason_code, override_reason_display,"
                " user_comment, accepted_suggestions, service_id, received_at) VALUES"
                " (:card, NULL, :outcome, :ts, NULL, :code, NULL, :comment, :acc, 'svc', :ts)"
            ),
            {
                "card": f"card-{i}",
                "outcome": "overridden" if i % 2 else "accepted",
                "ts": f"2026-01-{i % 28 + 1:02d} 10:00:00",
                "code": "patient-declined" if i % 2 else None,
                "comment": f"comment {i}" if i % 2 else None,
                "acc": "[]" if i % 2 else f'["sugg-{i}"]',
            },
        )


def _feedback_rows(store: Store) -> list[tuple]:
    with store.engine.connect() as connection:
        return connection.execute(
            sa.text(
                "SELECT card_uuid, outcome, override_reason_code, user_comment, service_id"
                " FROM feedback ORDER BY card_uuid"
            )
        ).all()


def test_upgrade_and_downgrade_keep_feedback(make_store):
    store = make_store(migrate=False)
    migrator.upgrade(store.engine, "0001")
    assert migrator.current(store.engine) == "0001"
    with store.engine.begin() as connection:
        _insert_feedback_at_0001(connection, 25)
    before = _feedback_rows(store)
    assert len(before) == 25

    migrator.upgrade(store.engine, "head")
    assert migrator.current(store.engine) == migrator.head() != "0001"
    assert _feedback_rows(store) == before
    assert store.stats()["feedback"] == 25

    migrator.downgrade(store.engine, "0001")
    assert migrator.current(store.engine) == "0001"
    assert _feedback_rows(store) == before

    store.migrate()
    assert _feedback_rows(store) == before


def test_store_works_after_migration_from_0001(make_store):
    store = make_store(migrate=False)
    migrator.upgrade(store.engine, "0001")
    store.migrate()
    c = card()
    record(store, "patient-1", c)
    result = store.record_feedback("sarcopenia-patient-view", [overridden(c["uuid"])], datetime.now(UTC))
    assert (result.stored, result.duplicates, result.unknown_cards) == (1, 0, [])


def _insert_at_0002(connection: sa.Connection, patient: str) -> None:
    """A card of ``patient`` with linked, unlinked and unknown-card feedback, as 0002 stored it."""
    connection.execute(
        sa.text(
            "INSERT INTO card_sent (uuid, hook_instance, service_id, hook, patient_pseudonym,"
            " pack_version, primary_finding, findings, sent_at) VALUES"
            " (:uuid, 'h', 'svc', 'patient-view', :patient, '1', 'low-smi', '[\"low-smi\"]',"
            " '2026-01-15 09:00:00')"
        ),
        [{"uuid": "card-a", "patient": patient}, {"uuid": "card-b", "patient": "other"}],
    )
    for card_uuid, linked, outcome in [
        ("card-a", "card-a", "overridden"),
        ("card-b", None, "overridden"),  # card known, left unlinked: matched by card_uuid
        ("card-x", None, "overridden"),  # a card never recorded
        ("card-a", "card-a", "accepted"),
    ]:
        connection.execute(
            sa.text(
                "INSERT INTO feedback (card_uuid, card_sent_uuid, outcome, outcome_timestamp,"
                " override_reason_code, accepted_suggestions, service_id, received_at) VALUES"
                " (:card, :linked, :outcome, '2026-01-15 09:30:00', 'patient-declined', '[]',"
                " 'svc', '2026-01-15 09:30:00')"
            ),
            {"card": card_uuid, "linked": linked, "outcome": outcome},
        )


def _patients_by_feedback(store: Store) -> list[tuple]:
    with store.engine.connect() as connection:
        return connection.execute(
            sa.text(
                "SELECT card_uuid, outcome, patient_pseudonym FROM feedback"
                " ORDER BY card_uuid, outcome"
            )
        ).all()


def test_0003_backfills_the_patient_of_stored_feedback_and_downgrades(make_store):
    store = make_store(migrate=False)
    migrator.upgrade(store.engine, "0002")
    patient = store.pseudonymise("Patient/a")  # creates the key: writes service_secret
    with store.engine.begin() as connection:
        _insert_at_0002(connection, patient)
    before = _feedback_rows(store)

    migrator.upgrade(store.engine, "0003")
    assert _patients_by_feedback(store) == [
        ("card-a", "accepted", patient),
        ("card-a", "overridden", patient),
        ("card-b", "overridden", "other"),
        ("card-x", "overridden", None),
    ]
    assert _feedback_rows(store) == before

    migrator.downgrade(store.engine, "0002")
    columns = {c["name"] for c in sa.inspect(store.engine).get_columns("feedback")}
    assert "patient_pseudonym" not in columns
    assert _feedback_rows(store) == before

    store.migrate()
    assert [row[2] for row in _patients_by_feedback(store)] == [patient, patient, "other", None]
    now = datetime(2026, 1, 16, tzinfo=UTC)
    assert store.suppressions("Patient/a", now, {}, 30, 90).findings == frozenset({"low-smi"})


@pytest.mark.parametrize("revision", ["0001", "0002", "0003", "0004"])
def test_known_revisions_exist(revision):
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrator._config())
    assert script.get_revision(revision) is not None
    assert [r.revision for r in script.walk_revisions()][-1] == "0001"
