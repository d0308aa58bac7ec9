"""The store fixtures (SQLite file and PostgreSQL) for the governance tests."""

from tests.store.conftest import (  # noqa: F401 - fixtures
    backend,
    database_url,
    make_store,
    pg_database,
    pg_restart_guard,
    store,
)
