"""Server-side launch sessions, keyed by the OAuth `state`: in-process TTL dict, or Redis.

A session lives from /trend/launch to /trend/callback: the PKCE verifier, the issuer, its token
endpoint and the browser-binding hash. It is taken (read and deleted in one step) at the callback,
so a `state` works once; it never holds an access token. The in-process store is per worker: with
several workers, either route the callback to the worker that served the launch (sticky sessions)
or set `redis.url` so that every worker sees every session.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REDIS_TIMEOUT_SECONDS = 0.5


class SessionStoreError(Exception):
    """The session store cannot be used now (Redis down); the message is safe to show."""


def state_key(state: str) -> str:
    """The store key (and the log id) of a state: its SHA-256, so the state itself is never stored or logged."""
    return hashlib.sha256(state.encode()).hexdigest()


def state_id(state: str) -> str:
    """A short hash of the state for log lines."""
    return state_key(state)[:16]


class SessionStore(Protocol):
    def put(self, state: str, session: dict[str, Any], ttl_seconds: float) -> None:
        """Keep `session` under `state` for `ttl_seconds`."""

    def take(self, state: str) -> dict[str, Any] | None:
        """The session (deleting it), or None when unknown or expired."""


class MemorySessionStore:
    """One worker's sessions; expired entries are purged on every put."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._items: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def put(self, state: str, session: dict[str, Any], ttl_seconds: float) -> None:
        now = self.clock()
        with self._lock:
            self._items = {k: v for k, v in self._items.items() if v[0] > now}
            self._items[state_key(state)] = (now + ttl_seconds, dict(session))

    def take(self, state: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._items.pop(state_key(state), None)
        if found is None or found[0] <= self.clock():
            return None
        return found[1]

    def __len__(self) -> int:
        now = self.clock()
        with self._lock:
            return sum(1 for expires, _ in self._items.values() if expires > now)


class RedisSessionStore:
    """Sessions shared by all workers: `SET prefix+sha256(state) json EX ttl`, taken with GETDEL."""

    def __init__(
        self,
        url: str | None,
        prefix: str,
        timeout: float = REDIS_TIMEOUT_SECONDS,
        client: redis.Redis | None = None,
    ) -> None:
        self.prefix = prefix
        self.client = client or redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            health_check_interval=30,
            retry=Retry(NoBackoff(), 1),
        )

    def put(self, state: str, session: dict[str, Any], ttl_seconds: float) -> None:
        try:
            self.client.set(
                self.prefix + state_key(state),
                json.dumps(session),
                ex=max(1, math.ceil(ttl_seconds)),
            )
        except redis.RedisError as exc:
            raise SessionStoreError(
                f"the session store is unavailable ({type(exc).__name__})"
            ) from None

    def take(self, state: str) -> dict[str, Any] | None:
        try:
            raw = self.client.getdel(self.prefix + state_key(state))
        except redis.RedisError as exc:
            raise SessionStoreError(
                f"the session store is unavailable ({type(exc).__name__})"
            ) from None
        if raw is None:
            return None
        try:
            found = json.loads(raw)
        except ValueError:
            return None
        return found if isinstance(found, dict) else None


def make_session_store(redis_url: str | None, prefix: str) -> SessionStore:
    """Redis when `redis.url` is set, else the in-process store."""
    if redis_url:
        return RedisSessionStore(redis_url, prefix)
    return MemorySessionStore()
