"""SQLite WAL checkpoints run in a background thread, not in the commits of hook calls."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from cds_service.store import Store, checkpoint

from .helpers import card, record


def _file_store(tmp_path: Path) -> tuple[Store, Path]:
    path = tmp_path / "cds.db"
    store = Store(f"sqlite:///{path}")
    store.migrate()
    checkpoint.checkpoint(store.engine)  # the schema into the database file, for immutable reads
    return store, path


def _cards_in_database_file(path: Path) -> int:
    """Rows of card_sent in the database file itself, ignoring the WAL (immutable read)."""
    connection = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return connection.execute("SELECT count(*) FROM card_sent").fetchone()[0]
    finally:
        connection.close()


def test_connections_move_the_automatic_checkpoint_to_the_backstop(tmp_path):
    store, _path = _file_store(tmp_path)
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == checkpoint.BACKSTOP_PAGES
        assert connection.exec_driver_sql("PRAGMA journal_size_limit").scalar() == checkpoint.WAL_SIZE_LIMIT_BYTES
    store.dispose()


def test_commits_below_the_backstop_do_not_checkpoint(tmp_path):
    """Without the thread (raw engine writes register nothing), 1,000 WAL pages no longer make
    a commit checkpoint: the WAL keeps every frame."""
    store, _path = _file_store(tmp_path)
    with store.engine.connect() as connection:
        connection.exec_driver_sql("CREATE TABLE filler (id INTEGER PRIMARY KEY, text TEXT)")
        connection.commit()
        for number in range(300):
            connection.exec_driver_sql("INSERT INTO filler (text) VALUES (?)", (f"{number:04d}" + "x" * 20_000,))
            connection.commit()
        busy, frames, done = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
    assert busy == 0
    assert frames > 1_000  # SQLite's default would have checkpointed and restarted at 1,000
    assert done == frames
    store.dispose()


def test_the_background_thread_moves_commits_into_the_database_file(tmp_path):
    store, path = _file_store(tmp_path)
    before = _cards_in_database_file(path)
    record(store, "p1", card("low-smi"), card("cachexia"))
    deadline = time.monotonic() + 10
    while _cards_in_database_file(path) != before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _cards_in_database_file(path) == before + 2
    assert any(t.name == "sqlite-checkpoint" and t.is_alive() for t in threading.enumerate())
    store.dispose()


def test_checkpoint_reports_frames_and_never_raises(tmp_path):
    store, path = _file_store(tmp_path)
    record(store, "p1", card("low-smi"))
    busy, frames, done = checkpoint.checkpoint(store.engine)
    assert busy == 0 and done == frames
    store.dispose()
    broken = sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'cds.db'}")
    assert checkpoint.checkpoint(broken) is None  # the folder is gone: skipped, not raised


def test_dispose_stops_checkpointing_the_store(tmp_path):
    store, _path = _file_store(tmp_path)
    record(store, "p1", card("low-smi"))
    assert store.engine in set(checkpoint._loop.members)
    store.dispose()
    assert store.engine not in set(checkpoint._loop.members)


def test_in_memory_store_has_no_checkpoints():
    store = Store("sqlite://")
    store.migrate()
    record(store, "p1", card("low-smi"))
    assert store.engine not in set(checkpoint._loop.members)
    store.dispose()


def test_a_forked_worker_starts_clean_and_registers_on_its_first_write(tmp_path):
    """gunicorn forks workers from the master: the child must not use the parent's thread,
    registrations or (possibly held) lock, and registers itself when it first writes."""
    store, _path = _file_store(tmp_path)
    record(store, "p1", card("low-smi"))  # the parent registers
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it inherited, then write once
        try:
            inherited = len(checkpoint._loop.members) == 0 and checkpoint._loop.thread is None
            store.engine.dispose(close=False)  # as a worker does: never the parent's connections
            record(store, "p1", card("cachexia"))
            registered = store.engine in set(checkpoint._loop.members) and checkpoint._loop.thread.is_alive()
            os.write(write, f"{inherited} {registered}".encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 100).decode() == "True True"
    assert status == 0
    store.dispose()
