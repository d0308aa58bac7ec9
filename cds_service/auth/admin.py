"""Who may use /admin: bearer tokens from the configured OpenID Connect issuer, or static tokens.

- OIDC (``admin.oidc_issuer``): a JWT signed by a key of the issuer's JWK Set (``admin.jwks_url``,
  else the ``jwks_uri`` of its ``/.well-known/openid-configuration``), with ``iss`` the issuer,
  ``aud`` containing ``admin.audience``, not expired, and the role ``admin.role`` in the claim
  ``admin.role_claim`` (a dotted path such as ``realm_access.roles``; a list or a space-separated
  string). The actor recorded is ``oidc:<sub>``.
- Static tokens (``admin.tokens``: ``{name, sha256}``): the SHA-256 of the presented token must
  equal a configured digest (compared in constant time); only digests are configured, never the
  tokens. The actor is ``token:<name>``.
Neither configured: /admin is off (404). Tokens are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from dataclasses import dataclass
from typing import Any

import jwt
import requests

log = logging.getLogger("cds_service.auth")

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]


class AdminDenied(Exception):
    """A request /admin refuses: ``status`` 401 (no or bad token) or 403 (no role)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Operator:
    """Who an accepted token belongs to."""

    actor: str


def token_digest(token: str) -> str:
    """The value to configure in ``admin.tokens[].sha256`` for ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class AdminGate:
    """Checks an Authorization header against the ``admin`` configuration."""

    def __init__(self, config: dict[str, Any], *, http_timeout: float = 5.0) -> None:
        self.issuer = config.get("oidc_issuer")
        self.audience = config.get("audience")
        self.role_claim = config.get("role_claim") or "roles"
        self.role = config.get("role") or "cds-governance"
        self.jwks_url = config.get("jwks_url")
        self.tokens = [(t["name"], t["sha256"].lower()) for t in config.get("tokens") or []]
        self._timeout = http_timeout
        self._client: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()
        if self.issuer and not self.audience:
            raise ValueError("admin.oidc_issuer needs admin.audience")

    @property
    def enabled(self) -> bool:
        return bool(self.issuer or self.tokens)

    def check(self, header: str | None) -> Operator:
        """The operator a bearer token belongs to, or AdminDenied."""
        if not header or not header.startswith("Bearer ") or not header[7:].strip():
            raise AdminDenied(401, "a bearer token is required for /admin")
        token = header[7:].strip()
        digest = token_digest(token)
        for name, expected in self.tokens:
            if hmac.compare_digest(digest, expected):
                return Operator(f"token:{name}")
        if self.issuer and token.count(".") == 2:
            return self._check_jwt(token)
        raise AdminDenied(401, "the bearer token is not valid for /admin")

    def _check_jwt(self, token: str) -> Operator:
        try:
            key = self._jwks().get_signing_key_from_jwt(token)
            claims = jwt.decode(token, key.key, algorithms=ALGORITHMS, audience=self.audience,
                                issuer=self.issuer, options={"require": ["exp", "iss", "aud", "sub"]})
        except (jwt.PyJWTError, requests.RequestException) as exc:
            log.warning("admin token rejected", extra={"reason": type(exc).__name__})
            raise AdminDenied(401, "the bearer token is not valid for /admin") from None
        if self.role not in _roles(claims, self.role_claim):
            raise AdminDenied(403, f"the token lacks the role '{self.role}' in claim '{self.role_claim}'")
        return Operator(f"oidc:{claims['sub']}")

    def _jwks(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._client is None:
                url = self.jwks_url
                if not url:
                    discovery = requests.get(f"{self.issuer.rstrip('/')}/.well-known/openid-configuration",
                                             timeout=self._timeout)
                    discovery.raise_for_status()
                    url = discovery.json()["jwks_uri"]
                self._client = jwt.PyJWKClient(url, cache_keys=True, lifespan=3600, timeout=self._timeout)
            return self._client


def _roles(claims: dict[str, Any], path: str) -> set[str]:
    """The roles at a dotted claim path: a list of strings or one space-separated string."""
    node: Any = claims
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, str):
        return set(node.split())
    if isinstance(node, list):
        return {r for r in node if isinstance(r, str)}
    return set()
