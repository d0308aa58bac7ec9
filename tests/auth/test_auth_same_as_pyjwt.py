"""The signature and claim checks the Authenticator makes itself (verify._decode) accept and
refuse exactly the tokens PyJWT's jwt.decode did, on the edges where they could differ."""

from __future__ import annotations

import base64
import time

import jwt
import pytest
from authkit import ISS, bearer, claims, sign

from cds_service.auth.errors import AuthError


def pyjwt_accepts(token, key) -> bool:
    """What the Authenticator called before: jwt.decode with its options."""
    try:
        jwt.decode(token, key=jwt.PyJWK(key.jwk, algorithm=key.alg), algorithms=[key.alg], issuer=ISS,
                   leeway=60, options={"require": ["iss", "aud", "exp", "iat", "jti"], "verify_aud": False,
                                       "enforce_minimum_key_length": True})
    except jwt.PyJWTError:
        return False
    return True


def accepts(auth, token) -> bool:
    try:
        auth.verify(bearer(token), "/cds-services/sarcopenia-screen")
    except AuthError:
        return False
    return True


def _noncanonical(token: str) -> str:
    """The same bytes, but the unused bits of a segment's last base64url character set (the
    signature's where it has any: an RS384 signature's 342 characters; else the payload's, or the
    header's: an ES384 signature's 128 characters carry every bit)."""
    segments = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for index in (2, 1, 0):
        segment = segments[index]
        unused = {2: 4, 3: 2}.get(len(segment) % 4, 0)  # bits the last character does not carry
        if unused:
            last = alphabet.index(segment[-1])
            segments[index] = segment[:-1] + alphabet[last | ((1 << unused) - 1)]
            return ".".join(segments)
    raise AssertionError("no segment has unused bits")


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
@pytest.mark.parametrize(
    "case",
    ["valid", "exp fractional at the edge", "exp at the edge", "nbf null", "nbf in the future",
     "sub not a string", "sub a string", "non-canonical signature", "b64 false", "signature of another token"],
)
def test_the_same_verdict_as_pyjwt(make_auth, keys, alg, case):
    key = keys[alg]
    now = time.time()
    payload = claims()
    header = {}
    if case == "exp fractional at the edge":  # PyJWT compares whole seconds
        payload.update(exp=int(now) - 60 + 0.9, iat=int(now) - 100)
    elif case == "exp at the edge":
        payload.update(exp=int(now) - 59, iat=int(now) - 100)
    elif case == "nbf null":
        payload["nbf"] = None
    elif case == "nbf in the future":
        payload["nbf"] = int(now) + 600
    elif case == "sub not a string":
        payload["sub"] = 12
    elif case == "sub a string":
        payload["sub"] = "Practitioner/1"
    elif case == "b64 false":
        header["b64"] = False
    token = sign(key, payload, **header)
    if case == "non-canonical signature":
        token = _noncanonical(token)
    elif case == "signature of another token":
        other = sign(key, claims())
        token = token.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]
    expected = pyjwt_accepts(token, key)
    assert accepts(make_auth(), token) is expected
    if case in ("valid", "sub a string"):
        assert expected is True
    if case in ("sub not a string", "nbf null", "non-canonical signature", "b64 false", "signature of another token"):
        assert expected is False


def test_a_non_canonical_signature_is_refused_by_name(make_auth, keys):
    token = _noncanonical(sign(keys["RS384"], claims()))
    with pytest.raises(AuthError) as info:
        make_auth().verify(bearer(token), "/cds-services/sarcopenia-screen")
    assert info.value.reason == "token rejected (DecodeError)"
    assert base64.urlsafe_b64decode(token.split(".")[2] + "==")  # (still decodes: only its spare bits differ)
