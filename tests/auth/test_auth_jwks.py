"""JWK Sets: jwks_url refresh on unknown kid (rate-limited), caching, jku allow-listing."""

from __future__ import annotations

import pytest
from authkit import ENDPOINT, bearer, claims, jwk_set, sign

from cds_service.auth import AuthError
from cds_service.auth.jwks import fetch_json


def _reject(auth, token) -> str:
    with pytest.raises(AuthError) as info:
        auth.verify(bearer(token), ENDPOINT)
    return info.value.reason


@pytest.fixture
def url_auth(make_auth, keys, jwks_server, clock):
    """An issuer whose keys come only from jwks_url on the counting local server."""
    jwks_server.documents["/jwks.json"] = jwk_set(keys["ES384"])
    issuer = {"jwks": None, "jwks_url": jwks_server.url("/jwks.json")}
    return make_auth(issuer=issuer, clock=clock, jwks_min_refresh_seconds=30,
                     jwks_cache_seconds=3600)


def test_jwks_url_fetched_once_and_cached(url_auth, keys, jwks_server):
    for _ in range(3):
        assert url_auth.verify(bearer(sign(keys["ES384"], claims())), ENDPOINT)
    assert jwks_server.hits["/jwks.json"] == 1


def test_unknown_kid_triggers_one_refresh_then_401_and_is_rate_limited(
        url_auth, keys, other_key, jwks_server, clock):
    url_auth.verify(bearer(sign(keys["ES384"], claims())), ENDPOINT)
    assert jwks_server.hits["/jwks.json"] == 1
    clock.advance(31)
    assert _reject(url_auth, sign(other_key, claims())) == "unknown kid"
    assert jwks_server.hits["/jwks.json"] == 2
    for _ in range(5):  # within jwks_min_refresh_seconds: no further fetch
        assert _reject(url_auth, sign(other_key, claims())) == "unknown kid"
    clock.advance(29)
    assert _reject(url_auth, sign(other_key, claims())) == "unknown kid"
    assert jwks_server.hits["/jwks.json"] == 2
    clock.advance(2)
    assert _reject(url_auth, sign(other_key, claims())) == "unknown kid"
    assert jwks_server.hits["/jwks.json"] == 3


def test_unknown_kid_right_after_first_fetch_is_not_refetched(url_auth, keys, other_key,
                                                              jwks_server):
    url_auth.verify(bearer(sign(keys["ES384"], claims())), ENDPOINT)
    assert _reject(url_auth, sign(other_key, claims())) == "unknown kid"
    assert jwks_server.hits["/jwks.json"] == 1


def test_rotated_key_found_by_refresh(url_auth, keys, jwks_server, clock):
    url_auth.verify(bearer(sign(keys["ES384"], claims())), ENDPOINT)
    jwks_server.documents["/jwks.json"] = jwk_set(keys["ES384"], keys["RS384"])
    clock.advance(31)
    assert url_auth.verify(bearer(sign(keys["RS384"], claims())), ENDPOINT)
    assert jwks_server.hits["/jwks.json"] == 2


def test_cache_expires_after_jwks_cache_seconds(url_auth, keys, jwks_server, clock):
    url_auth.verify(bearer(sign(keys["ES384"], claims())), ENDPOINT)
    clock.advance(3601)
    url_auth.verify(bearer(sign(keys["ES384"], claims())), ENDPOINT)
    assert jwks_server.hits["/jwks.json"] == 2


def test_fetch_failure_keeps_cached_keys(url_auth, keys, jwks_server, clock):
    url_auth.verify(bearer(sign(keys["ES384"], claims())), ENDPOINT)
    del jwks_server.documents["/jwks.json"]  # now 404
    clock.advance(3601)
    assert url_auth.verify(bearer(sign(keys["ES384"], claims())), ENDPOINT)
    assert jwks_server.hits["/jwks.json"] == 2


def test_unreachable_jwks_url_fails_closed(make_auth, keys, clock):
    auth = make_auth(issuer={"jwks": None, "jwks_url": "http://127.0.0.1:1/jwks.json"},
                     clock=clock)
    assert _reject(auth, sign(keys["ES384"], claims())) == "unknown kid"


