"""The per-call statements run on the driver's cursor (cds_service.store.compiled): what they
store and read back is what SQLAlchemy would have stored and read, on both databases, and a
failure still leaves as SQLAlchemy's DBAPIError with nothing written."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from cds_service.store.compiled import compile_for
from cds_service.store.models import card_sent, feedback

from .helpers import T0, accepted, card, count, overridden, record

SENT = datetime(2026, 3, 29, 3, 15, 7, 123456, tzinfo=timezone(timedelta(hours=2)))


def _stored(store, uuid: str) -> tuple:
    """sent_at and findings of a card as the database holds them, read without type processing."""
    sql = "SELECT sent_at, findings FROM card_sent WHERE uuid = :uuid"
    with store.engine.connect() as connection:
        return tuple(connection.execute(sa.text(sql), {"uuid": uuid}).one())


def test_card_stored_exactly_as_sqlalchemy_stores_it(store):
    fast = card("low-smi", ["low-smi", "low-grip-strength"])
    record(store, "p1", fast, sent_at=SENT)
    reference = {**fast, "uuid": "reference"}
    with store.engine.begin() as connection:
        connection.execute(
            card_sent.insert(),
            {
                "uuid": reference["uuid"],
                "hook_instance": "h",
                "service_id": "s",
                "hook": "patient-view",
                "patient_pseudonym": store.pseudonymise("p1"),
                "pack_version": "1",
                "primary_finding": "low-smi",
                "findings": ["low-smi", "low-grip-strength"],
                "sent_at": SENT,
            },
        )
    assert _stored(store, fast["uuid"]) == _stored(store, "reference")
    with store.engine.connect() as connection:
        row = connection.execute(
            sa.select(card_sent.c.sent_at, card_sent.c.findings).where(
                card_sent.c.uuid == fast["uuid"]
            )
        ).one()
    assert row.sent_at == SENT and row.sent_at.utcoffset() == timedelta(0)
    assert row.findings == ["low-smi", "low-grip-strength"]


def test_suppression_reads_timestamps_and_json_back(store):
    a = card("low-smi", ["low-smi", "slow-gait"], {"s1": "dietitian-referral"})
    b = card("low-grip-strength", ["low-grip-strength", "weight-loss"])
    record(store, "p1", a, b)
    at = T0.astimezone(timezone(timedelta(hours=-5)))
    store.record_feedback("sarcopenia-patient-view", [overridden(b["uuid"], at=at), accepted(a["uuid"], "s1")], T0)
    # the override ends 10 days after T0: the comparison needs an aware UTC timestamp back
    inside = store.suppressions("p1", T0 + timedelta(days=10) - timedelta(microseconds=1),
                                {"patient-declined": 10}, 30, 90)
    assert inside.findings == {"low-grip-strength", "weight-loss"}
    assert inside.suggestions == {"dietitian-referral"}
    after = store.suppressions("p1", T0 + timedelta(days=10), {"patient-declined": 10}, 30, 90)
    assert after.findings == frozenset()


def test_failed_write_raises_dbapi_error_and_writes_nothing(store):
    record(store, "p1", card())
    with store.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE card_suggestion")
    with pytest.raises(sa.exc.DBAPIError) as raised:
        record(store, "p1", card(suggestions={"s1": "pt-referral"}))
    assert "pt-referral" not in str(raised.value)
    assert count(store, "card_sent") == 1
    record(store, "p1", card())  # the connection went back to the pool usable
    assert count(store, "card_sent") == 2


def test_cursor_events_still_see_the_statements(store):
    store.pseudonymise("p1")  # the key is written on first use: not part of this check
    seen: list[str] = []

    def capture(_conn, _cursor, statement, _parameters, _context, _executemany):
        seen.append(statement.split()[0].upper())

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        record(store, "p1", card(suggestions={"s1": "pt-referral"}))
        store.suppressions("p1", T0, {}, 30, 90)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)
    assert seen.count("INSERT") == 3 and "UPDATE" in seen and "SELECT" in seen  # call, card, suggestion


def test_compiled_statement_carries_its_literals(store):
    statement = sa.select(feedback.c.id).where(feedback.c.outcome == "accepted")
    compiled = compile_for(statement, store.engine.dialect)
    assert list(compiled.literals.values()) == ["accepted"]
    assert compiled.rows([(1,)]) == [(1,)]


def test_naive_sent_at_is_still_refused(store):
    with pytest.raises(ValueError):
        record(store, "p1", card(), sent_at=datetime(2026, 1, 1))  # noqa: DTZ001
    assert count(store, "card_sent") == 0


def test_write_on_a_connection_the_server_dropped_is_retried(make_store, backend, caplog):
    if backend != "postgres":
        pytest.skip("a SQLite file has no server to drop the connection")
    # one pooled connection and no ping: the next write is sure to meet the dropped one
    store = make_store(engine_options={"pool_pre_ping": False, "pool_size": 1, "max_overflow": 0})
    record(store, "p1", card())
    with store.engine.connect() as connection:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    killer = sa.create_engine(store.engine.url, poolclass=sa.pool.NullPool)
    with killer.begin() as connection:
        connection.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
    killer.dispose()
    record(store, "p1", card())
    assert count(store, "card_sent") == 2
    assert "retried after lost connection" in caplog.text
