"""Load on the real PostgreSQL: 10,000 feedback entries, each posted twice from 16 threads,
stored exactly once, including across a server restart in the middle of the run.

The HTTP-level version of this test drives the app; this one proves the store under it.
"""

from __future__ import annotations

import queue
import random
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError

from cds_service.store.models import feedback

from .helpers import T0, count, iso

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ENTRIES = 10_000
PER_POST = 5
THREADS = 16
TIME_LIMIT_SECONDS = 90


def _cluster() -> list[str]:
    root = Path("/etc/postgresql")
    versions = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    if not versions:
        pytest.skip("no local PostgreSQL cluster to restart (/etc/postgresql is empty)")
    return [versions[-1], "main"]


def _pg_ctl(action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *_cluster(), action],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def backend() -> str:
    """This module runs on PostgreSQL only (overrides the sqlite/postgres parametrization)."""
    return "postgres"


@pytest.fixture
def pg_store(make_store):
    return make_store(engine_options={"pool_size": THREADS, "max_overflow": 0})


def _entries() -> list[dict]:
    out = []
    for i in range(ENTRIES):
        entry = {
            "card": f"card-{i:05d}",
            "outcome": "overridden" if i % 2 else "accepted",
            "outcomeTimestamp": iso(T0 + timedelta(seconds=i)),
        }
        if i % 2:
            entry["overrideReason"] = {
                "reason": {"system": "urn:test", "code": "patient-declined"},
                "userComment": f"comment {i}",
            }
        else:
            entry["acceptedSuggestions"] = [{"id": f"sugg-{i:05d}"}]
        out.append(entry)
    return out


def _posts(entries: list[dict]) -> list[list[dict]]:
    batches = [entries[i : i + PER_POST] for i in range(0, len(entries), PER_POST)]
    posts = batches + [list(reversed(b)) for b in batches]  # every entry twice
    random.Random(20261128).shuffle(posts)
    return posts


def _run(store, posts, *, retry: bool, on_progress=None):
    """Post everything from THREADS threads; returns (acknowledged card uuids, errors, retries)."""
    work: queue.Queue = queue.Queue()
    for post in posts:
        work.put(post)
    acknowledged: set[str] = set()
    failures: list[BaseException] = []
    retries = [0]
    done = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + TIME_LIMIT_SECONDS

    def worker() -> None:
        while True:
            try:
                post = work.get_nowait()
            except queue.Empty:
                return
            while True:
                try:
                    store.record_feedback("sarcopenia-patient-view", post, datetime.now(UTC))
                    break
                except (OperationalError, DBAPIError) as exc:
                    transient = isinstance(exc, OperationalError) or exc.connection_invalidated
                    if not (retry and transient) or time.monotonic() > deadline:
                        with lock:
                            failures.append(exc)
                        return
                    with lock:
                        retries[0] += 1
                    time.sleep(0.2)
            with lock:
                acknowledged.update(e["card"] for e in post)
                done[0] += 1
                if on_progress:
                    on_progress(done[0])

    threads = [threading.Thread(target=worker, name=f"writer-{i}") for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIME_LIMIT_SECONDS + 30)
    return acknowledged, failures, retries[0]


def _stored_cards(store) -> list[str]:
    with store.engine.connect() as connection:
        return list(connection.execute(sa.select(feedback.c.card_uuid)).scalars())


def _record_some_cards(store) -> None:
    """Half the entries name cards we sent, so both the linked and unlinked paths run."""
    cards = [
        {
            "uuid": f"card-{i:05d}",
            "primary": "low-smi",
            "findings": [],
            "suggestions": {f"sugg-{i:05d}": "dietitian-referral"},
        }
        for i in range(0, ENTRIES, 2)
    ]
    store.record_cards(
        hook_instance="load",
        service_id="sarcopenia-patient-view",
        hook="patient-view",
        patient_id="Patient/load",
        pack_version="load",
        cards=cards,
        sent_at=T0,
    )


def test_10000_entries_posted_twice_from_16_threads(pg_store):
    started = time.monotonic()
    _record_some_cards(pg_store)
    acknowledged, failures, _ = _run(pg_store, _posts(_entries()), retry=False)
    elapsed = time.monotonic() - started
    assert failures == []
    stored = _stored_cards(pg_store)
    assert len(stored) == ENTRIES == len(set(stored)) == len(acknowledged)
    assert pg_store.stats()["feedback_by_outcome"] == {"accepted": 5000, "overridden": 5000}
    assert pg_store.stats()["feedback_unknown_card"] == ENTRIES // 2
    assert elapsed < TIME_LIMIT_SECONDS, elapsed


def _start_time(store) -> datetime:
    with store.engine.connect() as connection:
        return connection.exec_driver_sql("SELECT pg_postmaster_start_time()").scalar_one()


@pytest.fixture
def restore_cluster():
    yield
    # whatever happened, leave PostgreSQL running for everyone else
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *_cluster(), "start"],
        capture_output=True,
        timeout=60,
    )


@pytest.mark.pg_restart
def test_postgres_restart_mid_run_loses_no_acknowledged_entry(
    pg_store, restore_cluster, pg_restart_guard
):
    started = time.monotonic()
    _record_some_cards(pg_store)
    before = _start_time(pg_store)
    posts = _posts(_entries())
    restart_at = len(posts) // 3
    restart: dict = {}

    def restart_cluster() -> None:
        with pg_restart_guard.exclusive():  # wait for PostgreSQL tests running elsewhere
            restart["began_after_posts"] = progress[0]
            _pg_ctl("restart")
        restart["finished_after_posts"] = progress[0]

    progress = [0]
    restarter = threading.Thread(target=restart_cluster)

    def on_progress(done: int) -> None:
        progress[0] = done
        if done == restart_at:
            restart["started_after_posts"] = done
            restarter.start()

    acknowledged, failures, retries = _run(pg_store, posts, retry=True, on_progress=on_progress)
    restarter.join(timeout=60)
    elapsed = time.monotonic() - started

    assert restart.get("started_after_posts") == restart_at
    # the restart began while posts were still to come (it may finish after the last one when
    # it had to wait for PostgreSQL tests elsewhere to end)
    assert restart["began_after_posts"] < len(posts), "the restart did not overlap the writes"
    assert _start_time(pg_store) > before, "PostgreSQL was not restarted"
    assert failures == []
    stored = set(_stored_cards(pg_store))
    missing = acknowledged - stored
    assert not missing, f"{len(missing)} acknowledged entries lost, e.g. {sorted(missing)[:5]}"
    assert len(acknowledged) == ENTRIES and count(pg_store, "feedback") == ENTRIES
    assert elapsed < TIME_LIMIT_SECONDS, elapsed
    print(
        f"restart run: {elapsed:.1f}s, {retries} retried posts, restart between posts"
        f" {restart['began_after_posts']} and {restart['finished_after_posts']} of {len(posts)}"
    )
