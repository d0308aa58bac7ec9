"""JWT attack matrix against the Authenticator, with real ES/RS keys generated per session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from authkit import BASE_URL, ENDPOINT, ISS, bearer, claims, drop, sign, unsigned

from cds_service.auth import AuthError


def _b64json(data) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _reason(auth, header, path=ENDPOINT) -> str:
    with pytest.raises(AuthError) as info:
        auth.verify(header, path)
    return info.value.reason


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_valid_default_algorithms_accepted(make_auth, keys, alg):
    auth = make_auth()
    token = sign(keys[alg], claims())
    got = auth.verify(bearer(token), ENDPOINT)
    assert got["iss"] == ISS and got["aud"] == BASE_URL + ENDPOINT


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_es256_rs256_accepted_only_when_configured(make_auth, keys, alg):
    token = sign(keys[alg], claims())
    assert "alg not allowed" in _reason(make_auth(), bearer(token))
    auth = make_auth(algorithms=["ES384", "RS384", "ES256", "RS256"])
    assert auth.verify(bearer(sign(keys[alg], claims())), ENDPOINT)["iss"] == ISS


def test_issuer_algorithms_narrow_the_global_list(make_auth, keys):
    auth = make_auth(issuer={"algorithms": ["ES384"]})
    assert auth.verify(bearer(sign(keys["ES384"], claims())), ENDPOINT)
    assert _reason(auth, bearer(sign(keys["RS384"], claims()))) == "alg not allowed for this issuer"


def test_key_bound_to_its_algorithm(make_auth, keys):
    """An RS384 key must not verify a token that claims RS256 (and vice versa)."""
    auth = make_auth(algorithms=["RS384", "RS256"])
    token = sign(keys["RS384"], claims(), sign_alg="RS256")  # signed RS256 with the RS384 key
    assert _reason(auth, bearer(token)) == "unknown kid"


def test_alg_none_rejected(make_auth, keys):
    for alg in ("none", "None", "NONE"):
        token = unsigned({"alg": alg, "typ": "JWT", "kid": keys["ES384"].kid}, claims())
        assert _reason(make_auth(), bearer(token)) == "alg none is forbidden"


def test_hs256_with_public_key_pem_as_secret_rejected(make_auth, keys):
    """Algorithm confusion: HMAC keyed with the issuer's public key."""
    from cryptography.hazmat.primitives import serialization

    for alg in ("RS384", "ES384"):
        pem = keys[alg].private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        header = {"alg": "HS256", "typ": "JWT", "kid": keys[alg].kid}
        signing_input = f"{_b64json(header)}.{_b64json(claims())}"
        mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        token = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
        assert _reason(make_auth(), bearer(token)) == "alg not allowed"


def test_wrong_aud_rejected(make_auth, keys):
    for aud in ("sand_man", "https://other.example.org" + ENDPOINT, BASE_URL, [], ["x"], 7):
        token = sign(keys["ES384"], claims(aud=aud))
        assert _reason(make_auth(), bearer(token)) == "aud does not match this endpoint"


def test_aud_of_another_service_rejected(make_auth, keys):
    token = sign(keys["ES384"], claims(aud=BASE_URL + "/cds-services/a"))
    auth = make_auth()
    assert _reason(auth, bearer(token), "/cds-services/b") == "aud does not match this endpoint"
    assert auth.verify(bearer(token), "/cds-services/a")["aud"].endswith("/a")


def test_aud_array_accepted_when_one_entry_matches(make_auth, keys):
    token = sign(keys["ES384"], claims(aud=["https://x.example", BASE_URL + ENDPOINT]))
    assert make_auth().verify(bearer(token), ENDPOINT)


@pytest.mark.parametrize("aud", [
    BASE_URL + ENDPOINT + "/",
    "HTTPS://CDS.Example.ORG" + ENDPOINT,
    "https://cds.example.org:443" + ENDPOINT,
])
def test_aud_normalisation_trailing_slash_case_default_port(make_auth, keys, aud):
    assert make_auth().verify(bearer(sign(keys["ES384"], claims(aud=aud))), ENDPOINT)


def test_aud_behind_proxy_uses_base_url_not_request_host(keys):
    """base_url with a path prefix and a trailing slash; Flask sees only the local path."""
    from cds_service.auth import Authenticator
    from authkit import jwk_set

    auth = Authenticator({"issuers": [{"iss": ISS, "jwks": jwk_set(keys["ES384"])}]},
                         "https://gateway.example.org:8443/sarcopenia/")
    aud = "https://GATEWAY.example.org:8443/sarcopenia/cds-services/"
    assert auth.verify(bearer(sign(keys["ES384"], claims(aud=aud))), "/cds-services")


def test_expired_rejected(make_auth, keys):
    now = claims()["iat"]
    token = sign(keys["ES384"], claims(exp=now - 120, iat=now - 400))
    assert _reason(make_auth(), bearer(token)) == "token expired"


def test_expired_within_skew_accepted(make_auth, keys):
    now = claims()["iat"]
    token = sign(keys["ES384"], claims(exp=now - 30, iat=now - 300))
    assert make_auth().verify(bearer(token), ENDPOINT)


def test_iat_in_future_beyond_skew_rejected(make_auth, keys):
    now = claims()["iat"]
    token = sign(keys["ES384"], claims(iat=now + 120, exp=now + 300))
    assert _reason(make_auth(), bearer(token)) == "iat in the future"


