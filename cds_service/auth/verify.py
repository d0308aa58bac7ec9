"""The Authenticator: checks a CDS Hooks 2.0 Bearer JWT for one endpoint (spec §Security)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import api_jws
from jwt.exceptions import ExpiredSignatureError, InvalidSignatureError, PyJWTError

from cds_service.auth.audience import audience_matches, expected_audience
from cds_service.auth.errors import AuthError
from cds_service.auth.jwks import ALGORITHM_KEYS, FetchJson, IssuerKeys, key_for
from cds_service.auth.jwks import fetch_json as default_fetch_json
from cds_service.auth.replay import DEFAULT_PREFIX, ReplayStore, make_replay_store, replay_key
from cds_service.config import DEFAULTS, ConfigError

log = logging.getLogger("cds_service.auth")

REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")
MAX_TOKEN_CHARS = 16 * 1024
MAX_JTI_CHARS = 256
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_UNSAFE_RE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class TrustedIssuer:
    """One configured EHR: its allowed algorithms, keys and optional tenant allow-list."""

    iss: str
    algorithms: frozenset[str]
    keys: IssuerKeys
    tenants: frozenset[str] | None


def _algorithms(value: Any, key: str, allowed: frozenset[str] | None = None) -> frozenset[str]:
    """Validate an algorithm list: asymmetric only; never ``none`` or HS*."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"configuration key '{key}': must be a non-empty list of algorithms")
    for alg in value:
        if alg not in ALGORITHM_KEYS:
            raise ConfigError(
                f"configuration key '{key}': {alg!r} is not an allowed JWT algorithm "
                f"(asymmetric only: {', '.join(ALGORITHM_KEYS)}; 'none' and HS* are forbidden)"
            )
        if allowed is not None and alg not in allowed:
            raise ConfigError(f"configuration key '{key}': {alg!r} is not in auth.algorithms")
    return frozenset(value)


def _number(cfg: Mapping[str, Any], name: str, minimum: float) -> float:
    value = cfg[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"configuration key 'auth.{name}': must be a number >= {minimum}")
    return float(value)


