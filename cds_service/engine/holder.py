"""Hot reload: keep the last good RuleSet, swap atomically only when a reload has no errors."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from .diagnostics import PackErrors
from .load import BUNDLED_NAME, is_bundled, load_ruleset, pack_files, resolve_files

_log = logging.getLogger("cds_service.rules")


class RuleSetHolder:
    """Holds `.current`; `.reload()` keeps the last good set on error and records `.last_error`."""

    def __init__(self, paths=None, on_error=None):
        self.paths = paths
        self.on_error = on_error
        self.last_error: str | None = None
        #: the diagnostics of the last refused reload, one line each (empty once a reload works)
        self.last_errors: list[str] = []
        self.refused_at: datetime | None = None
        #: reloads refused since start
        self.refused = 0
        #: fn(trigger, PackErrors) called on every refused reload (the app counts them in /metrics)
        self.refused_listeners: list = []
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

    def reload(self, trigger: str = "manual") -> bool:
        """Load the packs again; swap them in only without errors. A refused set is logged at
        ERROR with every diagnostic, kept in `.last_error` / `.last_errors` (`/healthz` reports
        "degraded" while it stays), counted in `.refused`, and passed to `on_error`."""
        with self._lock:
            snapshot = self._snapshot()
            before = self.current.version
            try:
                fresh = load_ruleset(self.paths)
            except PackErrors as exc:
                self.last_error = str(exc)
                self.last_errors = [str(e) for e in exc.errors]
                self.refused_at = datetime.now(UTC)
                self.refused += 1
                self._mtimes = snapshot
                _log.error(
                    "rule pack reload refused",
                    extra={
                        "trigger": trigger,
                        "pack_version": before,
                        "error_count": len(exc.errors),
                        "diagnostics": self.last_errors,
                    },
                )
                if self.on_error is not None:
                    self.on_error(exc)
                for listener in list(self.refused_listeners):
                    listener(trigger, exc)
                return False
            if self._warm_settings is not None:
                fresh.warm(self._warm_settings)
            self.current = fresh
            self.last_error = None
            self.last_errors = []
            self.refused_at = None
            self.loaded_at = datetime.now(UTC)
            self._mtimes = snapshot
            _log.info(
                "rule packs reloaded",
                extra={"trigger": trigger, "pack_version": fresh.version, "previous_version": before},
            )
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
                    self.reload(trigger="watch")

        self._thread = threading.Thread(target=loop, name="rules-watch", daemon=True)
        self._thread.start()
        return self._thread

    def stop_watching(self) -> None:
        self._stop.set()


__all__ = ["RuleSetHolder"]