def test_lifetime_over_maximum_rejected(make_auth, keys):
    token = sign(keys["ES384"], claims(lifetime=901))
    assert "lifetime" in _reason(make_auth(), bearer(token))
    assert make_auth().verify(bearer(sign(keys["ES384"], claims(lifetime=900))), ENDPOINT)


@pytest.mark.parametrize("name", ["exp", "iat"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), "1700000000", True])
def test_non_numeric_times_rejected(make_auth, keys, name, value):
    token = sign(keys["ES384"], claims(**{name: value}))
    assert _reason(make_auth(), bearer(token))


def test_nbf_in_future_rejected(make_auth, keys):
    now = claims()["iat"]
    token = sign(keys["ES384"], claims(nbf=now + 300))
    assert "nbf" in _reason(make_auth(), bearer(token))


def test_untrusted_iss_rejected(make_auth, keys):
    token = sign(keys["ES384"], claims(iss="https://evil.example.org"))
    assert _reason(make_auth(), bearer(token)) == "untrusted iss"


def test_key_of_unknown_signer_rejected(make_auth, keys, other_key):
    """The attacker reuses a known kid but signs with their own key."""
    token = sign(other_key, claims(), kid=keys["ES384"].kid)
    assert _reason(make_auth(), bearer(token)) == "signature invalid"


def test_tampered_payload_rejected(make_auth, keys):
    token = sign(keys["ES384"], claims())
    head, _, sig = token.split(".")
    forged = base64.urlsafe_b64encode(json.dumps(
        claims(aud=BASE_URL + "/cds-services/other")).encode()).rstrip(b"=").decode()
    reason = _reason(make_auth(), bearer(f"{head}.{forged}.{sig}"), "/cds-services/other")
    assert reason == "signature invalid"


def test_tampered_signature_rejected(make_auth, keys):
    token = sign(keys["RS384"], claims())
    flipped = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    assert _reason(make_auth(), bearer(flipped)) in ("signature invalid", "malformed token")


@pytest.mark.parametrize("name", ["iss", "aud", "exp", "iat", "jti"])
def test_each_required_claim_missing_rejected(make_auth, keys, name):
    token = sign(keys["ES384"], claims(**{name: drop()}))
    assert _reason(make_auth(), bearer(token)) == f"missing claim {name}"


@pytest.mark.parametrize("name", ["alg", "kid", "typ"])
def test_each_required_header_missing_rejected(make_auth, keys, name):
    token = sign(keys["ES384"], claims(), **{name: drop()})
    assert _reason(make_auth(), bearer(token)).startswith(("missing header", "header typ"))


def test_typ_other_than_jwt_rejected(make_auth, keys):
    token = sign(keys["ES384"], claims(), typ="at+jwt")
    assert _reason(make_auth(), bearer(token)) == "header typ must be JWT"


def test_crit_header_rejected(make_auth, keys):
    token = sign(keys["ES384"], claims(), crit=["exp"])
    assert _reason(make_auth(), bearer(token)) in ("crit header not supported", "malformed token")


def test_missing_authorization_header_rejected(make_auth):
    for header in (None, "", "   "):
        assert _reason(make_auth(), header) == "missing Authorization header"


def test_scheme_not_bearer_rejected(make_auth, keys):
    token = sign(keys["ES384"], claims())
    for header in (f"Basic {token}", f"Token {token}", token):
        assert _reason(make_auth(), header) in ("authorization scheme is not Bearer",)


def test_bearer_scheme_case_insensitive(make_auth, keys):
    assert make_auth().verify("bearer " + sign(keys["ES384"], claims()), ENDPOINT)
    assert make_auth().verify("BEARER " + sign(keys["ES384"], claims()), ENDPOINT)


@pytest.mark.parametrize("garbage", [
    "Bearer", "Bearer x.y", "Bearer not-a-jwt", "Bearer a.b.c", "Bearer ....",
    "Bearer eyJhbGciOiJFUzM4NCJ9.e30", "Bearer a b", "Bearer " + "A" * 20000 + ".a.a",
    "Bearer e30.W10.AA",  # payload is a JSON array
])
def test_garbage_token_rejected(make_auth, garbage):
    assert _reason(make_auth(), garbage)


def test_tenant_checked_when_issuer_lists_tenants(make_auth, keys):
    auth = make_auth(issuer={"tenants": ["t1"]})
    assert auth.verify(bearer(sign(keys["ES384"], claims(tenant="t1"))), ENDPOINT)
    assert "tenant" in _reason(auth, bearer(sign(keys["ES384"], claims(tenant="t2"))))
    assert "tenant" in _reason(auth, bearer(sign(keys["ES384"], claims())))
    assert make_auth().verify(bearer(sign(keys["ES384"], claims(tenant="any"))), ENDPOINT)


def test_reason_never_contains_the_token(make_auth, keys, other_key):
    tokens = [sign(other_key, claims(), kid=keys["ES384"].kid),
              sign(keys["ES384"], claims(lifetime=5000)),
              sign(keys["ES384"], claims(iss="x")), "a.b.c"]
    for token in tokens:
        reason = _reason(make_auth(), bearer(token))
        for part in token.split("."):
            assert len(part) < 4 or part not in reason
