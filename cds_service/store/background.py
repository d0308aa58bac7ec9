"""One background thread per process and purpose, doing a round of work for every registered
object every few tenths of a second (SQLite checkpoints, card journal flushes)."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any


class ProcessLoop:
    """Calls ``work(members)`` every ``interval`` seconds in a daemon thread of this process,
    started by the first ``add``. Members are held weakly: an object dropped without ``discard``
    can still go. A forked child starts with no thread and no members: threads do not survive a
    fork, and the parent's objects (pooled connections) are not the child's to use."""

    def __init__(self, name: str, interval: float, work: Callable[[list[Any]], None]) -> None:
        self.name, self.interval, self._work = name, interval, work
        self._forget()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        """No members, no thread, and a fresh lock (the parent's thread may have held it)."""
        self.members: weakref.WeakSet[Any] = weakref.WeakSet()
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(self, member: Any) -> None:
        """Include ``member`` in every round from now on; call it from the process that works.
        Cheap when it already is, so callers call it on every write."""
        thread = self.thread
        if thread is not None and member in self.members and thread.is_alive():
            return
        with self._lock:
            self.members.add(member)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self.thread.start()

    def discard(self, member: Any) -> None:
        """Leave ``member`` out from the next round on."""
        with self._lock:
            self.members.discard(member)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                members = list(self.members)
            self._work(members)
            del members  # hold no member between rounds
