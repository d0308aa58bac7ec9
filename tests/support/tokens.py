"""Test EHR keys and JWTs: real ES384 / RS384 keys, signed the way a CDS client signs them."""

from __future__ import annotations

import json
import time
import uuid
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://ehr.test/fhir"


@cache
def es384_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@cache
def rs384_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks() -> dict[str, Any]:
    """The test EHR's public JWK Set (both keys)."""
    keys = []
    for kid, key, alg in (("ehr-es384", es384_key(), "ES384"), ("ehr-rs384", rs384_key(), "RS384")):
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
        jwk.update({"kid": kid, "alg": alg, "use": "sig"})
        keys.append(jwk)
    return {"keys": keys}


def issuer_config() -> dict[str, Any]:
    """An `auth.issuers` entry trusting the test EHR."""
    return {"iss": ISSUER, "jwks": jwks()}


def token(aud: str, *, alg: str = "ES384", lifetime: int = 300, **claims: Any) -> str:
    """A valid CDS Hooks JWT for `aud` (the endpoint URL), signed by the test EHR."""
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": aud, "exp": now + lifetime, "iat": now, "jti": str(uuid.uuid4()), **claims}
    key, kid = (es384_key(), "ehr-es384") if alg == "ES384" else (rs384_key(), "ehr-rs384")
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})
