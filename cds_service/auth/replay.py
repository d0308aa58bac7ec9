"""``jti`` replay stores: in-process TTL dict, or Redis ``SET NX EX`` shared by all workers."""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cds_service.auth.errors import AuthError

log = logging.getLogger("cds_service.auth")

DEFAULT_PREFIX = "sarcopenia-cds:jti:"
REDIS_TIMEOUT_SECONDS = 0.5


def replay_key(iss: str, jti: str) -> str:
    """A fixed-length store key for one (issuer, jti) pair."""
    return hashlib.sha256(f"{iss}\x00{jti}".encode()).hexdigest()


class ReplayStore(Protocol):
    """Remembers (iss, jti) pairs until they expire."""

    def add(self, key: str, ttl_seconds: float) -> bool:
        """Record ``key``; True when it was new, False when it is a replay."""

    def ping(self) -> bool:
        """True when the store can record jtis now."""


class MemoryReplayStore:
    """In-process store: correct for one worker only."""

    PURGE_EVERY = 1024

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._adds = 0

    def add(self, key: str, ttl_seconds: float) -> bool:
        now = self._clock()
        with self._lock:
            self._adds += 1
            if self._adds % self.PURGE_EVERY == 0:
                self._seen = {k: t for k, t in self._seen.items() if t > now}
            expires = self._seen.get(key)
            if expires is not None and expires > now:
                return False
            self._seen[key] = now + ttl_seconds
            return True

    def ping(self) -> bool:
        return True


class RedisReplayStore:
    """Shared store: ``SET prefix+key 1 NX EX ttl``; any Redis error fails closed."""

    def __init__(self, url: str | None, prefix: str = DEFAULT_PREFIX,
                 timeout: float = REDIS_TIMEOUT_SECONDS, max_connections: int = 64,
                 client: redis.Redis | None = None) -> None:
        self._prefix = prefix
        self._client = client or redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            health_check_interval=30,
            max_connections=max_connections,
            retry=Retry(NoBackoff(), 1),
        )

    def add(self, key: str, ttl_seconds: float) -> bool:
        try:
            created = self._client.set(self._prefix + key, b"1", nx=True,
                                       ex=max(1, math.ceil(ttl_seconds)))
        except redis.RedisError as exc:
            log.error("replay store unavailable",
                      extra={"error": type(exc).__name__, "effect": "token rejected"})
            raise AuthError(f"replay store unavailable ({type(exc).__name__})") from None
        return bool(created)

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False


def make_replay_store(redis_url: str | None, prefix: str = DEFAULT_PREFIX) -> ReplayStore:
    """Redis when ``redis_url`` is set, else the in-process store."""
    if redis_url:
        return RedisReplayStore(redis_url, prefix)
    return MemoryReplayStore()
