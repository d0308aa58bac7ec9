"""Feedback load through HTTP on the real PostgreSQL: `sarcopenia-cds serve` with 2 gthread workers.

10,000 feedback entries in batches of 50, each batch posted twice, from 16 concurrent clients → exactly
10,000 rows. The second test restarts PostgreSQL in the middle (holding the shared restart lock exclusively,
see tests/store/conftest.py); clients retry on 5xx and connection errors; the service recovers by itself
(same process, no restart) and every batch it acknowledged with 200 is in the database.
"""

from __future__ import annotations

import queue
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.resilience.helpers import PV
from tests.support import tokens
from tests.support.pg import PostgresRestartGuard, temporary_database
from tests.support.server import running_service

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ENTRIES = 10_000
PER_POST = 50
CLIENTS = 16
TIME_LIMIT = 150.0
FB = PV + "/feedback"


def cluster() -> list[str]:
    root = Path("/etc/postgresql")
    versions = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    if not versions:
        pytest.skip("no local PostgreSQL cluster to restart (/etc/postgresql is empty)")
    return [versions[-1], "main"]


@pytest.fixture()
def database():
    with temporary_database("resil_load") as url:  # holds the shared restart lock
        yield url


@pytest.fixture()
def restartable():
    """(database URL, guard): a throwaway database whose shared restart lock this test may turn
    exclusive; PostgreSQL is started again whatever happens, before the database is dropped."""
    guard = PostgresRestartGuard()
    try:
        with temporary_database("resil_restart", guard) as url:
            try:
                yield url, guard
            finally:
                subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster(), "start"], check=False,
                               capture_output=True, timeout=60)
    finally:
        guard.release()


def batches(tag: str) -> list[list[dict]]:
    entries = []
    for i in range(ENTRIES):
        entry = {"card": f"{tag}-{i:05d}", "outcome": "overridden" if i % 2 else "accepted",
                 "outcomeTimestamp": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z"}
        if i % 2:
            entry["overrideReason"] = {"reason": {"system": "urn:test", "code": "patient-declined"}}
        else:
            entry["acceptedSuggestions"] = [{"id": f"s-{i:05d}"}]
        entries.append(entry)
    groups = [entries[i:i + PER_POST] for i in range(0, ENTRIES, PER_POST)]
    posts = groups + [list(reversed(g)) for g in groups]  # every entry twice
    random.Random(20261128).shuffle(posts)
    return posts


def rows(database: str) -> list[str]:
    engine = sa.create_engine(database, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return list(connection.exec_driver_sql("SELECT card_uuid FROM feedback").scalars())
    finally:
        engine.dispose()


def run(base: str, posts: list[list[dict]], *, retry: bool, gate=None, on_ack=None):
    """Post from CLIENTS threads; returns (acknowledged cards, failures, retries, totals)."""
    work: queue.Queue = queue.Queue()
    for post in posts:
        work.put(post)
    acknowledged: set[str] = set()
    failures: list[str] = []
    totals = {"stored": 0, "duplicates": 0, "retries": 0, "acks": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + TIME_LIMIT

    def client() -> None:
        session = requests.Session()
        while True:
            try:
                post = work.get_nowait()
            except queue.Empty:
                return
            if gate is not None:
                gate()
            while True:
                headers = {"Authorization": f"Bearer {tokens.token(base + FB)}"}
                try:
                    response = session.post(base + FB, json={"feedback": post}, headers=headers, timeout=30)
                    problem = None if response.status_code == 200 else f"HTTP {response.status_code}"
                    transient = response.status_code >= 500
                except requests.RequestException as exc:
                    problem, transient = type(exc).__name__, True
                    session = requests.Session()
                if problem is None:
                    break
                if not (retry and transient) or time.monotonic() > deadline:
                    with lock:
                        failures.append(problem)
                    return
                with lock:
                    totals["retries"] += 1
                time.sleep(0.2)
            body = response.json()
            with lock:
                acknowledged.update(e["card"] for e in post)
                totals["stored"] += body["stored"]
                totals["duplicates"] += body["duplicates"]
                totals["acks"] += 1
                if on_ack:
                    on_ack(totals["acks"])

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIME_LIMIT + 60)
    return acknowledged, failures, totals


def test_10000_feedback_entries_from_16_clients_are_stored_exactly_once(tmp_path, database):
    started = time.monotonic()
    with running_service(database, tmp_path, workers=2) as (base, _process):
        acknowledged, failures, totals = run(base, batches("load"), retry=False)
    elapsed = time.monotonic() - started
    assert failures == []
    stored = rows(database)
    assert len(stored) == len(set(stored)) == ENTRIES == len(acknowledged)
    assert totals["stored"] == ENTRIES and totals["duplicates"] == ENTRIES
    assert elapsed < TIME_LIMIT, elapsed
    print(f"load: {2 * ENTRIES // PER_POST} posts of {PER_POST} in {elapsed:.1f} s")


@pytest.mark.pg_restart  # scripts/test.sh runs these alone, after the parallel run
def test_postgres_restart_mid_run_recovers_without_losing_acknowledged_feedback(tmp_path, restartable):
    database, guard = restartable
    started = time.monotonic()
    posts = batches("restart")
    restart_at = len(posts) // 3
    restarting = threading.Event()
    state: dict = {}

    def restart() -> None:
        with guard.exclusive():  # waits for PostgreSQL tests elsewhere, holds new ones back
            state["acks_before"] = acks[0]
            restarting.set()  # let the clients go on while PostgreSQL goes down and comes back
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster(), "restart"], check=True,
                           capture_output=True, timeout=60)
        state["acks_after"] = acks[0]

    restarter = threading.Thread(target=restart)
    acks = [0]

    def on_ack(done: int) -> None:
        acks[0] = done
        if done == restart_at:
            restarter.start()

    def gate() -> None:  # after restart_at posts, wait until the restart is under way
        if acks[0] >= restart_at:
            restarting.wait(timeout=120)

    with running_service(database, tmp_path, workers=2) as (base, process):
        master = process.pid
        acknowledged, failures, totals = run(base, posts, retry=True, gate=gate, on_ack=on_ack)
        restarter.join(timeout=90)
        assert process.poll() is None and process.pid == master, "the service kept running"
        assert requests.get(base + "/readyz", timeout=5).status_code == 200, "the service recovered by itself"
        after = requests.post(base + FB, json={"feedback": posts[0]},
                              headers={"Authorization": f"Bearer {tokens.token(base + FB)}"}, timeout=30)
        assert after.status_code == 200 and after.json() == {"stored": 0, "duplicates": PER_POST}
    elapsed = time.monotonic() - started
    assert "acks_after" in state, "PostgreSQL was restarted"
    assert state["acks_before"] < len(posts), "the restart overlapped the posts"
    assert failures == []
    stored = rows(database)
    missing = acknowledged - set(stored)
    assert not missing, f"{len(missing)} acknowledged entries lost, e.g. {sorted(missing)[:5]}"
    assert len(stored) == len(set(stored)) == ENTRIES == len(acknowledged)
    assert elapsed < TIME_LIMIT, elapsed
    print(f"restart: {elapsed:.1f} s, {totals['retries']} retried posts, restart between acks "
          f"{state['acks_before']} and {state['acks_after']} of {len(posts)}")
