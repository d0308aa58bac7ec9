"""SMART Backend Services: an access token by client_credentials with a signed JWT assertion.

SMART App Launch 2.x, "Backend Services": the client signs a JWT (RS384 or ES384) with
iss = sub = client_id, aud = the token URL, a fresh jti and an expiry at most five minutes away,
and posts it as client_assertion (type urn:ietf:params:oauth:client-assertion-type:jwt-bearer)
with grant_type client_credentials and the system scopes it needs."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import requests

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS384", "ES384")
#: the longest assertion lifetime Backend Services allows
MAX_ASSERTION_SECONDS = 300


class AuthError(RuntimeError):
    """The token endpoint refused or could not be reached; the message says which and why."""


@dataclass
class BackendClient:
    """A registered backend client: its id, private key (PEM), algorithm, and the token URL."""

    client_id: str
    private_key: str
    algorithm: str
    token_url: str
    kid: str | None = None

    @classmethod
    def from_config(cls, bulk: dict[str, Any], token_url: str | None = None) -> BackendClient | None:
        """The client from configuration `bulk.*`, or None when no client is configured (open server)."""
        if not bulk.get("client_id"):
            return None
        if not bulk.get("private_key_file"):
            raise AuthError("bulk.client_id is set but bulk.private_key_file is not")
        url = bulk.get("token_url") or token_url
        if not url:
            raise AuthError("no token URL: set bulk.token_url, or the server must advertise one in "
                            ".well-known/smart-configuration")
        algorithm = bulk.get("algorithm") or "ES384"
        if algorithm not in ALGORITHMS:
            raise AuthError(f"bulk.algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm}")
        try:
            key = Path(bulk["private_key_file"]).read_text(encoding="utf-8")
        except OSError as exc:
            raise AuthError(f"bulk.private_key_file: cannot read the key ({exc.strerror})") from exc
        return cls(bulk["client_id"], key, algorithm, url, bulk.get("kid"))

    def assertion(self, lifetime: int = MAX_ASSERTION_SECONDS) -> str:
        """A signed client assertion, valid for `lifetime` seconds (at most five minutes)."""
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.token_url, "jti": str(uuid.uuid4()),
                  "iat": now, "exp": now + min(lifetime, MAX_ASSERTION_SECONDS)}
        headers = {"typ": "JWT", **({"kid": self.kid} if self.kid else {})}
        return jwt.encode(claims, self.private_key, algorithm=self.algorithm, headers=headers)

    def token(self, scope: str, session: requests.Session, timeout: float = 30.0) -> tuple[str, float]:
        """(access token, seconds it is valid) for `scope`; AuthError when refused."""
        try:
            response = session.post(self.token_url, data={
                "grant_type": "client_credentials", "scope": scope,
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": self.assertion(),
            }, headers={"Accept": "application/json"}, timeout=timeout)
        except requests.RequestException as exc:
            raise AuthError(f"token endpoint {self.token_url} not reached ({type(exc).__name__})") from exc
        if response.status_code != 200:
            detail = ""
            try:
                body = response.json()
                detail = f": {body.get('error', '')} {body.get('error_description', '')}".rstrip()
            except ValueError:
                pass
            raise AuthError(f"token endpoint answered HTTP {response.status_code}{detail}")
        try:
            body = response.json()
            return str(body["access_token"]), float(body.get("expires_in", 300))
        except (ValueError, KeyError) as exc:
            raise AuthError("token endpoint answer holds no access_token") from exc
