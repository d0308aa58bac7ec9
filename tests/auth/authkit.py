"""Helpers for the auth tests: fresh keys, token building, a counting JWKS HTTP server."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

BASE_URL = "https://cds.example.org"
ENDPOINT = "/cds-services/sarcopenia-screen"
ISS = "https://ehr.example.org"
_DROP = object()


@dataclass
class TestKey:
    """One generated key pair and its public JWK."""

    alg: str
    kid: str
    private: Any
    jwk: dict[str, Any]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _make_key(alg: str) -> TestKey:
    if alg.startswith("ES"):
        curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1()}[alg]
        private = ec.generate_private_key(curve)
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    kid = f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
    jwk.update({"kid": kid, "use": "sig", "alg": alg})
    return TestKey(alg, kid, private, jwk)


@pytest.fixture(scope="session")
def keys() -> dict[str, TestKey]:
    """Fresh ES256, ES384, RS256 and RS384 key pairs (never written to disk)."""
    return {alg: _make_key(alg) for alg in ("ES256", "ES384", "RS256", "RS384")}


@pytest.fixture(scope="session")
def other_key() -> TestKey:
    """An ES384 key the service does not know (an attacker's)."""
    return _make_key("ES384")


def jwk_set(*test_keys: TestKey) -> dict[str, Any]:
    """A public JWK Set of the given keys."""
    return {"keys": [dict(k.jwk) for k in test_keys]}


def claims(aud: Any = BASE_URL + ENDPOINT, lifetime: int = 300, **overrides: Any) -> dict:
    """A valid claim set; pass name=_DROP (see ``drop``) to remove one."""
    now = int(time.time())
    body = {"iss": ISS, "aud": aud, "exp": now + lifetime, "iat": now, "jti": uuid.uuid4().hex}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not _DROP}


def drop() -> object:
    """Marker to remove a claim or header in ``claims`` / ``sign``."""
    return _DROP


def sign(key: TestKey, payload: dict, sign_alg: str | None = None, **header: Any) -> str:
    """A compact JWS signed by PyJWT's algorithm objects, with full control of the header."""
    alg = sign_alg or key.alg
    head = {"alg": alg, "typ": "JWT", "kid": key.kid}
    head.update(header)
    head = {k: v for k, v in head.items() if v is not _DROP}
    signing_input = f"{_b64(json.dumps(head).encode())}.{_b64(json.dumps(payload).encode())}"
    algorithm = jwt.get_algorithm_by_name(alg)
    signature = algorithm.sign(signing_input.encode(), algorithm.prepare_key(key.private))
    return f"{signing_input}.{_b64(signature)}"


def unsigned(header: dict, payload: dict, signature: bytes = b"") -> str:
    """A compact JWS with an arbitrary header and signature bytes."""
    head, body = _b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode())
    return f"{head}.{body}.{_b64(signature)}"


def bearer(token: str) -> str:
    """The Authorization header value for ``token``."""
    return f"Bearer {token}"


@pytest.fixture
def make_auth(keys):
    """Build an Authenticator trusting ISS with an inline JWK Set of all test keys."""
    from cds_service.auth import Authenticator

    def build(issuer: dict | None = None, **auth_cfg: Any) -> Authenticator:
        iss_cfg = {"iss": ISS, "jwks": jwk_set(*keys.values())}
        iss_cfg.update(issuer or {})
        cfg = {"issuers": [iss_cfg], **auth_cfg}
        extra = {k: cfg.pop(k) for k in ("fetch_json", "redis_url", "clock", "replay_store")
                 if k in cfg}
        fetch, redis_url = extra.pop("fetch_json", None), extra.pop("redis_url", None)
        return Authenticator(cfg, BASE_URL, redis_url, fetch, **extra)

    return build


class JwksServer:
    """A local HTTP server on 127.0.0.1 serving JSON documents and counting hits per path."""

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.hits[self.path] += 1
                doc = server.documents.get(self.path)
                body = json.dumps(doc).encode() if doc is not None else b"{}"
                self.send_response(200 if doc is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server():
    """A counting JWKS server for the test; shut down afterwards."""
    server = JwksServer()
    yield server
    server.close()


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
