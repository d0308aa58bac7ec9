"""Hot statements compiled once per engine and run on the driver's own cursor.

On every hook call the store runs one SELECT and one small write (on a SQLite file with the card
journal, the writes come in batches: journal.py). SQLAlchemy's per-execute
machinery (execution context, compiled-cache lookup, bind processing per row, transaction
objects and events) cost more CPU than SQLite did on those statements, so they skip it: the
SQL is what SQLAlchemy compiles for the engine's dialect, and values go through the very bind
and result processors SQLAlchemy would apply, so what is stored and read back is unchanged.
Everything else keeps using SQLAlchemy as usual.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError

T = TypeVar("T")
Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class Compiled:
    """One statement as the driver takes it: SQL text, parameter order, value processors."""

    sql: str
    #: the parameter tuple from a dict of all values (qmark drivers), or None (named: pyformat)
    positional: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None
    #: values of the statement's own literals (``outcome == "accepted"``)
    literals: Mapping[str, Any]
    #: bind processors of the parameters that have one (dates, JSON)
    binds: tuple[tuple[str, Processor], ...]
    #: result processors of the selected columns, by position (None: taken as the driver gives)
    results: tuple[Processor | None, ...]

    def params(self, values: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        """The driver parameters for one row of ``values`` (keyed by bind name)."""
        merged = {**self.literals, **values} if self.literals else dict(values)
        for name, process in self.binds:
            merged[name] = process(merged[name])
        if self.positional is None:
            return merged
        return self.positional(merged)

    def rows(self, raw: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """Driver rows as SQLAlchemy would have returned them (aware datetimes, parsed JSON)."""
        processors = [(i, p) for i, p in enumerate(self.results) if p is not None]
        if not processors:
            return [tuple(row) for row in raw]
        out = []
        for row in raw:
            values = list(row)
            for i, process in processors:
                values[i] = process(values[i])
            out.append(tuple(values))
        return out


def compile_for(statement: Any, dialect: Dialect) -> Compiled:
    """Compile ``statement`` for ``dialect`` once, with its parameters' and columns' processors."""
    compiled = statement.compile(dialect=dialect)
    if compiled.positional and compiled.positiontup is None:
        raise ValueError("positional statement without a parameter order")
    literals: dict[str, Any] = {}
    binds: list[tuple[str, Processor]] = []
    for bind, name in compiled.bind_names.items():
        if bind.expanding or bind.literal_execute:
            raise ValueError(f"{name}: expanding parameters are not supported here")
        if not bind.required and bind.callable is None:
            literals[name] = bind.value
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            binds.append((name, process))
    results: list[Processor | None] = []
    for column in statement.selected_columns if isinstance(statement, sa.Select) else ():
        results.append(column.type.dialect_impl(dialect).result_processor(dialect, None))
    return Compiled(
        sql=compiled.string,
        positional=_tuple_getter(compiled.positiontup) if compiled.positional else None,
        literals=literals,
        binds=tuple(binds),
        results=tuple(results),
    )


def _tuple_getter(names: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """The values of ``names`` from a dict, as a tuple (itemgetter, also for none or one)."""
    if not names:
        return lambda _values: ()
    if len(names) == 1:
        name = names[0]
        return lambda values: (values[name],)
    return operator.itemgetter(*names)


class Driver:
    """The driver's cursor, with the engine's cursor events still told of every statement
    (instrumentation and tests listen to ``before_cursor_execute``)."""

    __slots__ = ("connection", "cursor", "listened", "statement")

    def __init__(self, connection: Connection, cursor: Any) -> None:
        self.connection = connection
        self.cursor = cursor
        #: whether anyone listens to cursor events (in service, nobody): checked once
        dispatch = connection.dispatch
        self.listened = bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)
        #: the statement last sent, for the error message
        self.statement: str | None = None

    def execute(self, sql: str, params: Any = ()) -> None:
        """Send one statement."""
        self.statement = sql
        if self.listened:
            sql, params = self._announce(sql, params, executemany=False)
        self.cursor.execute(sql, params)
        if self.listened:
            self._done(sql, params, executemany=False)

    def executemany(self, sql: str, params: list[Any]) -> None:
        """Send one statement per parameter set, in one driver call."""
        self.statement = sql
        if self.listened:
            sql, params = self._announce(sql, params, executemany=True)
        self.cursor.executemany(sql, params)
        if self.listened:
            self._done(sql, params, executemany=True)

    def fetchall(self) -> list[Any]:
        """The rows of the last SELECT, as the driver returns them."""
        return self.cursor.fetchall()

    def commit(self) -> None:
        """Commit at the driver."""
        self.cursor.connection.commit()

    def rollback_quietly(self) -> None:
        """Roll back; a connection already gone has nothing to roll back (its error is raised)."""
        try:
            self.cursor.connection.rollback()
        except Exception:  # noqa: BLE001, S110 - the original error is the one to report
            pass

    def _announce(self, sql: str, params: Any, *, executemany: bool) -> tuple[str, Any]:
        for listener in self.connection.dispatch.before_cursor_execute:
            sql, params = listener(self.connection, self.cursor, sql, params, None, executemany)
        return sql, params

    def _done(self, sql: str, params: Any, *, executemany: bool) -> None:
        for listener in self.connection.dispatch.after_cursor_execute:
            listener(self.connection, self.cursor, sql, params, None, executemany)


def on_driver(connection: Connection, work: Callable[[Driver], T]) -> T:
    """Run ``work`` on the connection's driver cursor; a driver error leaves as SQLAlchemy's
    DBAPIError (parameters hidden), marked and invalidated when the connection is gone, as it
    would from ``connection.execute``."""
    dialect = connection.dialect
    driver = Driver(connection, connection.connection.driver_connection.cursor())
    try:
        return work(driver)
    except dialect.loaded_dbapi.Error as exc:
        gone = dialect.is_disconnect(exc, connection.connection.dbapi_connection, driver.cursor)
        if gone:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            driver.statement,
            None,
            exc,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=gone,
            dialect=dialect,
        ) from exc
    finally:
        _close_quietly(driver.cursor)


def _close_quietly(cursor: Any) -> None:
    """Close a cursor whose connection may already be gone."""
    try:
        cursor.close()
    except Exception:  # noqa: BLE001, S110 - the error that matters is already raised
        pass


def execute_many(driver: Driver, statement: Compiled, rows: Sequence[Mapping[str, Any]]) -> None:
    """Run ``statement`` once per row in one driver call."""
    if rows:
        driver.executemany(statement.sql, [statement.params(row) for row in rows])


def fetch_all(
    driver: Driver, statement: Compiled, values: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Run a SELECT and return its processed rows."""
    driver.execute(statement.sql, statement.params(values))
    return statement.rows(driver.fetchall())
