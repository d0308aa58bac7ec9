"""The card journal: a hook call's audit rows appended to a file beside a SQLite database, and
written into it in batches.

Recording the cards of one response cost a write transaction of its own (about 0.17 ms of CPU
per call under load, with every other worker's commit making the next one start from a cold
page cache), while a batch of 150 cards costs about 12 µs a card. So a call appends its rows
to the journal, one ``write()`` of one JSON line, before its response leaves, and the rows reach
the tables within ``FLUSH_INTERVAL_SECONDS``, or sooner when something reads them (feedback is
linked to its card, row counts).

Durability is what the database itself gives here: SQLite in WAL mode with
``synchronous=NORMAL`` does not sync a commit either; a row in the journal, like a commit, is in
the operating system's hands when the call returns, so a worker that dies loses nothing. The
journal lives beside the database file, on the same disk, and every store on that file flushes
what it finds there, at start-up too. Rows are inserted with ON CONFLICT DO NOTHING, so a batch
written twice (a flush that died between its commit and removing its file) changes nothing.

Files: ``<db>-cards.journal`` (appended to), ``<db>-cards.journal.<time>.<pid>.flushing`` (taken
by a flush), and two lock files. Appenders hold the append lock shared for one open-write-close;
a flush holds the flush lock, takes the append lock exclusively only to rename the journal
aside, then writes every file it took, oldest first, and removes each once committed. Between the
threads of one process (gthread workers, and the background flush) mutexes do the same.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from cds_service.store.background import ProcessLoop
from cds_service.store.engine import open_private

log = logging.getLogger("cds_service.store")

#: how often a process's background thread flushes the journals of its stores
FLUSH_INTERVAL_SECONDS = 0.2
#: while flushes keep failing, how often the failure is logged again
FAILURE_LOG_SECONDS = 30.0
#: the suffix of a journal file taken aside by a flush
FLUSHING = ".flushing"
#: the format of the records written now; every line starts with it (``{"v":2,``): a call
#: with its finding states, cards and suggestions
VERSION = 2
#: the versions a flush can read (1: cards only, written before migration 0004)
READABLE = (1, 2)
_RECORD_START = b'{"v":'

Batch = list[dict[str, Any]]


class CardJournal:
    """The journal of one SQLite database file: ``append`` from any process, ``flush`` into the
    tables through the writer it is given."""

    def __init__(self, database_path: str) -> None:
        self.path = Path(f"{database_path}-cards.journal")
        self._append_lock_path = Path(f"{self.path}.append-lock")
        self._flush_lock_path = Path(f"{self.path}.flush-lock")
        self._locks: dict[str, Any] = {}
        self._locks_pid: int | None = None
        # flock excludes processes, not the threads of one (they share the lock's descriptor):
        # these mutexes do that inside the process
        self._append_mutex = threading.Lock()  # an append, or the rename of a flush
        self._flush_mutex = threading.Lock()  # one flush at a time

    # -- appending -------------------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> None:
        """Add one record (a JSON object, stamped ``"v": VERSION``) to the journal; when this
        returns it is in the operating system's hands, as a SQLite commit is."""
        line = orjson.dumps({"v": VERSION, **record}) + b"\n"
        with self._append_mutex, self._locked("append", fcntl.LOCK_SH):
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                written = os.write(fd, line)
            finally:
                os.close(fd)
        if written != len(line):  # a full disk: the line is cut (_read skips it); the call fails
            raise OSError(f"card journal: wrote {written} of {len(line)} bytes")

    # -- flushing --------------------------------------------------------------------------

    def pending(self) -> bool:
        """True when there may be records not yet in the tables."""
        return self._has_content(self.path) or any(self._taken())

    def flush(self, write: Callable[[Batch], None], *, wait: bool = True) -> int:
        """Write every record journaled so far with ``write`` (one call per file, in one
        transaction), oldest first; the number of records written. ``wait=False`` returns 0 at
        once when another flush is running. A failed ``write`` leaves its file for the next
        flush and raises."""
        if not self.pending():
            return 0
        if not self._flush_mutex.acquire(blocking=wait):
            return 0
        try:
            with self._locked("flush", fcntl.LOCK_EX, wait=wait) as held:
                if not held:  # another process is flushing
                    return 0
                self._take_journal()
                written = 0
                for taken in self._taken():
                    records = self._read(taken)
                    if records:
                        write(records)
                    taken.unlink()
                    written += len(records)
                return written
        finally:
            self._flush_mutex.release()

    def _take_journal(self) -> None:
        """Rename the journal aside while no append is under way (called holding the flush lock)."""
        if not self._has_content(self.path):
            return
        taken = self.path.with_name(f"{self.path.name}.{time.time_ns():020d}.{os.getpid()}{FLUSHING}")
        with self._append_mutex, self._locked("append", fcntl.LOCK_EX):
            os.replace(self.path, taken)

    def _taken(self) -> list[Path]:
        """Files taken aside and not yet written, oldest first (by the time in their names)."""
        return sorted(self.path.parent.glob(f"{glob.escape(self.path.name)}.*{FLUSHING}"))

    @staticmethod
    def _read(path: Path) -> Batch:
        """The records of a taken file. A write cut short by a full disk (its call answered with
        an error) leaves a piece without its newline, which the next record then follows on the
        same line: the piece is logged and skipped, the record after it kept."""
        records: Batch = []
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            record = _parse(line)
            if record is None and line.rfind(_RECORD_START) > 0:
                record = _parse(line[line.rfind(_RECORD_START):])
                log.error("card journal piece skipped", extra={"file": path.name, "line": number})
            if record is None:
                if line.strip():
                    log.error("card journal line skipped", extra={"file": path.name, "line": number})
                continue
            records.append(record)
        return records

    @staticmethod
    def _has_content(path: Path) -> bool:
        try:
            return path.stat().st_size > 0
        except FileNotFoundError:
            return False

    # -- locks -----------------------------------------------------------------------------

    @contextmanager
    def _locked(self, name: str, mode: int, *, wait: bool = True) -> Iterator[bool]:
        """Hold one of the journal's OS file locks; yields False at once, holding nothing, when
        ``wait`` is False and another process holds it. Lock files are opened once per process
        (a descriptor inherited across fork would share its lock with the parent)."""
        if self._locks_pid != os.getpid():
            self._locks, self._locks_pid = {}, os.getpid()
        handle = self._locks.get(name)
        if handle is None:
            path = self._append_lock_path if name == "append" else self._flush_lock_path
            handle = self._locks[name] = open_private(path, "a+")  # kept for the process
        try:
            fcntl.flock(handle, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

    def reject(self, records: Batch, reason: str) -> None:
        """Keep records that cannot be written (a line of another version) in
        ``<journal>.rejected`` for an operator, and say so in the log. Called by ``flush``'s
        writer, so under the flush lock: no other process or thread writes that file meanwhile."""
        with open_private(f"{self.path}.rejected", "ab") as rejected:
            rejected.write(b"".join(orjson.dumps(record) + b"\n" for record in records))
        log.error("card journal records set aside", extra={"records": len(records), "reason": reason,
                                                           "file": f"{self.path.name}.rejected"})

    def close(self) -> None:
        """Close this process's lock files, once no flush of this process uses them (a background
        round that took the store before it was disposed may still be flushing: closing its lock
        file under it made it fail with ValueError)."""
        with self._flush_mutex:
            if self._locks_pid == os.getpid():
                for handle in self._locks.values():
                    handle.close()
            self._locks, self._locks_pid = {}, None


def _parse(line: bytes) -> dict[str, Any] | None:
    """A journal line's JSON object, or None."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


# -- the background flush, one thread per process ----------------------------------------------


def register(store: Any) -> None:
    """Flush ``store``'s journal (``store.flush_journal(wait=False)``) in this process's
    background thread from now on. Call it from the process that appends: a thread does not
    survive a fork."""
    _loop.add(store)


def unregister(store: Any) -> None:
    """Stop flushing ``store`` in the background (it is being disposed)."""
    _loop.discard(store)


def flush_round(stores: list[Any], failing_since: dict[int, float]) -> None:
    """One round of the background thread. A failure (the database locked or gone) leaves the
    journal on disk for the next round; it is logged when it starts, every
    ``FAILURE_LOG_SECONDS`` while it lasts (``failing_since``: when it was last logged, by
    store), and when flushes work again."""
    for store in stores:
        key = id(store)
        try:
            store.flush_journal(wait=False)
        except Exception as exc:  # noqa: BLE001 - kept on disk, tried again next round
            now = time.monotonic()
            if now - failing_since.get(key, -FAILURE_LOG_SECONDS) >= FAILURE_LOG_SECONDS:
                failing_since[key] = now
                log.warning("card journal flush failed; kept on disk and tried again",
                            extra={"error": type(exc).__name__})
            continue
        if failing_since.pop(key, None) is not None:
            log.info("card journal written again")


_failing_since: dict[int, float] = {}
os.register_at_fork(after_in_child=_failing_since.clear)
#: the background thread, every ``FLUSH_INTERVAL_SECONDS``, for the process's life
_loop = ProcessLoop("card-journal", FLUSH_INTERVAL_SECONDS, lambda stores: flush_round(stores, _failing_since))
