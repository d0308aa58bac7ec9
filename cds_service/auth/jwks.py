"""Per-issuer JWK Set cache: inline keys, jwks_url, and allow-listed ``jku`` URLs only."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import requests
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from cds_service.auth.errors import AuthError

log = logging.getLogger("cds_service.auth")

#: Asymmetric algorithms we can verify: JWK ``kty`` and, for EC, the curve each needs.
ALGORITHM_KEYS: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
}
_PRIVATE_PARAMS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
MAX_JWKS_BYTES = 256 * 1024
FETCH_TIMEOUT_SECONDS = 2.0

FetchJson = Callable[[str, float], Any]


def fetch_json(url: str, timeout: float) -> Any:
    """GET a JSON document: no redirects, short timeouts, size-capped."""
    with requests.get(
        url,
        timeout=(min(timeout, 1.0), timeout),
        allow_redirects=False,
        stream=True,
        headers={"Accept": "application/jwk-set+json, application/json"},
    ) as resp:
        if resp.status_code != 200:
            raise ValueError(f"HTTP {resp.status_code}")
        body = resp.raw.read(MAX_JWKS_BYTES + 1, decode_content=True)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError("JWK Set too large")
    return json.loads(body)


def public_signing_keys(jwk_set: Any) -> dict[str, list[dict[str, Any]]]:
    """The public EC/RSA signing keys of a JWK Set, by ``kid``; anything else is skipped."""
    if not isinstance(jwk_set, dict) or not isinstance(jwk_set.get("keys"), list):
        raise ValueError("not a JWK Set (an object with a 'keys' array)")
    keys: dict[str, list[dict[str, Any]]] = {}
    for jwk in jwk_set["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("EC", "RSA"):
            continue
        kid = jwk.get("kid")
        ops = jwk.get("key_ops")
        if (
            not isinstance(kid, str)
            or not kid
            or any(p in jwk for p in _PRIVATE_PARAMS)
            or jwk.get("use", "sig") != "sig"
            or (ops is not None and (not isinstance(ops, list) or "verify" not in ops))
        ):
            continue
        keys.setdefault(kid, []).append(jwk)
    return keys


#: how many parsed keys one process keeps (an issuer has a handful; rotation adds a few)
PARSED_KEYS_KEPT = 256
_parsed: dict[tuple[bytes, str], PyJWK | None] = {}
_parsed_lock = threading.Lock()


def key_for(jwk: dict[str, Any], alg: str) -> PyJWK | None:
    """A PyJWK bound to ``alg`` when the JWK's type, curve and own ``alg`` fit it, else None.

    Parsing a JWK into a key object costs more than a signature check with RSA, and every call
    presents one of the same few keys, so parsed keys are kept, by the JWK's exact content."""
    kty, crv = ALGORITHM_KEYS[alg]
    if jwk.get("kty") != kty or (crv and jwk.get("crv") != crv) or jwk.get("alg", alg) != alg:
        return None
    try:
        cache_key = (orjson.dumps(jwk, option=orjson.OPT_SORT_KEYS), alg)
    except (orjson.JSONEncodeError, TypeError):
        return _parse_key(jwk, alg)
    with _parsed_lock:
        if cache_key in _parsed:
            return _parsed[cache_key]
    key = _parse_key(jwk, alg)
    with _parsed_lock:
        if len(_parsed) >= PARSED_KEYS_KEPT:
            _parsed.clear()
        _parsed[cache_key] = key
    return key


def _parse_key(jwk: dict[str, Any], alg: str) -> PyJWK | None:
    try:
        return PyJWK(jwk, algorithm=alg)
    except (PyJWTError, ValueError, TypeError):
        return None


@dataclass
class _Remote:
    """One fetched JWK Set and when it was fetched / last attempted (monotonic seconds)."""

    keys: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fetched_at: float = float("-inf")
    attempted_at: float = float("-inf")


class IssuerKeys:
    """Verification keys of one trusted issuer, with cached, rate-limited remote refresh."""

    def __init__(
        self,
        iss: str,
        *,
        jwks: dict[str, Any] | None,
        jwks_url: str | None,
        jku_allowlist: list[str],
        fetch: FetchJson,
        cache_seconds: float,
        min_refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.iss = iss
        self._inline = public_signing_keys(jwks) if jwks is not None else {}
        self._jwks_url = jwks_url
        self._jku_allowlist = frozenset(jku_allowlist)
        self._fetch = fetch
        self._cache_seconds = cache_seconds
        self._min_refresh = min_refresh_seconds
        self._clock = clock
        self._remote: dict[str, _Remote] = {}
        self._lock = threading.Lock()

    def has_inline_keys(self) -> bool:
        """True when the inline JWK Set holds at least one usable key."""
        return bool(self._inline)

    def candidates(self, kid: str, jku: Any = None) -> list[dict[str, Any]]:
        """JWKs with this ``kid``: from the configured JWK Set (inline, then ``jwks_url``) whatever
        the token's ``jku``; only a ``kid`` found there in neither makes the ``jku`` count, and a
        ``jku`` is fetched only when it is on the allow-list."""
        if kid in self._inline:
            return self._inline[kid]
        if self._jwks_url:
            found = self._remote_keys(self._jwks_url, kid)
            if found:
                return found
        if jku is not None:
            if not isinstance(jku, str) or jku not in self._jku_allowlist:
                raise AuthError("jku not on the issuer's allow-list")
            return self._remote_keys(jku, kid)
        return []

    def _remote_keys(self, url: str, kid: str) -> list[dict[str, Any]]:
        with self._lock:
            entry = self._remote.setdefault(url, _Remote())
            now = self._clock()
            if now - entry.fetched_at >= self._cache_seconds and self._may_fetch(entry, now):
                self._refresh(url, entry, now)
            if kid not in entry.keys and self._may_fetch(entry, now):
                self._refresh(url, entry, now)
            return entry.keys.get(kid, [])

    def _may_fetch(self, entry: _Remote, now: float) -> bool:
        return now - entry.attempted_at >= self._min_refresh

    def _refresh(self, url: str, entry: _Remote, now: float) -> None:
        entry.attempted_at = now
        try:
            keys = public_signing_keys(self._fetch(url, FETCH_TIMEOUT_SECONDS))
        except Exception as exc:  # noqa: BLE001 - any fetch failure keeps the old keys
            log.warning("jwks fetch failed", extra={"iss": self.iss, "url": url,
                                                    "error": type(exc).__name__,
                                                    "cached_kids": sorted(entry.keys)})
            return
        entry.keys = keys
        entry.fetched_at = now
        log.info("jwks fetched", extra={"iss": self.iss, "url": url, "kids": sorted(keys)})
