"""Fixtures for the store: every test runs on a SQLite file and on the real PostgreSQL.

PostgreSQL gets one uniquely named database per test session (dropped at the end) and one
fresh schema per test, chosen through ``search_path`` in the URL. Set STORE_TEST_PG_ADMIN_URL
to point at another server (default: postgres on 127.0.0.1:5432, database ``test``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from cds_service.store import Store
from tests.support.pg import PostgresRestartGuard

PG_ADMIN_URL = os.environ.get(
    "STORE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[URL]:
    """A PostgreSQL database of its own for this test session, dropped afterwards."""
    # no pool: the load test restarts the server, and the DROP at the end needs a live connection
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"store_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    guard = PostgresRestartGuard()
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}")
    finally:
        guard.release()
    try:
        yield make_url(PG_ADMIN_URL).set(database=name)
    finally:
        guard = PostgresRestartGuard()  # not while another session restarts the server
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            guard.release()
            admin.dispose()


def _pg_schema_url(base: URL) -> str:
    """A fresh, empty schema in the session database, as a URL whose search_path selects it."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine.dispose()
    return base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pg_restart_guard() -> Iterator[PostgresRestartGuard]:
    guard = PostgresRestartGuard()
    yield guard
    guard.release()


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a new PostgreSQL schema."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    request.getfixturevalue("pg_restart_guard")
    return _pg_schema_url(request.getfixturevalue("pg_database"))


@pytest.fixture
def make_store(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """Build stores on this test's database (several may share it, like several workers)."""
    made: list[Store] = []

    def factory(pseudonym_key: str | None = None, *, migrate: bool = True, **options) -> Store:
        if pseudonym_key is None and not database_url.startswith("sqlite"):
            # PostgreSQL keeps no key: one file for every store of this test, as workers share one
            options.setdefault("pseudonym_key_file", str(tmp_path / "pg-pseudonym.key"))
        store = Store(database_url, pseudonym_key, **options)
        if migrate:
            store.migrate()
        made.append(store)
        return store

    yield factory
    for store in made:
        store.dispose()


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Store:
    """A migrated store with a generated (persisted) pseudonym key."""
    return make_store()
