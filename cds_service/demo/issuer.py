"""The demo EHR's identity: an ES384 key made at start (memory only), its JWK Set, signed CDS Hooks JWTs,
and opaque FHIR access tokens for the demo FHIR source."""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

#: lifetime of a signed CDS Hooks JWT (the spec recommends 5 minutes at most)
JWT_LIFETIME_SECONDS = 300
#: lifetime of a demo FHIR access token
FHIR_TOKEN_SECONDS = 900


@dataclass(frozen=True)
class FhirGrant:
    """What a demo FHIR access token allows: read one patient's compartment until `expires`."""

    patient: str | None
    expires: float


class DemoIssuer:
    """Signs JWTs as the demo EHR. The private key never leaves this object (nor the process)."""

    def __init__(self, base_url: str, *, kid: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.iss = f"{self.base_url}/demo"
        self.kid = kid or f"demo-es384-{uuid.uuid4().hex[:8]}"
        self._key = ec.generate_private_key(ec.SECP384R1())
        self._fhir_tokens: dict[str, FhirGrant] = {}
        self._lock = threading.Lock()

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set to trust (one ES384 key)."""
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self._key.public_key()))
        jwk.update({"kid": self.kid, "alg": "ES384", "use": "sig"})
        return {"keys": [jwk]}

    def issuer_config(self) -> dict[str, Any]:
        """An `auth.issuers` entry trusting this issuer with its inline JWK Set."""
        return {"iss": self.iss, "jwks": self.jwks(), "algorithms": ["ES384"]}

    def sign(
        self, path: str, *, now: float | None = None, lifetime: int = JWT_LIFETIME_SECONDS
    ) -> dict[str, Any]:
        """A fresh JWT for base_url + path, as a CDS client signs it, and its claims."""
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self.iss,
            "aud": self.base_url + path,
            "exp": issued + lifetime,
            "iat": issued,
            "jti": str(uuid.uuid4()),
        }
        token = jwt.encode(
            claims, self._key, algorithm="ES384", headers={"kid": self.kid, "typ": "JWT"}
        )
        return {"token": token, "claims": claims}

    def fhir_authorization(self, patient: str | None) -> dict[str, Any]:
        """A CDS Hooks `fhirAuthorization` object for the demo FHIR source (an opaque bearer token)."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            for old in [t for t, g in self._fhir_tokens.items() if g.expires < now]:
                del self._fhir_tokens[old]
            self._fhir_tokens[token] = FhirGrant(patient, now + FHIR_TOKEN_SECONDS)
        grant: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": FHIR_TOKEN_SECONDS,
            "scope": "patient/*.read" if patient else "user/*.read",
            "subject": "sarcopenia-cds-demo",
        }
        if patient:
            grant["patient"] = patient
        return grant

    def check_fhir_token(self, token: str | None) -> FhirGrant | None:
        """The grant of a valid, unexpired access token, else None."""
        if not token:
            return None
        with self._lock:
            grant = self._fhir_tokens.get(token)
        if grant is None or grant.expires < time.time():
            return None
        return grant
