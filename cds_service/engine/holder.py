"""Hot reload: keep the last good RuleSet, swap atomically only when a reload has no errors."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from .diagnostics import PackErrors
from .load import BUNDLED_NAME, is_bundled, load_ruleset, pack_files, resolve_files


class RuleSetHolder:
    """Holds `.current`; `.reload()` keeps the last good set on error and records `.last_error`."""

    def __init__(self, paths=None, on_error=None):
        self.paths = paths
        self.on_error = on_error
        self.last_error: str | None = None
        self.loaded_at: datetime | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: the engine settings whose plans each set loaded from now on is warmed for (see warm)
        self._warm_settings = None
        # override files alone are loaded on top of the bundled packs: watch those too
        self._with_bundled = bool(paths) and any(is_bundled(f) for f in resolve_files(paths)) and not any(
            is_bundled(f) or str(f) == BUNDLED_NAME for f in pack_files(paths)
        )
        self.current = load_ruleset(paths)
        self.loaded_at = datetime.now(UTC)
        self._mtimes = self._snapshot()

    def warm(self, settings) -> None:
        """Generate the current set's plans for `settings` now, and those of every set a reload
        brings from now on before it starts serving, so that no call after a reload waits for
        them (about 50 ms per hook)."""
        self._warm_settings = settings
        self.current.warm(settings)

    def reload(self) -> bool:
        with self._lock:
            snapshot = self._snapshot()
            try:
                fresh = load_ruleset(self.paths)
            except PackErrors as exc:
                self.last_error = str(exc)
                self._mtimes = snapshot
                if self.on_error is not None:
                    self.on_error(exc)
                return False
            if self._warm_settings is not None:
                fresh.warm(self._warm_settings)
            self.current = fresh
            self.last_error = None
            self.loaded_at = datetime.now(UTC)
            self._mtimes = snapshot
            return True

    def _snapshot(self) -> dict[str, float]:
        out = {}
        files = pack_files(self.paths)
        if self._with_bundled:
            files = pack_files([BUNDLED_NAME]) + files
        for path in files:
            try:
                out[str(path)] = path.stat().st_mtime
            except OSError:
                out[str(path)] = -1.0
        return out

    def changed(self) -> bool:
        return self._snapshot() != self._mtimes

    def start_watching(self, interval_seconds: float = 2.0) -> threading.Thread:
        """Poll file mtimes in a daemon thread and reload when they change."""
        if self._thread is not None and self._thread.is_alive():
            return self._thread

        def loop():
            while not self._stop.wait(interval_seconds):
                if self.changed():
                    self.reload()

        self._thread = threading.Thread(target=loop, name="rules-watch", daemon=True)
        self._thread.start()
        return self._thread

    def stop_watching(self) -> None:
        self._stop.set()


__all__ = ["RuleSetHolder"]
