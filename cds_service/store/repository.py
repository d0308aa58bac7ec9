"""The store's API: cards sent, feedback received, and the suppressions they imply.

Everything the Flask app needs from the database goes through ``Store``. Patient ids arrive
raw and leave as keyed pseudonyms; they are never written to a table or a log. Override
comments (``userComment``) are stored because they are the clinician's words, and never logged.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import uuid
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
from cds_service.config import ConfigError
from cds_service.store.engine import create_engine, open_private
from cds_service.store.models import (
    admin_audit,
    call_finding,
    card_sent,
    card_suggestion,
    feedback,
    hook_call,
    service_secret,
    suppression_lift,
)
from cds_service.store.types import FeedbackResult, LiftResult
from cds_service.suppression import Suppression, SuppressionReason

log = logging.getLogger("cds_service.store")

_PSEUDONYM_SECRET = "pseudonym_key"
#: deadlock_detected, serialization_failure
_RETRY_SQLSTATES = {"40P01", "40001"}
_WRITE_ATTEMPTS = 3
_RECONNECT_PAUSE_SECONDS = 0.1

T = TypeVar("T")


def make_suppression(
    findings: Iterable[str], suggestions: Iterable[str], reasons: Iterable[SuppressionReason] = ()
) -> Suppression:
    """A Suppression (``.findings``, ``.suggestions`` frozensets, ``.reasons``)."""
    return Suppression(frozenset(findings), frozenset(suggestions), tuple(reasons))


class FeedbackRejected(ValueError):
    """A feedback entry that cannot be stored as it is (the whole POST is refused); ``path`` is
    the JSON path of the offending value, the message says why."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


