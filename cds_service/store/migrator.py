"""Runs the store's Alembic migrations from code: no alembic.ini, the scripts ship in the package.

Several workers may start at once, so an upgrade holds a lock for its whole transaction: a
PostgreSQL advisory lock, or SQLite's write lock (``BEGIN IMMEDIATE``). DDL is transactional
on both, so an upgrade that fails leaves the schema as it was.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

SCRIPT_LOCATION = Path(__file__).with_name("migrations")

#: arbitrary 64-bit key for pg_advisory_xact_lock, shared by every worker of this service
_PG_LOCK_KEY = 0x5A4C_0C05_0001


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    return cfg


def _locked(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")


def _run(engine: Engine, action: str, revision: str) -> None:
    cfg = _config()
    with engine.connect() as connection:
        connection.execution_options(sqlite_begin="IMMEDIATE")
        with connection.begin():
            _locked(connection)
            cfg.attributes["connection"] = connection
            getattr(command, action)(cfg, revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision``; a no-op when it is already there."""
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema down to ``revision`` ("base" drops everything: tests and operators only)."""
    _run(engine, "downgrade", revision)


def current(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str:
    """The newest revision shipped with this code."""
    rev = ScriptDirectory.from_config(_config()).get_current_head()
    assert rev is not None
    return rev
