"""Trusted-issuer configuration (algorithms, key sources, tenants); ConfigError on misuse."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.auth.audience import normalise_url
from cds_service.auth.jwks import ALGORITHM_KEYS, FetchJson, IssuerKeys
from cds_service.config import ConfigError


@dataclass(frozen=True)
class TrustedIssuer:
    """One configured EHR: its allowed algorithms, keys and optional tenant allow-list."""

    iss: str
    algorithms: frozenset[str]
    keys: IssuerKeys
    tenants: frozenset[str] | None
    #: extra ``aud`` values accepted for this issuer only (an Epic-style fixed audience)
    audiences: frozenset[str] = frozenset()


def parse_algorithms(value: Any, key: str, allowed: frozenset[str] | None = None) -> frozenset[str]:
    """Validate an algorithm list: asymmetric only; never ``none`` or HS*."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"configuration key '{key}': must be a non-empty list of algorithms")
    for alg in value:
        if not isinstance(alg, str) or alg not in ALGORITHM_KEYS:
            raise ConfigError(
                f"configuration key '{key}': {alg!r} is not an allowed JWT algorithm "
                f"(asymmetric only: {', '.join(ALGORITHM_KEYS)}; 'none' and HS* are forbidden)"
            )
        if allowed is not None and alg not in allowed:
            raise ConfigError(f"configuration key '{key}': {alg!r} is not in auth.algorithms")
    return frozenset(value)


def number(cfg: Mapping[str, Any], name: str, minimum: float) -> float:
    """A numeric ``auth.<name>`` setting, at least ``minimum``."""
    value = cfg[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"configuration key 'auth.{name}': must be a number >= {minimum}")
    return float(value)


def parse_issuers(cfg: Mapping[str, Any], algorithms: frozenset[str], fetch: FetchJson,
                  clock: Callable[[], float]) -> dict[str, TrustedIssuer]:
    """The trusted issuers of ``auth.issuers`` by ``iss``; raises ConfigError naming the key."""
    issuers: dict[str, TrustedIssuer] = {}
    for index, raw in enumerate(cfg["issuers"] or []):
        issuer = _issuer(raw, f"auth.issuers[{index}]", cfg, algorithms, fetch, clock)
        if issuer.iss in issuers:
            raise ConfigError(f"configuration key 'auth.issuers[{index}].iss': duplicate issuer")
        issuers[issuer.iss] = issuer
    return issuers


def _issuer(raw: Any, key: str, cfg: Mapping[str, Any], algorithms: frozenset[str],
            fetch: FetchJson, clock: Callable[[], float]) -> TrustedIssuer:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("iss"), str) or not raw["iss"]:
        raise ConfigError(f"configuration key '{key}.iss': required, a non-empty string")
    jwks, jwks_url = raw.get("jwks"), raw.get("jwks_url")
    allow = list(raw.get("jku_allowlist") or [])
    if jwks is None and not jwks_url and not allow:
        raise ConfigError(f"configuration key '{key}': needs jwks, jwks_url or jku_allowlist")
    for url_key, url in [("jwks_url", jwks_url)] + [("jku_allowlist", u) for u in allow]:
        if url and (not isinstance(url, str) or normalise_url(url) is None):
            raise ConfigError(f"configuration key '{key}.{url_key}': not an http(s) URL")
    algs = raw.get("algorithms")
    algs = algorithms if algs is None else parse_algorithms(algs, f"{key}.algorithms", algorithms)
    tenants = raw.get("tenants")
    try:
        keys = IssuerKeys(
            raw["iss"], jwks=jwks, jwks_url=jwks_url, jku_allowlist=allow, fetch=fetch,
            cache_seconds=number(cfg, "jwks_cache_seconds", 0),
            min_refresh_seconds=number(cfg, "jwks_min_refresh_seconds", 0), clock=clock,
        )
    except ValueError as exc:
        raise ConfigError(f"configuration key '{key}.jwks': {exc}") from None
    if jwks is not None and not keys.has_inline_keys():
        raise ConfigError(f"configuration key '{key}.jwks': no public EC/RSA key with a kid")
    audiences = raw.get("audiences") or []
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a.strip() for a in audiences):
        raise ConfigError(f"configuration key '{key}.audiences': must be a list of non-empty strings")
    extra = frozenset(a.strip() for a in audiences) | frozenset(
        n for a in audiences if (n := normalise_url(a)) is not None)
    return TrustedIssuer(raw["iss"], algs, keys, frozenset(tenants) if tenants else None, extra)