#: the earliest and latest instants, for suppression windows that would otherwise overflow
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def _plus_days(moment: datetime, days: float) -> datetime:
    """``moment`` + ``days``, at most the latest instant there is (never OverflowError)."""
    try:
        return moment + timedelta(days=days)
    except OverflowError:
        return _LATEST if days > 0 else _EARLIEST


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
                raise ConfigError("privacy.pseudonym_key or privacy.pseudonym_key_file is required with "
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
        issuer: str = "",
        tenant: str = "",
    ) -> None:
        """Remember the cards of one response as a call that sent them (no timing, status 200);
        ``record_call`` records the whole call. Nothing when there are no cards."""
        if not cards:
            return
        self.record_call(
            hook_instance=hook_instance, service_id=service_id, hook=hook, patient_id=patient_id,
            pack_version=pack_version, cards=cards, called_at=sent_at, issuer=issuer, tenant=tenant,
        )

    def record_call(
        self,
        *,
        hook_instance: str,
        service_id: str,
        hook: str,
        patient_id: str | None,
        pack_version: str,
        called_at: datetime,
        cards: list[dict[str, Any]] = (),  # type: ignore[assignment]
        status: int = 200,
        duration_ms: float | None = None,
        detail: Mapping[str, Any] | None = None,
        states: Iterable[tuple[str, str, str | None]] = (),
        issuer: str = "",
        tenant: str = "",
        call_id: str | None = None,
    ) -> str:
        """Remember one answered hook call and its cards: one call row (``detail``: rules fired,
        facts unknown, suppressions applied, timings; names and codes only), a row per
        ``states`` entry (finding, "suppressed" or "undetermined", missing resource types), a
        card row each plus a row per suggestion. The call's id is returned.

        A card uuid already recorded is left as it was. Feedback that arrived before its card
        (stored unlinked) is linked now, when it came from the same caller and service.
        """
        called_at = _aware(called_at, "called_at")
        call_id = call_id or uuid.uuid4().hex
        patient = self.pseudonymise(patient_id) if patient_id is not None else None
        cards = sorted(cards, key=lambda card: card["uuid"])  # one lock order for all writers
        call_row = {
            "id": call_id,
            "hook_instance": hook_instance,
            "called_at": called_at,
            "service_id": service_id,
            "hook": hook,
            "issuer": issuer,
            "tenant": tenant,
            "patient_pseudonym": patient,
            "pack_version": pack_version,
            "status": int(status),
            "duration_ms": None if duration_ms is None else float(duration_ms),
            "cards": len(cards),
            "detail": dict(detail or {}),
            "month": _month(called_at),
            "duration_tenths": None if duration_ms is None else int(float(duration_ms) * 10),
        }
        state_rows = [
            {"call_id": call_id, "finding": finding, "state": state, "missing": missing}
            for finding, state, missing in sorted(set(states))
        ]
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
                "sent_at": called_at,
                "call_id": call_id,
                "issuer": issuer,
                "tenant": tenant,
                "month": _month(called_at),
            }
            for card in cards
        ]
        if card_rows and patient is None:
            raise ValueError("cards need the patient they were sent for")
        suggestion_rows = [
            {"uuid": suggestion_uuid, "card_uuid": card["uuid"], "key": key}
            for card in cards
            for suggestion_uuid, key in sorted((card.get("suggestions") or {}).items())
        ]

        if self._journal_appends:
            self._append_to_journal(call_row, state_rows, card_rows, suggestion_rows)
        else:
            self._write_cards(card_rows, suggestion_rows, [call_row], state_rows)
        # debug: the "hook answered" line, logged only after this write, has the same fields
        log.debug(
            "call recorded",
            extra={"hookInstance": hook_instance, "service": service_id, "cards": len(cards)},
        )
        return call_id

    def _write_cards(
        self,
        card_rows: list[dict[str, Any]],
        suggestion_rows: list[dict[str, Any]],
        call_rows: list[dict[str, Any]] = (),  # type: ignore[assignment]
        state_rows: list[dict[str, Any]] = (),  # type: ignore[assignment]
    ) -> None:
        """Insert call, finding-state, card and suggestion rows (those already there are left as
        they were) and link feedback that arrived before its card, in one write transaction."""
        dialect = self.engine.dialect.name
        tables = (hook_call, call_finding, card_sent, card_suggestion)
        upserts = [_upsert_nothing(dialect, table) for table in tables]
        batches = (list(call_rows), list(state_rows), card_rows, suggestion_rows)
        links = [_link_values(row) for row in card_rows]
        if any(upsert is None for upsert in upserts):  # no ON CONFLICT: row by row

            def write_rows(connection: Connection) -> None:
                for table, rows in zip(tables, batches, strict=True):
                    self._insert_many_ignoring_duplicates(connection, table, rows)
                if links:
                    connection.execute(_LINK_EARLY_FEEDBACK, links)

            self._in_write_transaction(write_rows)
            return
        inserts = [self._statement(upsert) for upsert in upserts]
        link = self._statement(_LINK_EARLY_FEEDBACK)

        def write(driver: Driver) -> None:
            for insert, rows in zip(inserts, batches, strict=True):
                if rows:
                    execute_many(driver, insert, rows)
            # no check first: finding no unlinked feedback costs the same index probe
            if links:
                execute_many(driver, link, links)

        self._write_on_driver(write)

    # -- the card journal (SQLite files; see journal.py) -------------------------------------

    def _append_to_journal(
        self,
        call_row: dict[str, Any],
        state_rows: list[dict[str, Any]],
        card_rows: list[dict[str, Any]],
        suggestion_rows: list[dict[str, Any]],
    ) -> None:
        """One response's rows, as one journal line (instants as ISO 8601 text)."""
        assert self._journal is not None
        journal.register(self)  # this process appends: it flushes too
        self._journal.append({
            "call": {**call_row, "called_at": call_row["called_at"].isoformat()},
            "states": state_rows,
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
        call_rows: dict[str, dict[str, Any]] = {}
        state_rows: list[dict[str, Any]] = []
        card_rows: list[dict[str, Any]] = []
        suggestion_rows: list[dict[str, Any]] = []
        unreadable = []
        for record in records:
            rows = _journaled_rows(record)
            if rows is None:
                unreadable.append(record)
                continue
            for call in rows[0]:
                call_rows.setdefault(call["id"], call)
            state_rows.extend(rows[1])
            card_rows.extend(rows[2])
            suggestion_rows.extend(rows[3])
        if unreadable:
            assert self._journal is not None
            self._journal.reject(unreadable, f"not a card record of versions {journal.READABLE}")
        if call_rows or card_rows:
            card_rows.sort(key=lambda row: row["uuid"])
            calls = sorted(call_rows.values(), key=lambda row: row["id"])
            self._write_cards(card_rows, suggestion_rows, calls, state_rows)

    # -- feedback --------------------------------------------------------------------------

    def record_feedback(
        self,
        service_id: str,
        entries: list[dict[str, Any]],
        received_at: datetime,
        *,
        issuer: str = "",
        tenant: str = "",
        clock_skew: timedelta = timedelta(seconds=60),
    ) -> FeedbackResult:
        """Store CDS Hooks 2.0 feedback entries, each once however often it is posted.

        An entry is the same entry when its card uuid, outcome and outcomeTimestamp (as an
        instant) are, posted by the same caller to the same service. An entry is linked to its card only when that card was sent by this
        service to this caller (``issuer``, ``tenant``); entries about other cards are stored
        unlinked and reported in ``unknown_cards``. All entries of one call commit together
        or not at all: ``FeedbackRejected`` (nothing stored) for an outcomeTimestamp later
        than ``received_at`` + ``clock_skew`` or earlier than its card was sent (less the skew).
        """
        received_at = _aware(received_at, "received_at")
        rows = [
            self._feedback_row(service_id, index, entry, received_at, clock_skew, issuer, tenant)
            for index, entry in enumerate(entries)
        ]
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
            cards = {
                row.uuid: row
                for row in connection.execute(_CARD_PATIENTS, {"cards": uuids})
                if row.service_id == service_id
                and row.issuer in (None, issuer)
                and row.tenant in (None, tenant)
            }
            stored = 0
            for row in ordered:
                card = cards.get(row["card_uuid"])
                if card is not None and row["outcome_timestamp"] < card.sent_at - clock_skew:
                    raise FeedbackRejected(
                        row.pop("_path"),
                        f"{row['_stamp']!r} is before card {card.uuid} was sent "
                        f"({_iso(card.sent_at)}, allowing {_seconds(clock_skew)} s of clock skew)",
                    )
                values = {
                    k: v for k, v in row.items() if not k.startswith("_")
                } | {
                    "card_sent_uuid": card.uuid if card is not None else None,
                    "patient_pseudonym": card.patient_pseudonym if card is not None else None,
                }
                stored += self._insert_ignoring_duplicates(connection, feedback, values)
            return stored, set(cards)

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
        service_id: str,
        index: int,
        entry: Mapping[str, Any],
        received_at: datetime,
        clock_skew: timedelta,
        issuer: str,
        tenant: str,
    ) -> dict[str, Any]:
        for required in ("card", "outcome", "outcomeTimestamp"):
            if not isinstance(entry.get(required), str) or not entry[required]:
                raise ValueError(f"feedback entry without {required}")
        path = f"$.feedback[{index}].outcomeTimestamp"
        stamp = entry["outcomeTimestamp"]
        try:
            at = parse_timestamp(stamp)
        except (ValueError, OverflowError) as exc:
            raise FeedbackRejected(path, f"{stamp!r} is not an instant in the years 0001-9999 (UTC)") from exc
        if at > received_at + clock_skew:
            raise FeedbackRejected(
                path,
                f"{stamp!r} is in the future (the service's clock reads {_iso(received_at)}, "
                f"allowing {_seconds(clock_skew)} s of clock skew)",
            )
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
            "outcome_timestamp": at,
            "override_reason_system": reason.get("system"),
            "override_reason_code": reason.get("code"),
            "override_reason_display": reason.get("display"),
            "user_comment": override.get("userComment"),
            "accepted_suggestions": accepted,
            "service_id": service_id,
            "received_at": received_at,
            "issuer": issuer,
            "tenant": tenant,
            "_path": path,
            "_stamp": stamp,
        }

    # -- suppressions ----------------------------------------------------------------------

    def suppressions(
        self,
        patient_id: str,
        now: datetime,
        override_days: Mapping[str, int],
        default_override_days: int,
        accepted_referral_days: int,
        *,
        service_id: str | None = None,
        issuer: str | None = None,
        tenant: str | None = None,
        clock_skew: timedelta = timedelta(seconds=60),
    ) -> Suppression:
        """What to hold back for this patient at ``now``, for a call to ``service_id`` from
        ``issuer``/``tenant`` (None: every service, every caller — the operator's view).

        ``findings``: finding codes (primary and listed) of this patient's cards overridden
        with a reason, while ``now < outcomeTimestamp + period``; the period is
        ``override_days[reason code]``, else ``default_override_days`` (also for a reason
        Coding with a display but no code). An override without a reason Coding (none, or only
        a userComment) suppresses nothing. Periods come from the arguments, so a changed
        configuration applies to feedback already stored.

        ``suggestions``: keys of this patient's suggestions accepted while
        ``now < outcomeTimestamp + accepted_referral_days``.

        Stored feedback is checked again here: an entry dated after ``now`` + ``clock_skew``
        or before its card was sent (less the skew) is ignored and logged, and no window can
        overflow; an entry lifted by an operator (``lift_suppressions``) hides nothing.
        ``reasons`` says which entry hides what, until when.
        """
        now = _aware(now, "now")
        patient = self.pseudonymise(patient_id)
        statement = self._statement(_PATIENT_FEEDBACK)
        values = {
            "patient": patient,
            "override_since": _plus_days(now, -max(default_override_days, *override_days.values(), 0)),
            "accepted_since": _plus_days(now, -accepted_referral_days),
            "service": service_id,
            "issuer": issuer,
            "tenant": tenant,
        }
        rows = self._read_on_driver(lambda driver: fetch_all(driver, statement, values))
        reasons: list[SuppressionReason] = []
        ignored = 0
        latest = now + clock_skew
        for (fid, outcome, at, code, primary, listed, accepted, suggestion, key, card, sent, svc) in rows:
            if at > latest or at < sent - clock_skew:
                ignored += 1
                continue
            if outcome == "overridden":
                days = override_days.get(code, default_override_days) if code else default_override_days
                until = _plus_days(at, days)
                if now < until:
                    for finding in dict.fromkeys([primary, *(listed or [])]):
                        reasons.append(SuppressionReason(finding, "finding", card, fid, code, at, until, svc))
            elif suggestion in (accepted or ()):
                until = _plus_days(at, accepted_referral_days)
                if now < until:
                    reasons.append(SuppressionReason(key, "suggestion", card, fid, None, at, until, svc))
        if ignored:
            log.warning("stored feedback outside its bounds ignored", extra={"entries": ignored})
        return make_suppression(
            (r.target for r in reasons if r.kind == "finding"),
            (r.target for r in reasons if r.kind == "suggestion"),
            reasons,
        )

    def lift_suppressions(
        self,
        patient_id: str,
        now: datetime,
        override_days: Mapping[str, int],
        default_override_days: int,
        accepted_referral_days: int,
        *,
        actor: str,
        reason: str,
        finding: str | None = None,
    ) -> LiftResult:
        """End the suppressions in force for this patient (all, or those hiding ``finding``,
        whose card lists it): the feedback entries behind them stop hiding anything from now
        on, and the lift is recorded (who, when, why) with an audit row. Nothing is deleted."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("a lift needs a reason")
        now = _aware(now, "now")
        active = self.suppressions(
            patient_id, now, override_days, default_override_days, accepted_referral_days
        ).reasons
        if finding is not None:
            cards = {r.card for r in active if r.kind == "finding" and r.target == finding}
            active = tuple(r for r in active if r.card in cards)
        ids = sorted({r.feedback_id for r in active})
        lift_id = uuid.uuid4().hex
        result = LiftResult(
            lift_id=lift_id,
            entries=len(ids),
            findings=sorted({r.target for r in active if r.kind == "finding"}),
            suggestions=sorted({r.target for r in active if r.kind == "suggestion"}),
        )

        def write(connection: Connection) -> None:
            connection.execute(suppression_lift.insert().values(
                id=lift_id, patient_pseudonym=self.pseudonymise(patient_id), finding=finding,
                lifted_at=now, actor=actor, reason=reason.strip(), entries=len(ids),
            ))
            if ids:
                connection.execute(
                    feedback.update().where(feedback.c.id.in_(ids)).values(lift_id=lift_id)
                )
            connection.execute(admin_audit.insert().values(
                at=now, actor=actor, action="suppressions.lift",
                detail={"lift": lift_id, "finding": finding, "entries": len(ids),
                        "findings": result.findings, "suggestions": result.suggestions},
            ))

        self._in_write_transaction(write)
        log.info("suppressions lifted", extra={"lift": lift_id, "entries": len(ids), "finding": finding})
        return result

    def lifts(self, patient_id: str) -> list[dict[str, Any]]:
        """This patient's lifts, newest first: id, finding, when, who, why, entries."""
        patient = self.pseudonymise(patient_id)
        with self._read() as connection:
            rows = connection.execute(
                sa.select(suppression_lift)
                .where(suppression_lift.c.patient_pseudonym == patient)
                .order_by(suppression_lift.c.lifted_at.desc())
            ).mappings().all()
        return [
            {"id": r["id"], "finding": r["finding"], "lifted_at": _iso(r["lifted_at"]),
             "actor": r["actor"], "reason": r["reason"], "entries": r["entries"]}
            for r in rows
        ]

    # -- admin audit, explain, retention ----------------------------------------------------

    def audit(self, actor: str, action: str, detail: Mapping[str, Any], at: datetime) -> None:
        """Record one admin action (``detail``: codes and counts, never patient data)."""
        at = _aware(at, "at")
        self._in_write_transaction(lambda connection: connection.execute(
            admin_audit.insert().values(at=at, actor=actor, action=action, detail=dict(detail))
        ))

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest admin actions first."""
        with self._read() as connection:
            rows = connection.execute(
                sa.select(admin_audit).order_by(admin_audit.c.id.desc()).limit(limit)
            ).mappings().all()
        return [{"at": _iso(r["at"]), "actor": r["actor"], "action": r["action"], "detail": r["detail"]}
                for r in rows]

    def explain_call(self, hook_instance: str) -> list[dict[str, Any]]:
        """What the store knows of the calls with this hookInstance, oldest first: service,
        hook, pack version, status, timing, rules fired, facts unknown and why, what was
        suppressed, the cards sent and the feedback on them (codes only: no patient data, no
        clinician comments)."""
        self.flush_journal()
        with self._read() as connection:
            calls = connection.execute(
                sa.select(hook_call).where(hook_call.c.hook_instance == hook_instance)
                .order_by(hook_call.c.called_at, hook_call.c.id)
            ).mappings().all()
            out = []
            for call in calls:
                cards = connection.execute(
                    sa.select(card_sent.c.uuid, card_sent.c.primary_finding, card_sent.c.findings)
                    .where(card_sent.c.call_id == call["id"]).order_by(card_sent.c.uuid)
                ).all()
                uuids = [c.uuid for c in cards]
                notes = connection.execute(
                    sa.select(feedback.c.card_uuid, feedback.c.outcome, feedback.c.outcome_timestamp,
                              feedback.c.override_reason_code, feedback.c.lift_id)
                    .where(feedback.c.card_sent_uuid.in_(uuids))
                    .order_by(feedback.c.outcome_timestamp)
                ).all() if uuids else []
                states = connection.execute(
                    sa.select(call_finding.c.finding, call_finding.c.state, call_finding.c.missing)
                    .where(call_finding.c.call_id == call["id"]).order_by(call_finding.c.finding)
                ).all()
                out.append({
                    "hook_instance": call["hook_instance"],
                    "called_at": _iso(call["called_at"]),
                    "service": call["service_id"],
                    "hook": call["hook"],
                    "pack_version": call["pack_version"],
                    "status": call["status"],
                    "duration_ms": call["duration_ms"],
                    "detail": call["detail"],
                    "states": [{"finding": f, "state": st, "missing": m} for f, st, m in states],
                    "cards": [
                        {"uuid": c.uuid, "primary": c.primary_finding, "findings": c.findings,
                         "feedback": [
                             {"outcome": n.outcome, "at": _iso(n.outcome_timestamp),
                              "reason": n.override_reason_code, "lifted": n.lift_id is not None}
                             for n in notes if n.card_uuid == c.uuid
                         ]}
                        for c in cards
                    ],
                })
        return out

    def purge(self, before: datetime) -> dict[str, int]:
        """Delete calls, cards (with their suggestions), feedback, lifts and admin audit rows
        older than ``before`` (``retention.days``); the number of rows deleted per table."""
        before = _aware(before, "before")
        self.flush_journal()

        def work(connection: Connection) -> dict[str, int]:
            old_cards = sa.select(card_sent.c.uuid).where(card_sent.c.sent_at < before)
            old_calls = sa.select(hook_call.c.id).where(hook_call.c.called_at < before)
            counts = {}
            for name, statement in (
                ("feedback", feedback.delete().where(feedback.c.received_at < before)),
                ("card_suggestion", card_suggestion.delete().where(card_suggestion.c.card_uuid.in_(old_cards))),
                ("card_sent", card_sent.delete().where(card_sent.c.sent_at < before)),
                ("call_finding", call_finding.delete().where(call_finding.c.call_id.in_(old_calls))),
                ("hook_call", hook_call.delete().where(hook_call.c.called_at < before)),
                ("suppression_lift", suppression_lift.delete().where(suppression_lift.c.lifted_at < before)),
                ("admin_audit", admin_audit.delete().where(admin_audit.c.at < before)),
            ):
                counts[name] = connection.execute(statement).rowcount
            return counts

        counts = self._in_write_transaction(work)
        log.info("retention purge", extra={"before": _iso(before), **counts})
        return counts

    def coverage(self) -> tuple[datetime | None, datetime | None]:
        """The first and last call the store holds (what period a report can cover)."""
        self.flush_journal()
        with self._read() as connection:
            first, last = connection.execute(
                sa.select(sa.func.min(hook_call.c.called_at), sa.func.max(hook_call.c.called_at))
            ).one()
        convert = hook_call.c.called_at.type
        return (
            convert.process_result_value(first, self.engine.dialect) if first is not None else None,
            convert.process_result_value(last, self.engine.dialect) if last is not None else None,
        )

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


#: the columns a card journal record (journal.py) holds; a record of another shape is set aside.
#: Version 1 records (before 0004) hold cards without their call and caller.
_SCOPE_COLUMNS = {"call_id", "issuer", "tenant", "month"}
_CARD_COLUMNS = {c.name for c in card_sent.columns}
_CARD_COLUMNS_V1 = _CARD_COLUMNS - _SCOPE_COLUMNS
_CARD_TEXT_COLUMNS = _CARD_COLUMNS - {"findings"}
_SUGGESTION_COLUMNS = {c.name for c in card_suggestion.columns}
_CALL_COLUMNS = {c.name for c in hook_call.columns}
_CALL_TEXT_COLUMNS = {"id", "hook_instance", "service_id", "hook", "pack_version"}
_STATE_COLUMNS = {c.name for c in call_finding.columns}

Rows = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]


def _instant(text: Any) -> datetime | None:
    """An aware datetime from journal text, or None."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _journaled_rows(record: Mapping[str, Any]) -> Rows | None:
    """The call, finding-state, card and suggestion rows of one journal record, or None when
    it is not a record of a readable version (every column present, text where text is due).
    A version 1 record (cards only) gets the call its cards imply, as migration 0004 did."""
    version = record.get("v")
    cards, suggestions = record.get("cards"), record.get("suggestions")
    if version not in journal.READABLE or not isinstance(cards, list) or not isinstance(suggestions, list):
        return None
    columns = _CARD_COLUMNS if version == journal.VERSION else _CARD_COLUMNS_V1
    card_rows = []
    for row in cards:
        if not isinstance(row, dict) or set(row) != columns or not isinstance(row["findings"], list):
            return None
        if not all(isinstance(row[k], str) for k in _CARD_TEXT_COLUMNS & columns - {"issuer", "tenant"}):
            return None
        sent_at = _instant(row["sent_at"])
        if sent_at is None:
            return None
        card_rows.append({"call_id": None, "issuer": None, "tenant": None, "month": _month(sent_at),
                          **row, "sent_at": sent_at})
    for row in suggestions:
        if not isinstance(row, dict) or set(row) != _SUGGESTION_COLUMNS or not all(isinstance(v, str) for v in row.values()):
            return None
    if version != journal.VERSION:
        calls: dict[str, dict[str, Any]] = {}
        for row in card_rows:
            row["call_id"] = f"legacy:{row['service_id']}:{row['hook_instance']}"
            call = calls.setdefault(row["call_id"], {
                "id": row["call_id"], "hook_instance": row["hook_instance"], "called_at": row["sent_at"],
                "service_id": row["service_id"], "hook": row["hook"], "issuer": None, "tenant": None,
                "patient_pseudonym": row["patient_pseudonym"], "pack_version": row["pack_version"],
                "status": 200, "duration_ms": None, "cards": 0,
                "detail": {"recorded": "journal version 1: cards only"},
                "month": row["month"], "duration_tenths": None,
            })
            call["cards"] += 1
        return list(calls.values()), [], card_rows, suggestions
    call, states = record.get("call"), record.get("states")
    if not isinstance(call, dict) or set(call) != _CALL_COLUMNS or not isinstance(states, list):
        return None
    called_at = _instant(call["called_at"])
    if (
        called_at is None
        or not all(isinstance(call[k], str) for k in _CALL_TEXT_COLUMNS)
        or not isinstance(call["status"], int)
        or not isinstance(call["cards"], int)
        or not isinstance(call["detail"], dict)
        or not (call["duration_ms"] is None or isinstance(call["duration_ms"], (int, float)))
    ):
        return None
    for row in states:
        if not isinstance(row, dict) or set(row) != _STATE_COLUMNS or row.get("call_id") != call["id"]:
            return None
    return [{**call, "called_at": called_at}], states, card_rows, suggestions


