"""The unverified first read of a JWT (issuer and key lookup only): malformed tokens are
refused before any key is looked at, and a well-formed one reads as PyJWT reads it."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from authkit import ENDPOINT, bearer, claims, sign

from cds_service.auth import AuthError
from cds_service.auth.verify import _unverified


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json(value) -> str:
    return _segment(json.dumps(value).encode())


HEADER = _json({"alg": "ES384", "typ": "JWT", "kid": "k1"})
PAYLOAD = _json({"iss": "https://ehr.example.org", "jti": "j1"})


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(f"{HEADER}.{PAYLOAD}", id="two segments"),
        pytest.param(f"{HEADER}.{PAYLOAD}.sig.extra", id="four segments"),
        pytest.param(f"{HEADER}x.{PAYLOAD}.sig", id="header length 1 mod 4"),
        pytest.param(f"{HEADER}.{PAYLOAD}=.sig", id="padding in a segment"),
        pytest.param(f"{HEADER}.{PAYLOAD[:-2]}+/.sig", id="base64 (not base64url) alphabet"),
        pytest.param(f"{_segment(b'not json')}.{PAYLOAD}.sig", id="header not JSON"),
        pytest.param(f"{HEADER}.{_segment(b'{')}.sig", id="payload not JSON"),
        pytest.param(f"{_json(['alg'])}.{PAYLOAD}.sig", id="header a JSON array"),
        pytest.param(f"{HEADER}.{_json('claims')}.sig", id="payload a JSON string"),
        pytest.param(f"{HEADER}.{_segment(bytes([0xff, 0xfe]))}.sig", id="payload not UTF-8"),
        pytest.param(f"{HEADER}.{_segment(b'[' * 100000)}.sig", id="payload nested too deep"),
    ],
)
def test_malformed_token_refused(token):
    with pytest.raises(AuthError) as info:
        _unverified(token)
    assert info.value.reason == "malformed token"


def test_reads_header_and_payload_as_pyjwt_does(keys):
    token = sign(keys["RS384"], claims())
    header, payload = _unverified(token)
    assert header == jwt.get_unverified_header(token)
    assert payload == jwt.decode(token, options={"verify_signature": False})


def test_malformed_token_refused_by_the_authenticator(make_auth):
    auth = make_auth()
    with pytest.raises(AuthError) as info:
        auth.verify(bearer(f"{_segment(b'not json')}.{PAYLOAD}.sig"), ENDPOINT)
    assert info.value.reason == "malformed token"
