"""WAL checkpoints of SQLite files in one background thread per process, so requests rarely pay.

SQLite checkpoints a WAL file itself, inside the commit that takes it past 1,000 pages: about one
hook call in two hundred then copied thousands of pages into the database file and synced it
while holding the write lock (5–12 ms on the benchmark machine, with the other workers' writers
waiting behind it: the latency tail). Connections here move that threshold up to a backstop
(``BACKSTOP_PAGES``), and this thread copies pages across with a PASSIVE checkpoint (it neither
waits for nor blocks readers and writers) every ``INTERVAL_SECONDS``.

Under steady writes a PASSIVE checkpoint rarely ends with no frame appended meanwhile, so the WAL
seldom starts over from its beginning: it grows to the backstop, and the commit that reaches it
checkpoints the few pages the thread has not yet copied, in the writer's turn, so the WAL restarts
(about once in 2,000 hook calls). Durability is SQLite's own either way: a commit is in the WAL
file when it returns; a checkpoint only moves it into the database file.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Engine

from cds_service.store.background import ProcessLoop

log = logging.getLogger("cds_service.store")

#: how often the background thread checkpoints each registered database
INTERVAL_SECONDS = 0.25
#: WAL pages at which a commit still checkpoints by itself (only if this thread falls behind)
BACKSTOP_PAGES = 10_000
#: size a WAL file is cut back to once it has been fully checkpointed and restarted
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024

def connection_pragmas(cursor: Any) -> None:
    """Leave checkpoints to the background thread (run on every new connection to a file)."""
    cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")


def register(engine: Engine) -> None:
    """Checkpoint ``engine``'s database in this process's background thread from now on.

    Call it from the process that writes (threads do not survive a fork): a gunicorn worker
    registers on its first write."""
    _loop.add(engine)


def unregister(engine: Engine) -> None:
    """Stop checkpointing ``engine`` (the store is being disposed)."""
    _loop.discard(engine)


def checkpoint(engine: Engine) -> tuple[int, int, int] | None:
    """One PASSIVE checkpoint: (busy, frames in the WAL, frames checkpointed), as SQLite reports
    it; None when it could not run (another process was checkpointing, or the file is gone)."""
    try:
        connection = engine.raw_connection()
        try:
            cursor = connection.driver_connection.cursor()
            try:
                busy, frames, done = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                cursor.close()
        finally:
            connection.close()
    except Exception as exc:  # noqa: BLE001 - a missed checkpoint is retried next time
        log.debug("sqlite checkpoint skipped: %s", type(exc).__name__)
        return None
    return int(busy), int(frames), int(done)


def _checkpoint_all(engines: list[Engine]) -> None:
    """One round: a PASSIVE checkpoint of every registered database."""
    for engine in engines:
        checkpoint(engine)


#: the background thread, every ``INTERVAL_SECONDS``, for the process's life
_loop = ProcessLoop("sqlite-checkpoint", INTERVAL_SECONDS, _checkpoint_all)