def _link_values(card_row: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of ``_LINK_EARLY_FEEDBACK`` for one card row."""
    return {
        "card": card_row["uuid"],
        "service": card_row["service_id"],
        "issuer": card_row.get("issuer"),
        "tenant": card_row.get("tenant"),
    }


def _same_caller(column: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[bool]:
    """The stored caller ``column`` matches the bound one; a null on either side (a row stored
    before callers were recorded) matches every caller, as it did then."""
    value = sa.bindparam(name, type_=sa.String)
    # (cast: PostgreSQL cannot type a bare parameter tested only for NULL)
    return sa.or_(column.is_(None), sa.cast(value, sa.String).is_(None), column == value)


_CARD_PATIENTS = sa.select(
    card_sent.c.uuid,
    card_sent.c.patient_pseudonym,
    card_sent.c.sent_at,
    card_sent.c.service_id,
    card_sent.c.issuer,
    card_sent.c.tenant,
).where(card_sent.c.uuid.in_(sa.bindparam("cards", expanding=True)))

#: link feedback that arrived before its card, copying the patient of the card as recorded
#: (a uuid recorded before keeps its first patient), when it came from the card's caller and
#: was posted to the card's service
_LINK_EARLY_FEEDBACK = (
    feedback.update()
    .where(feedback.c.card_uuid == sa.bindparam("card"))
    .where(feedback.c.card_sent_uuid.is_(None))
    .where(feedback.c.service_id == sa.bindparam("service"))
    .where(_same_caller(feedback.c.issuer, "issuer"))
    .where(_same_caller(feedback.c.tenant, "tenant"))
    .values(
        card_sent_uuid=feedback.c.card_uuid,
        patient_pseudonym=sa.select(card_sent.c.patient_pseudonym)
        .where(card_sent.c.uuid == feedback.c.card_uuid)
        .scalar_subquery(),
    )
)

#: this patient's overrides with a reason and acceptances not lifted, each with its card's
#: findings, and an acceptance once per suggestion of its card; only cards of this service and
#: caller (a null parameter: any). It starts from the feedback index by patient and reaches cards
#: and suggestions by key, so its cost follows the patient's feedback, not the number of cards
#: ever sent to them.
_PATIENT_FEEDBACK = (
    sa.select(
        feedback.c.id,
        feedback.c.outcome,
        feedback.c.outcome_timestamp,
        feedback.c.override_reason_code,
        card_sent.c.primary_finding,
        card_sent.c.findings,
        feedback.c.accepted_suggestions,
        card_suggestion.c.uuid,
        card_suggestion.c.key,
        card_sent.c.uuid,
        card_sent.c.sent_at,
        card_sent.c.service_id,
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
    .where(feedback.c.lift_id.is_(None))
    .where(sa.or_(sa.cast(sa.bindparam("service", type_=sa.String), sa.String).is_(None),
                  card_sent.c.service_id == sa.bindparam("service", type_=sa.String)))
    .where(_same_caller(card_sent.c.issuer, "issuer"))
    .where(_same_caller(card_sent.c.tenant, "tenant"))
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
    .order_by(feedback.c.outcome_timestamp, feedback.c.id)
)


def _month(moment: datetime) -> str:
    """The UTC month of an instant, YYYY-MM (the report groups by it)."""
    return moment.astimezone(UTC).strftime("%Y-%m")


def _iso(moment: datetime) -> str:
    """An instant as RFC 3339 text in UTC with a Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _seconds(span: timedelta) -> str:
    """A clock skew in whole seconds when it is whole."""
    seconds = span.total_seconds()
    return str(int(seconds)) if seconds == int(seconds) else str(seconds)