def test_unknown_kid_with_a_jku_not_on_allowlist_rejected_without_any_request(make_auth, keys, other_key,
                                                                             jwks_server):
    """A kid the configured JWK Set does not hold: the jku would decide, and it is not allow-listed."""
    jwks_server.documents["/evil.json"] = jwk_set(other_key)
    calls = []

    def spy(url, timeout):
        calls.append(url)
        return fetch_json(url, timeout)

    allowed = jwks_server.url("/good.json")
    for issuer in ({"jku_allowlist": [allowed]}, {}):
        auth = make_auth(issuer=issuer, fetch_json=spy)
        for jku in (jwks_server.url("/evil.json"), allowed + "?x", allowed.upper(), ["x"]):
            token = sign(other_key, claims(), jku=jku)
            assert _reject(auth, token) == "jku not on the issuer's allow-list"
    assert calls == []
    assert jwks_server.hits["/evil.json"] == 0 and sum(jwks_server.hits.values()) == 0


def test_a_kid_in_the_inline_set_is_verified_with_it_whatever_its_jku(make_auth, keys, other_key, jwks_server):
    """The sandbox's case: issuer configured with its JWK Set inline, token with a jku not allow-listed."""
    jwks_server.documents["/theirs.json"] = jwk_set(other_key)
    calls = []
    auth = make_auth(issuer={"jwks": jwk_set(keys["ES384"])},
                     fetch_json=lambda url, timeout: calls.append(url) or fetch_json(url, timeout))
    foreign = jwks_server.url("/theirs.json")
    assert auth.verify(bearer(sign(keys["ES384"], claims(), jku=foreign)), ENDPOINT)["iss"]
    assert calls == [] and sum(jwks_server.hits.values()) == 0
    # the kid decides the key: a token signed by another key under that kid fails its signature
    forged = sign(other_key, claims(), kid=keys["ES384"].kid, jku=foreign)
    assert _reject(auth, forged) == "signature invalid"


def test_a_kid_in_the_jwks_url_set_is_verified_with_it_whatever_its_jku(make_auth, keys, jwks_server, clock):
    """issuer.jwks_url set to the JWK Set (docs §6): the token's jku, allow-listed or not, is not fetched."""
    jwks_server.documents["/jwks.json"] = jwk_set(keys["ES384"])
    auth = make_auth(issuer={"jwks": None, "jwks_url": jwks_server.url("/jwks.json")}, clock=clock)
    for jku in (jwks_server.url("/jwks.json"), "https://sandbox.example/.well-known/jwks.json"):
        assert auth.verify(bearer(sign(keys["ES384"], claims(), jku=jku)), ENDPOINT)
    assert jwks_server.hits == {"/jwks.json": 1}


def test_jku_on_allowlist_is_used(make_auth, keys, jwks_server, clock):
    jwks_server.documents["/ehr-jwks.json"] = jwk_set(keys["RS384"])
    allowed = jwks_server.url("/ehr-jwks.json")
    auth = make_auth(issuer={"jwks": jwk_set(keys["ES384"]), "jku_allowlist": [allowed]},
                     clock=clock)
    assert auth.verify(bearer(sign(keys["RS384"], claims(), jku=allowed)), ENDPOINT)
    assert auth.verify(bearer(sign(keys["RS384"], claims(), jku=allowed)), ENDPOINT)
    assert jwks_server.hits["/ehr-jwks.json"] == 1
    # without jku the RS384 key is unknown (inline set only has ES384)
    assert _reject(auth, sign(keys["RS384"], claims())) == "unknown kid"


def test_jwks_with_private_or_symmetric_keys_are_ignored(make_auth, keys, jwks_server, clock):
    leaked = dict(keys["ES384"].jwk, d="AAAA")
    jwks_server.documents["/jwks.json"] = {"keys": [leaked, {"kty": "oct", "k": "c2VjcmV0",
                                                               "kid": "hmac"}]}
    auth = make_auth(issuer={"jwks": None, "jwks_url": jwks_server.url("/jwks.json")},
                     clock=clock)
    assert _reject(auth, sign(keys["ES384"], claims())) == "unknown kid"


def test_fetch_json_does_not_follow_redirects():
    import http.server
    import threading

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=httpd.handle_request, daemon=True).start()
    with pytest.raises(ValueError, match="HTTP 302"):
        fetch_json(f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json", 2.0)
    httpd.server_close()


def test_a_parsed_key_is_reused_for_the_same_jwk_and_not_for_a_rotated_one():
    from cds_service.auth.jwks import key_for
    from tests.support import tokens

    es, rs = tokens.jwks()["keys"]
    first = key_for(dict(es), "ES384")
    assert first is not None and key_for(dict(reversed(list(es.items()))), "ES384") is first
    rotated = {**es, "x": rs["n"][:64]}  # another point: not a valid P-384 key
    assert key_for(rotated, "ES384") is None
    assert key_for(rs, "RS384") is not None and key_for(rs, "RS384") is not first
    assert key_for(es, "RS384") is None  # the wrong key type for the algorithm, cached or not