def _safe(value: Any, limit: int = 128) -> str | None:
    """A log-safe, truncated rendering of an attacker-supplied header or claim value."""
    if not isinstance(value, str):
        return None
    return _UNSAFE_RE.sub("?", value[:limit])


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload of a compact JWS, without checking anything."""
    try:
        parts = api_jws.decode_complete(token, options={"verify_signature": False})
        payload = json.loads(parts["payload"])
    except (PyJWTError, ValueError, TypeError):
        raise AuthError("malformed token") from None
    if not isinstance(parts.get("header"), dict) or not isinstance(payload, dict):
        raise AuthError("malformed token")
    return parts["header"], payload


def bearer_token(authorization_header: str | None) -> str:
    """The token of an ``Authorization: Bearer <jwt>`` header (scheme case-insensitive)."""
    if not authorization_header or not authorization_header.strip():
        raise AuthError("missing Authorization header")
    parts = authorization_header.split()
    if parts[0].lower() != "bearer":
        raise AuthError("authorization scheme is not Bearer")
    if len(parts) != 2:
        raise AuthError("malformed Bearer credentials")
    token = parts[1]
    if len(token) > MAX_TOKEN_CHARS or not _TOKEN_RE.match(token):
        raise AuthError("malformed token")
    return token


def token_hints(authorization_header: str | None) -> dict[str, str | None]:
    """``iss`` and ``kid`` for logging, if the header decodes; never the token itself."""
    try:
        header, payload = _unverified(bearer_token(authorization_header))
    except AuthError:
        return {"iss": None, "kid": None}
    return {"iss": _safe(payload.get("iss")), "kid": _safe(header.get("kid"))}


class Authenticator:
    """Verifies CDS Hooks 2.0 JWTs from the trusted issuers in the ``auth`` configuration."""

    def __init__(
        self,
        auth_config: Mapping[str, Any],
        base_url: str,
        redis_url: str | None = None,
        fetch_json: FetchJson | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        replay_store: ReplayStore | None = None,
    ) -> None:
        cfg = {**DEFAULTS["auth"], **dict(auth_config)}
        if not isinstance(base_url, str) or expected_audience(base_url, "/cds-services") is None:
            raise ConfigError("configuration key 'base_url': must be an absolute http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.required = bool(cfg["required"])
        self.discovery_requires_auth = bool(cfg["discovery_requires_auth"])
        self.algorithms = _algorithms(cfg["algorithms"], "auth.algorithms")
        self.max_lifetime = _number(cfg, "max_token_lifetime_seconds", 1)
        self.skew = _number(cfg, "clock_skew_seconds", 0)
        self.replay_window = _number(cfg, "replay_window_seconds", 1)
        if self.replay_window < self.max_lifetime + 2 * self.skew:
            raise ConfigError(
                "configuration key 'auth.replay_window_seconds': must be at least "
                "max_token_lifetime_seconds + 2 * clock_skew_seconds, or replays could slip through"
            )
        fetch = fetch_json or default_fetch_json
        self._issuers = {}
        for index, raw in enumerate(cfg["issuers"] or []):
            issuer = self._issuer(raw, f"auth.issuers[{index}]", fetch, cfg, clock)
            if issuer.iss in self._issuers:
                raise ConfigError(f"configuration key 'auth.issuers[{index}].iss': duplicate issuer")
            self._issuers[issuer.iss] = issuer
        if self.required and not self._issuers:
            log.warning("auth.required is true but no issuers are trusted: every call will get 401",
                        extra={"event": "auth_no_issuers"})
        prefix = cfg.get("replay_key_prefix") or DEFAULT_PREFIX
        self._replay = replay_store or make_replay_store(redis_url, prefix)

    def _issuer(self, raw: Any, key: str, fetch: FetchJson, cfg: Mapping[str, Any],
                clock: Callable[[], float]) -> TrustedIssuer:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("iss"), str) or not raw["iss"]:
            raise ConfigError(f"configuration key '{key}.iss': required, a non-empty string")
        jwks, jwks_url = raw.get("jwks"), raw.get("jwks_url")
        allow = list(raw.get("jku_allowlist") or [])
        if jwks is None and not jwks_url and not allow:
            raise ConfigError(f"configuration key '{key}': needs jwks, jwks_url or jku_allowlist")
        for url_key, url in [("jwks_url", jwks_url)] + [("jku_allowlist", u) for u in allow]:
            if url and (not isinstance(url, str) or expected_audience(url, "") is None):
                raise ConfigError(f"configuration key '{key}.{url_key}': not an http(s) URL")
        algs = raw.get("algorithms")
        algs = self.algorithms if algs is None else _algorithms(algs, f"{key}.algorithms",
                                                                self.algorithms)
        tenants = raw.get("tenants")
        try:
            keys = IssuerKeys(
                raw["iss"], jwks=jwks, jwks_url=jwks_url, jku_allowlist=allow, fetch=fetch,
                cache_seconds=_number(cfg, "jwks_cache_seconds", 0),
                min_refresh_seconds=_number(cfg, "jwks_min_refresh_seconds", 0), clock=clock,
            )
        except ValueError as exc:
            raise ConfigError(f"configuration key '{key}.jwks': {exc}") from None
        if jwks is not None and not keys.has_inline_keys():
            raise ConfigError(f"configuration key '{key}.jwks': no public EC/RSA key with a kid")
        return TrustedIssuer(raw["iss"], algs, keys, frozenset(tenants) if tenants else None)

    def verify(self, authorization_header: str | None, endpoint_path: str) -> dict[str, Any]:
        """Verified claims of the request's JWT for ``endpoint_path``; raises AuthError."""
        try:
            return self._verify(authorization_header, endpoint_path)
        except AuthError:
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed on anything unexpected
            raise AuthError(f"internal verification error ({type(exc).__name__})") from None

    def _verify(self, authorization_header: str | None, endpoint_path: str) -> dict[str, Any]:
        token = bearer_token(authorization_header)
        header, unverified = _unverified(token)
        alg, kid = self._check_header(header)
        iss = unverified.get("iss")
        if not isinstance(iss, str) or not iss:
            raise AuthError("missing claim iss")
        issuer = self._issuers.get(iss)
        if issuer is None:
            raise AuthError("untrusted iss")
        if alg not in issuer.algorithms:
            raise AuthError("alg not allowed for this issuer")
        audience = expected_audience(self.base_url, endpoint_path)
        self._check_claims(unverified, issuer, audience)  # cheap rejection before any key fetch
        keys = [k for jwk in issuer.keys.candidates(kid, header.get("jku"))
                if (k := key_for(jwk, alg)) is not None]
        if not keys:
            raise AuthError("unknown kid")
        claims = self._decode(token, keys, alg, iss)
        self._check_claims(claims, issuer, audience)
        ttl = min(max(claims["exp"] + self.skew - time.time(), 1.0), self.replay_window)
        if not self._replay.add(replay_key(iss, claims["jti"]), ttl):
            raise AuthError("jti replayed")
        return claims

    def _check_header(self, header: Mapping[str, Any]) -> tuple[str, str]:
        alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
        if not isinstance(alg, str) or not alg:
            raise AuthError("missing header alg")
        if alg.lower() == "none":
            raise AuthError("alg none is forbidden")
        if alg not in self.algorithms:
            raise AuthError("alg not allowed")
        if not isinstance(kid, str) or not kid:
            raise AuthError("missing header kid")
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise AuthError("header typ must be JWT")
        if "crit" in header:
            raise AuthError("crit header not supported")
        return alg, kid

    def _decode(self, token: str, keys: list[jwt.PyJWK], alg: str, iss: str) -> dict[str, Any]:
        for key in keys:
            try:
                return jwt.decode(
                    token, key=key, algorithms=[alg], issuer=iss, leeway=self.skew,
                    options={"require": list(REQUIRED_CLAIMS), "verify_aud": False,
                             "enforce_minimum_key_length": True},
                )
            except InvalidSignatureError:
                continue
            except ExpiredSignatureError:
                raise AuthError("token expired") from None
            except PyJWTError as exc:
                raise AuthError(f"token rejected ({type(exc).__name__})") from None
        raise AuthError("signature invalid")

    def _check_claims(self, claims: Mapping[str, Any], issuer: TrustedIssuer,
                      audience: str | None) -> None:
        for name in REQUIRED_CLAIMS:
            if claims.get(name) is None:
                raise AuthError(f"missing claim {name}")
        exp, iat, jti = claims["exp"], claims["iat"], claims["jti"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (exp, iat)):
            raise AuthError("exp and iat must be numbers")
        if not audience_matches(claims["aud"], audience):
            raise AuthError("aud does not match this endpoint")
        now = time.time()
        if exp + self.skew < now:
            raise AuthError("token expired")
        if iat - self.skew > now:
            raise AuthError("iat in the future")
        if exp - iat > self.max_lifetime:
            raise AuthError("token lifetime exceeds max_token_lifetime_seconds")
        nbf = claims.get("nbf")
        if nbf is not None and (not isinstance(nbf, (int, float)) or nbf - self.skew > now):
            raise AuthError("token not yet valid (nbf)")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_CHARS:
            raise AuthError("jti must be a non-empty string")
        if issuer.tenants is not None and claims.get("tenant") not in issuer.tenants:
            raise AuthError("tenant not allowed for this issuer")
