"""The store's API: cards sent, feedback received, and the suppressions they imply.

Everything the Flask app needs from the database goes through ``Store``. Patient ids arrive
raw and leave as keyed pseudonyms; they are never written to a table or a log. Override
comments (``userComment``) are stored because they are the clinician's words, and never logged.
"""

from __future__ import annotations

import fcntl
import functools
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from cds_service.store import checkpoint, journal, migrator, pseudonym
from cds_service.store.compiled import (
    Compiled,
    Driver,
    compile_for,
    execute_many,
    fetch_all,
    on_driver,
)
from cds_service.store.engine import create_engine, open_private
from cds_service.store.models import card_sent, card_suggestion, feedback, service_secret
from cds_service.store.types import FeedbackResult, Suppression

log = logging.getLogger("cds_service.store")

_PSEUDONYM_SECRET = "pseudonym_key"
#: deadlock_detected, serialization_failure
_RETRY_SQLSTATES = {"40P01", "40001"}
_WRITE_ATTEMPTS = 3
_RECONNECT_PAUSE_SECONDS = 0.1

T = TypeVar("T")


@functools.cache
def _suppression_class() -> type:
    """The engine's Suppression when the engine defines one, else the store's own."""
    try:
        engine = importlib.import_module("cds_service.engine")
    except ImportError:
        return Suppression
    engine_class = getattr(engine, "Suppression", None)
    if not isinstance(engine_class, type):
        return Suppression
    try:
        engine_class(findings=frozenset(), suggestions=frozenset())
    except TypeError:  # a different constructor: keep the store's shape
        log.warning("cds_service.engine.Suppression does not take findings=, suggestions=")
        return Suppression
    return engine_class


def make_suppression(findings: Iterable[str], suggestions: Iterable[str]) -> Any:
    """A Suppression (``.findings``, ``.suggestions`` frozensets), the engine's class if any."""
    return _suppression_class()(findings=frozenset(findings), suggestions=frozenset(suggestions))


def parse_timestamp(value: str) -> datetime:
    """An ISO 8601 / RFC 3339 timestamp as an aware UTC datetime (no offset means UTC)."""
    if not isinstance(value, str):
        raise ValueError("outcomeTimestamp must be a string")
    text = value.strip()
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


