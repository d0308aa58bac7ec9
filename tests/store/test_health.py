"""ping for /readyz, stats for metrics, dispose at shutdown."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from cds_service.store import Store

from .helpers import accepted, card, overridden, record


def test_ping_true(store):
    assert store.ping() is True


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:1/x",
        "sqlite:////nonexistent-dir-for-store-tests/sub/x.db",
    ],
    ids=["pg-closed-port", "sqlite-bad-path"],
)
def test_ping_false_when_unreachable(url):
    store = Store(url, "k" * 32)
    started = time.monotonic()
    try:
        assert store.ping() is False
    finally:
        store.dispose()
    assert time.monotonic() - started < 2


def test_stats(store):
    c = card(suggestions={"s1": "dietitian-referral"})
    record(store, "p1", c, card())
    store.record_feedback(
        "sarcopenia-patient-view",
        [overridden(c["uuid"]), accepted(c["uuid"], "s1"), overridden("unknown")],
        datetime.now(UTC),
    )
    stats = store.stats()
    assert stats["cards"] == 2
    assert stats["suggestions"] == 1
    assert stats["feedback"] == 3
    assert stats["feedback_by_outcome"] == {"accepted": 1, "overridden": 2}
    assert stats["feedback_unknown_card"] == 1


def test_stats_empty(store):
    assert store.stats() == {
        "cards": 0,
        "suggestions": 0,
        "feedback": 0,
        "feedback_by_outcome": {"accepted": 0, "overridden": 0},
        "feedback_unknown_card": 0,
    }


def test_dispose_then_use_again(store):
    store.dispose()
    assert store.ping() is True


def test_in_memory_sqlite_shared_across_threads():
    import threading

    store = Store("sqlite://")
    try:
        store.migrate()
        c = card()
        record(store, "p1", c)
        results = []
        t = threading.Thread(
            target=lambda: results.append(
                store.record_feedback("sarcopenia-patient-view", [overridden(c["uuid"])], datetime.now(UTC))
            )
        )
        t.start()
        t.join()
        assert results[0].stored == 1 and results[0].unknown_cards == []
        assert store.stats()["feedback"] == 1
    finally:
        store.dispose()


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'wal.db'}")
    try:
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.dispose()


def test_postgres_pool_pre_pings(store, backend):
    """A server can restart under the pool (pre-ping reconnects); a SQLite file cannot."""
    assert store.engine.pool._pre_ping is (backend == "postgres")
