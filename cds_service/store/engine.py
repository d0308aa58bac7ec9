"""The SQLAlchemy engine: pre-ping for PostgreSQL restarts, WAL and busy timeout for SQLite."""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool

from cds_service.store import checkpoint

#: how long a SQLite writer waits for another worker's write lock before giving up
SQLITE_BUSY_TIMEOUT_SECONDS = 30
#: how long a new PostgreSQL connection may take (also bounds /readyz when the host is gone)
PG_CONNECT_TIMEOUT_SECONDS = 3


#: what a 503 for an unavailable database asks the client to wait (PostgreSQL restarts take seconds)
RETRY_AFTER_SECONDS = 5


def is_database_outage(error: BaseException) -> bool:
    """True for an error that means the database cannot be used right now (PostgreSQL restarting
    or unreachable, a connection cut, the pool exhausted, SQLite locked past its busy timeout),
    which the service answers with 503 and Retry-After instead of a 500."""
    if isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)):
        return True
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(error, psycopg.OperationalError)


def private_file(path: str | os.PathLike[str]) -> None:
    """Create ``path`` empty and readable by its owner only (0600), unless it exists. SQLite
    gives its -wal and -shm files the permissions of the database file."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError:  # no such folder, read-only: whoever opens it next reports that in its own words
        pass


def open_private(path: str | os.PathLike[str], mode: str) -> Any:
    """open(path, mode) for a file that, when this creates it, is created 0600."""
    private_file(path)
    return open(path, mode)  # noqa: SIM115 - the caller keeps or closes it


def create_engine(database_url: str, **options: Any) -> Engine:
    """An engine for ``database_url``; ``options`` go to ``sqlalchemy.create_engine``."""
    url = make_url(database_url)
    # a server can restart under us; a SQLite file cannot, and the ping would cost every checkout
    options.setdefault("pool_pre_ping", url.get_backend_name() != "sqlite")
    # bound values include clinicians' free-text comments: keep them out of error messages
    # and SQL logs, which the app may log with a traceback
    options.setdefault("hide_parameters", True)
    connect_args: dict[str, Any] = dict(options.pop("connect_args", {}))
    if url.get_backend_name() == "sqlite":
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_SECONDS)
        connect_args.setdefault("check_same_thread", False)
        in_memory = url.database in (None, "", ":memory:") or url.database.startswith("file::memory:")
        if not in_memory and not url.query.get("mode") == "ro":
            private_file(url.database)  # before SQLite creates it 0644 (cards, feedback, pseudonyms)
        if in_memory:  # one database only while one connection holds it: share that one
            options.setdefault("poolclass", StaticPool)
        engine = sa.create_engine(url, connect_args=connect_args, **options)
        _sqlite_setup(engine, in_memory=in_memory)
        return engine
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        connect_args.setdefault("connect_timeout", PG_CONNECT_TIMEOUT_SECONDS)
    return sa.create_engine(url, connect_args=connect_args, **options)


def _sqlite_setup(engine: Engine, *, in_memory: bool) -> None:
    """Take transaction control away from pysqlite so BEGIN is ours to issue.

    pysqlite's own BEGIN is deferred and issued late, which lets two workers both read and then
    deadlock on the upgrade to a write lock. Writers here ask for ``BEGIN IMMEDIATE`` through
    the execution option ``sqlite_begin``, taking the write lock (waiting up to the busy
    timeout) before they read.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # autocommit at the driver: we issue BEGIN
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
            if not in_memory:
                _use_wal(cursor)
                checkpoint.connection_pragmas(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "")
        connection.exec_driver_sql(f"BEGIN {mode}".strip())


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL once (the mode is kept in the file). Several workers opening a new
    database at the same moment can be refused the switch with 'database is locked' at once,
    without the busy handler, so try again for a few seconds."""
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)