class Store:
    """Cards sent, feedback received, suppressions; one instance per process, thread-safe."""

    def __init__(
        self,
        database_url: str,
        pseudonym_key: str | None = None,
        *,
        pseudonym_key_file: str | None = None,
        engine_options: Mapping[str, Any] | None = None,
        card_journal: bool = False,
    ) -> None:
        """``card_journal``: record the cards of a response by appending them to the journal
        beside a SQLite file (see journal.py) instead of in a transaction of their own. Whatever
        this says, a store on a SQLite file flushes the journal it finds before reading cards."""
        self.engine: Engine = create_engine(database_url, **dict(engine_options or {}))
        self._configured_key = (
            pseudonym.key_from_config(pseudonym_key) if pseudonym_key is not None else None
        )
        self._key: bytes | None = self._configured_key
        self._key_lock = threading.Lock()
        self._sqlite_writer = threading.Lock() if self.engine.dialect.name == "sqlite" else None
        database = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        self._key_file = pseudonym_key_file or (
            str(pseudonym.key_file_beside(database)) if database and database != ":memory:" else None)
        if self._key is None and self._key_file is None:
            if self.engine.dialect.name != "sqlite":
                raise ValueError("privacy.pseudonym_key or privacy.pseudonym_key_file is required with "
                                 f"{self.engine.dialect.name}: the key must not live in the database it protects")
            self._key = pseudonym.new_key()  # an in-memory database: the key lives and dies with it
        self._lock_path = f"{database}-writelock" if database and database != ":memory:" else None
        self._lock_file: Any = None
        self._journal = journal.CardJournal(database) if self._lock_path is not None else None
        self._journal_appends = bool(card_journal) and self._journal is not None
        self._compiled: dict[Any, Compiled] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision, then write the cards a stopped process
        left in the journal. Idempotent; safe with many workers."""
        migrator.upgrade(self.engine, "head")
        self.flush_journal()

    def ping(self) -> bool:
        """True when the database answers ``SELECT 1``; False (never an exception) otherwise."""
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1").scalar()
            return True
        except Exception as exc:  # noqa: BLE001 - readiness must report, not raise
            log.warning("store ping failed: %s", type(exc).__name__)
            return False

    def dispose(self) -> None:
        """Write what the journal holds, then close every pooled connection (at shutdown, or
        after fork in a worker). A journal that cannot be written now stays for the next start."""
        checkpoint.unregister(self.engine)
        if self._journal is not None:
            journal.unregister(self)
            try:
                self.flush_journal()
            except Exception as exc:  # noqa: BLE001 - kept on disk; the next start writes it
                log.warning("card journal kept for the next start", extra={"error": type(exc).__name__})
            self._journal.close()
        self.engine.dispose()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """This writer's turn: on SQLite one writer at a time, whichever path it writes by.

        The threads of one process queue on a Python lock first, then processes on the file
        lock, so they wait for each other without SQLite's sleeping busy handler (whose
        back-off of up to 100 ms made the latency tail)."""
        if self._lock_path is not None:
            checkpoint.register(self.engine)  # this process writes: it checkpoints too
        with self._sqlite_writer if self._sqlite_writer is not None else nullcontext():
            with self._sqlite_file_lock():
                yield

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction in this writer's turn; on SQLite it takes the write lock up
        front (BEGIN IMMEDIATE)."""
        with self._writer_turn(), self.engine.connect() as connection:
            connection.execution_options(sqlite_begin="IMMEDIATE")
            with connection.begin():
                yield connection

    @contextmanager
    def _sqlite_file_lock(self) -> Iterator[None]:
        """Writers in other processes (gunicorn workers) queue on an OS file lock next to the
        database: the kernel wakes the next one as soon as the lock is free, where SQLite's own
        busy handler sleeps in steps of up to 100 ms."""
        if self._lock_path is None:
            yield
            return
        if self._lock_file is None:
            self._lock_file = open_private(self._lock_path, "a+")  # kept for the process
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def _in_write_transaction(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a write transaction, retried as ``_retried`` says."""

        def once() -> T:
            with self._write() as connection:
                return work(connection)

        return self._retried(once)

    def _retried(self, attempt: Callable[[], T]) -> T:
        """Run one write ``attempt``; run it again if PostgreSQL chose it as a deadlock victim
        or its connection was dropped. Every write here is idempotent, so a repeat cannot
        duplicate anything; after the last attempt the error goes to the caller."""
        for number in range(1, _WRITE_ATTEMPTS + 1):
            try:
                return attempt()
            except DBAPIError as exc:
                sqlstate = getattr(exc.orig, "sqlstate", None)
                if number == _WRITE_ATTEMPTS:
                    raise
                if sqlstate in _RETRY_SQLSTATES:
                    reason = sqlstate
                elif exc.connection_invalidated:
                    # the connection died under us (a database restart): the pool has been
                    # invalidated, so the next attempt opens a fresh connection
                    reason = "lost connection"
                    time.sleep(_RECONNECT_PAUSE_SECONDS)
                else:
                    raise
                log.warning("store write retried after %s (attempt %d)", reason, number)
        raise AssertionError("unreachable")

    def _write_on_driver(self, work: Callable[[Driver], T]) -> T:
        """``work(driver)`` in a write transaction on the driver's cursor, in this writer's turn
        and retried like ``_in_write_transaction`` (``BEGIN IMMEDIATE`` on SQLite, commit
        before return); for the per-call writes, without SQLAlchemy's per-execute cost."""
        sqlite = self._sqlite_writer is not None

        def once() -> T:
            with self._writer_turn(), self.engine.connect() as connection:
                return on_driver(
                    connection, lambda driver: _driver_transaction(driver, work, sqlite=sqlite)
                )

        return self._retried(once)

    def _read_on_driver(self, work: Callable[[Driver], T]) -> T:
        """``work(driver)`` on a pooled connection without BEGIN: one SELECT is consistent by
        itself (SQLite: its own read transaction; PostgreSQL: one snapshot per statement, whose
        implicit transaction ``_driver_read`` ends)."""
        sqlite = self._sqlite_writer is not None  # autocommit at the driver: nothing to end
        read = work if sqlite else lambda driver: _driver_read(driver, work)
        with self.engine.connect() as connection:
            return on_driver(connection, read)

    def _statement(self, statement: Any) -> Compiled:
        """``statement`` compiled for this engine, once."""
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled[statement] = compile_for(statement, self.engine.dialect)
        return compiled

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as connection, connection.begin():
            yield connection

    def _insert_many_ignoring_duplicates(
        self, connection: Connection, table: sa.Table, rows: list[dict[str, Any]]
    ) -> None:
        """Insert rows, skipping those whose key exists, with one prebuilt statement."""
        if not rows:
            return
        statement = _upsert_nothing(connection.dialect.name, table)
        if statement is not None:
            connection.execute(statement, rows)
            return
        for row in rows:
            self._insert_ignoring_duplicates(connection, table, row)

    def _insert_ignoring_duplicates(
        self, connection: Connection, table: sa.Table, row: Mapping[str, Any]
    ) -> bool:
        """Insert ``row`` unless it collides with a unique key; True when a row was written."""
        # rowcount is not reliable here (psycopg reports -1); RETURNING is
        statement = _upsert_nothing(connection.dialect.name, table, returning_key=True)
        if statement is not None:
            return connection.execute(statement, row).first() is not None
        try:  # any other database: a savepoint per row, the unique key decides
            with connection.begin_nested():
                connection.execute(table.insert().values(**row))
        except IntegrityError:
            return False
        return True

    # -- pseudonyms ------------------------------------------------------------------------

    def _pseudonym_key(self) -> bytes:
        if self._key is not None:
            return self._key
        with self._key_lock:
            if self._key is None:
                assert self._key_file is not None
                if not Path(self._key_file).exists():
                    self._key = pseudonym.load_or_create_key_file(self._key_file, self._legacy_key())
                    self._forget_legacy_key()
                else:
                    self._key = pseudonym.load_or_create_key_file(self._key_file)
            return self._key

    def _legacy_key(self) -> bytes | None:
        """The key an earlier version kept in the service_secret table, if any: moved to the key
        file so that the pseudonyms already stored (and their suppressions) stay valid."""
        try:
            with self.engine.connect() as connection:
                stored = connection.execute(sa.select(service_secret.c.value).where(
                    service_secret.c.name == _PSEUDONYM_SECRET)).scalar_one_or_none()
        except sa.exc.DBAPIError:  # no table yet (before migrate)
            return None
        return bytes.fromhex(stored) if stored else None

    def _forget_legacy_key(self) -> None:
        try:
            with self._write() as connection:
                connection.execute(sa.delete(service_secret).where(service_secret.c.name == _PSEUDONYM_SECRET))
        except sa.exc.DBAPIError:
            pass

    def pseudonymise(self, patient_id: str) -> str:
        """The keyed pseudonym (HMAC-SHA256, hex) stored in place of ``patient_id``."""
        return pseudonym.pseudonymise(self._pseudonym_key(), patient_id)

    # -- cards -----------------------------------------------------------------------------

    def record_cards(
        self,
        *,
        hook_instance: str,
        service_id: str,
        hook: str,
        patient_id: str,
        pack_version: str,
        cards: list[dict[str, Any]],
        sent_at: datetime,
    ) -> None:
        """Remember the cards of one response, one row each plus a row per suggestion.

        A card uuid already recorded is left as it was. Feedback that arrived before its card
        (stored unlinked) is linked now.
        """
        if not cards:
            return
        sent_at = _aware(sent_at, "sent_at")
        patient = self.pseudonymise(patient_id)
        cards = sorted(cards, key=lambda card: card["uuid"])  # one lock order for all writers

        card_rows = [
            {
                "uuid": card["uuid"],
                "hook_instance": hook_instance,
                "service_id": service_id,
                "hook": hook,
                "patient_pseudonym": patient,
                "pack_version": pack_version,
                "primary_finding": card["primary"],
                "findings": list(dict.fromkeys([card["primary"], *card.get("findings", [])])),
                "sent_at": sent_at,
            }
            for card in cards
        ]
        suggestion_rows = [
            {"uuid": suggestion_uuid, "card_uuid": card["uuid"], "key": key}
            for card in cards
            for suggestion_uuid, key in sorted((card.get("suggestions") or {}).items())
        ]

        if self._journal_appends:
            self._append_to_journal(card_rows, suggestion_rows)
        else:
            self._write_cards(card_rows, suggestion_rows)
        # debug: the "hook answered" line, logged only after this write, has the same fields
        log.debug(
            "cards recorded",
            extra={"hookInstance": hook_instance, "service": service_id, "cards": len(cards)},
        )

    def _write_cards(self, card_rows: list[dict[str, Any]], suggestion_rows: list[dict[str, Any]]) -> None:
        """Insert card and suggestion rows (those already there are left as they were) and link
        feedback that arrived before its card, in one write transaction."""
        dialect = self.engine.dialect.name
        upsert_cards = _upsert_nothing(dialect, card_sent)
        upsert_suggestions = _upsert_nothing(dialect, card_suggestion)
        if upsert_cards is None or upsert_suggestions is None:  # no ON CONFLICT: row by row

            def write_rows(connection: Connection) -> None:
                self._insert_many_ignoring_duplicates(connection, card_sent, card_rows)
                self._insert_many_ignoring_duplicates(connection, card_suggestion, suggestion_rows)
                connection.execute(_LINK_EARLY_FEEDBACK, [{"card": r["uuid"]} for r in card_rows])

            self._in_write_transaction(write_rows)
            return
        insert_cards = self._statement(upsert_cards)
        insert_suggestions = self._statement(upsert_suggestions)
        link = self._statement(_LINK_EARLY_FEEDBACK)

        def write(driver: Driver) -> None:
            execute_many(driver, insert_cards, card_rows)
            execute_many(driver, insert_suggestions, suggestion_rows)
            # no check first: finding no unlinked feedback costs the same index probe
            execute_many(driver, link, [{"card": row["uuid"]} for row in card_rows])

        self._write_on_driver(write)

    # -- the card journal (SQLite files; see journal.py) -------------------------------------

    def _append_to_journal(self, card_rows: list[dict[str, Any]], suggestion_rows: list[dict[str, Any]]) -> None:
        """One response's rows, as one journal line (sent_at as ISO 8601 text)."""
        assert self._journal is not None
        journal.register(self)  # this process appends: it flushes too
        self._journal.append({
            "cards": [{**row, "sent_at": row["sent_at"].isoformat()} for row in card_rows],
            "suggestions": suggestion_rows,
        })

    def flush_journal(self, *, wait: bool = True) -> int:
        """Write the cards waiting in the journal into the tables, in one transaction per journal
        file; the number of records (responses) taken from it, 0 without a journal. A record this
        version cannot read is set aside in ``<journal>.rejected``. ``wait=False``: 0 at once
        when another thread or process is flushing."""
        if self._journal is None:
            return 0
        return self._journal.flush(self._write_journaled, wait=wait)

    def _write_journaled(self, records: list[dict[str, Any]]) -> None:
        """The rows of journaled responses, in one transaction (cards in uuid order, as
        ``record_cards`` writes them). Records this version cannot read are set aside."""
        card_rows: list[dict[str, Any]] = []
        suggestion_rows: list[dict[str, Any]] = []
        unreadable = []
        for record in records:
            rows = _journaled_rows(record)
            if rows is None:
                unreadable.append(record)
                continue
            card_rows.extend(rows[0])
            suggestion_rows.extend(rows[1])
        if unreadable:
            assert self._journal is not None
            self._journal.reject(unreadable, f"not a version {journal.VERSION} card record")
        if card_rows:
            card_rows.sort(key=lambda row: row["uuid"])
            self._write_cards(card_rows, suggestion_rows)

    # -- feedback --------------------------------------------------------------------------

    def record_feedback(
        self, service_id: str, entries: list[dict[str, Any]], received_at: datetime
    ) -> FeedbackResult:
        """Store CDS Hooks 2.0 feedback entries, each once however often it is posted.

        An entry is the same entry when its card uuid, outcome and outcomeTimestamp (as an
        instant) are. Entries about cards this service never recorded are stored unlinked and
        reported in ``unknown_cards``. All entries of one call commit together or not at all.
        """
        received_at = _aware(received_at, "received_at")
        rows = [self._feedback_row(service_id, entry, received_at) for entry in entries]
        if not rows:
            return FeedbackResult(stored=0, duplicates=0, unknown_cards=[])
        try:
            self.flush_journal()  # the cards this feedback is about may still be in the journal
        except Exception as exc:  # noqa: BLE001 - stored unlinked; linked when the cards are written
            log.warning("card journal not written before feedback", extra={"error": type(exc).__name__})
        # one order for every writer, so concurrent posts of the same entries take their
        # unique-index locks in the same order and cannot deadlock each other
        ordered = sorted(rows, key=lambda r: (r["card_uuid"], r["outcome"], r["outcome_timestamp"]))

        def write(connection: Connection) -> tuple[int, set[str]]:
            uuids = sorted({row["card_uuid"] for row in ordered})
            patients: dict[str, str] = dict(
                connection.execute(_CARD_PATIENTS, {"cards": uuids}).all()
            )
            stored = 0
            for row in ordered:
                linked = row["card_uuid"] in patients
                values = {
                    **row,
                    "card_sent_uuid": row["card_uuid"] if linked else None,
                    "patient_pseudonym": patients.get(row["card_uuid"]),
                }
                stored += self._insert_ignoring_duplicates(connection, feedback, values)
            return stored, set(patients)

        stored, known = self._in_write_transaction(write)
        unknown = list(dict.fromkeys(r["card_uuid"] for r in rows if r["card_uuid"] not in known))
        result = FeedbackResult(stored=stored, duplicates=len(rows) - stored, unknown_cards=unknown)
        log.info(
            "feedback recorded",
            extra={
                "service": service_id,
                "stored": result.stored,
                "duplicates": result.duplicates,
                "unknown_cards": len(unknown),
            },
        )
        return result

    @staticmethod
    def _feedback_row(
        service_id: str, entry: Mapping[str, Any], received_at: datetime
    ) -> dict[str, Any]:
        for required in ("card", "outcome", "outcomeTimestamp"):
            if not isinstance(entry.get(required), str) or not entry[required]:
                raise ValueError(f"feedback entry without {required}")
        override = entry.get("overrideReason") or {}
        reason = override.get("reason") or {}
        accepted = [
            s["id"]
            for s in entry.get("acceptedSuggestions") or []
            if isinstance(s, Mapping) and isinstance(s.get("id"), str)
        ]
        return {
            "card_uuid": entry["card"],
            "outcome": entry["outcome"],
            "outcome_timestamp": parse_timestamp(entry["outcomeTimestamp"]),
            "override_reason_system": reason.get("system"),
            "override_reason_code": reason.get("code"),
            "override_reason_display": reason.get("display"),
            "user_comment": override.get("userComment"),
            "accepted_suggestions": accepted,
            "service_id": service_id,
            "received_at": received_at,
        }

    # -- suppressions ----------------------------------------------------------------------

    def suppressions(
        self,
        patient_id: str,
        now: datetime,
        override_days: Mapping[str, int],
        default_override_days: int,
        accepted_referral_days: int,
    ) -> Any:
        """What to hold back for this patient at ``now``.

        ``findings``: finding codes (primary and listed) of this patient's cards overridden
        with a reason, while ``now < outcomeTimestamp + period``; the period is
        ``override_days[reason code]``, else ``default_override_days`` (also for a reason
        Coding with a display but no code). An override without a reason Coding (none, or only
        a userComment) suppresses nothing. Periods come from the arguments, so a changed
        configuration applies to feedback already stored.

        ``suggestions``: keys of this patient's suggestions accepted while
        ``now < outcomeTimestamp + accepted_referral_days``.
        """
        now = _aware(now, "now")
        patient = self.pseudonymise(patient_id)
        longest = max([default_override_days, *override_days.values()])
        findings: set[str] = set()
        suggestions: set[str] = set()
        statement = self._statement(_PATIENT_FEEDBACK)
        values = {
            "patient": patient,
            "override_since": now - timedelta(days=longest),
            "accepted_since": now - timedelta(days=accepted_referral_days),
        }
        rows = self._read_on_driver(lambda driver: fetch_all(driver, statement, values))
        for outcome, at, code, primary, listed, accepted, suggestion, key in rows:
            if outcome == "overridden":
                days = (
                    override_days.get(code, default_override_days)
                    if code
                    else default_override_days
                )
                if now < at + timedelta(days=days):
                    findings.add(primary)
                    findings.update(listed or [])
            elif suggestion in (accepted or ()):
                suggestions.add(key)
        return make_suppression(findings, suggestions)

    # -- metrics ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Row counts: cards sent, suggestions, feedback by outcome and unlinked feedback."""
        self.flush_journal()
        with self._read() as connection:
            cards = connection.execute(
                sa.select(sa.func.count()).select_from(card_sent)
            ).scalar_one()
            suggestions = connection.execute(
                sa.select(sa.func.count()).select_from(card_suggestion)
            ).scalar_one()
            by_outcome: dict[str, int] = dict(
                connection.execute(
                    sa.select(feedback.c.outcome, sa.func.count()).group_by(feedback.c.outcome)
                ).all()
            )
            unlinked = connection.execute(
                sa.select(sa.func.count())
                .select_from(feedback)
                .where(feedback.c.card_sent_uuid.is_(None))
            ).scalar_one()
        return {
            "cards": cards,
            "suggestions": suggestions,
            "feedback": sum(by_outcome.values()),
            "feedback_by_outcome": {
                "accepted": by_outcome.get("accepted", 0),
                "overridden": by_outcome.get("overridden", 0),
                **by_outcome,
            },
            "feedback_unknown_card": unlinked,
        }


def _driver_transaction(driver: Driver, work: Callable[[Driver], T], *, sqlite: bool) -> T:
    """``work(driver)`` between BEGIN (IMMEDIATE on SQLite, implicit on PostgreSQL) and COMMIT;
    rolled back when it fails."""
    if sqlite:  # pysqlite is in autocommit mode here (see engine.py): BEGIN is ours
        driver.execute("BEGIN IMMEDIATE")
    try:
        if sqlite:
            result = work(driver)
        else:  # psycopg: the statements go out together and wait for one reply
            with driver.cursor.connection.pipeline():
                result = work(driver)
        driver.commit()
    except BaseException:
        driver.rollback_quietly()
        raise
    return result


def _driver_read(driver: Driver, work: Callable[[Driver], T]) -> T:
    """``work(driver)``, then end the transaction psycopg opened implicitly. With COMMIT:
    psycopg's ROLLBACK also forgets the statements it prepared on the server, and re-planning
    the read on every call cost more than the read."""
    result = work(driver)
    driver.commit()
    return result


# -- statements built once (building them per call cost about a millisecond per request) ------


@functools.cache
def _upsert_nothing(dialect: str, table: sa.Table, *, returning_key: bool = False) -> Any:
    """INSERT … ON CONFLICT DO NOTHING for this dialect (RETURNING the key of a row written
    when asked), or None where there is none."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        return None
    statement = insert(table).on_conflict_do_nothing()
    if returning_key:
        return statement.returning(next(iter(table.primary_key.columns)))
    return statement


#: the columns a card journal record (journal.py) holds; a record of another shape is set aside
_CARD_COLUMNS = {c.name for c in card_sent.columns}
_CARD_TEXT_COLUMNS = _CARD_COLUMNS - {"findings"}
_SUGGESTION_COLUMNS = {c.name for c in card_suggestion.columns}


def _journaled_rows(record: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """The card and suggestion rows of one journal record, or None when it is not a record of
    this version (every column present, text where text is due)."""
    cards, suggestions = record.get("cards"), record.get("suggestions")
    if record.get("v") != journal.VERSION or not isinstance(cards, list) or not isinstance(suggestions, list):
        return None
    card_rows = []
    for row in cards:
        if not isinstance(row, dict) or set(row) != _CARD_COLUMNS or not isinstance(row["findings"], list):
            return None
        if not all(isinstance(row[k], str) for k in _CARD_TEXT_COLUMNS):
            return None
        try:
            sent_at = datetime.fromisoformat(row["sent_at"])
        except ValueError:
            return None
        if sent_at.tzinfo is None:
            return None
        card_rows.append({**row, "sent_at": sent_at})
    for row in suggestions:
        if not isinstance(row, dict) or set(row) != _SUGGESTION_COLUMNS or not all(isinstance(v, str) for v in row.values()):
            return None
    return card_rows, suggestions


_CARD_PATIENTS = sa.select(card_sent.c.uuid, card_sent.c.patient_pseudonym).where(
    card_sent.c.uuid.in_(sa.bindparam("cards", expanding=True))
)

#: link feedback that arrived before its card, copying the patient of the card as recorded
#: (a uuid recorded before keeps its first patient)
_LINK_EARLY_FEEDBACK = (
    feedback.update()
    .where(feedback.c.card_uuid == sa.bindparam("card"))
    .where(feedback.c.card_sent_uuid.is_(None))
    .values(
        card_sent_uuid=feedback.c.card_uuid,
        patient_pseudonym=sa.select(card_sent.c.patient_pseudonym)
        .where(card_sent.c.uuid == feedback.c.card_uuid)
        .scalar_subquery(),
    )
)

#: this patient's overrides with a reason and acceptances, each with its card's findings, and
#: an acceptance once per suggestion of its card. It starts from the feedback index by patient
#: and reaches cards and suggestions by key, so its cost follows the patient's feedback, not
#: the number of cards ever sent to them.
_PATIENT_FEEDBACK = (
    sa.select(
        feedback.c.outcome,
        feedback.c.outcome_timestamp,
        feedback.c.override_reason_code,
        card_sent.c.primary_finding,
        card_sent.c.findings,
        feedback.c.accepted_suggestions,
        card_suggestion.c.uuid,
        card_suggestion.c.key,
    )
    .select_from(feedback)
    .join(card_sent, card_sent.c.uuid == feedback.c.card_uuid)
    .outerjoin(
        card_suggestion,
        sa.and_(
            card_suggestion.c.card_uuid == card_sent.c.uuid,
            feedback.c.outcome == "accepted",
        ),
    )
    .where(feedback.c.patient_pseudonym == sa.bindparam("patient"))
    .where(
        sa.or_(
            sa.and_(
                feedback.c.outcome == "overridden",
                sa.or_(
                    feedback.c.override_reason_code.is_not(None),
                    feedback.c.override_reason_display.is_not(None),
                ),
                feedback.c.outcome_timestamp > sa.bindparam("override_since"),
            ),
            sa.and_(
                feedback.c.outcome == "accepted",
                feedback.c.outcome_timestamp > sa.bindparam("accepted_since"),
            ),
        )
    )
)
