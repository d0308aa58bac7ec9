"""A throwaway PostgreSQL database on the local server (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import fcntl
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

ADMIN_URL = os.environ.get("STORE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class PostgresRestartGuard:
    """Keeps a PostgreSQL restart from landing in the middle of another test.

    Every PostgreSQL test holds a shared flock on one file for its whole run; the test that
    restarts the server turns its own lock exclusive around the restart, so it waits for the
    tests in flight (other xdist workers, other sessions on this machine) and holds back new
    ones until the server is up again.
    """

    PATH = Path(tempfile.gettempdir()) / "sarcopenia-cds-pg-restart.lock"

    def __init__(self) -> None:
        self._file = open(self.PATH, "a+")  # noqa: SIM115 - closed in release()
        fcntl.flock(self._file, fcntl.LOCK_SH)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        fcntl.flock(self._file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._file, fcntl.LOCK_SH)

    def release(self) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


@contextmanager
def temporary_database(prefix: str, guard: PostgresRestartGuard | None = None) -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it afterwards. It holds the shared
    restart lock meanwhile: its own, or `guard` (which a restarting test may turn exclusive).

    Unreachable PostgreSQL fails the test under CI (CI=true) and skips it on a developer machine."""
    own_guard = guard is None
    guard = guard if guard is not None else PostgresRestartGuard()
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if own_guard:
            guard.release()
        message = f"PostgreSQL not reachable at {ADMIN_URL}: {type(exc).__name__}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
        if own_guard:
            guard.release()
