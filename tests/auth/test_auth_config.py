"""Configuration-time refusals: symmetric or ``none`` algorithms, unusable key sources."""

from __future__ import annotations

import pytest
from authkit import ISS, jwk_set

from cds_service.auth import Authenticator
from cds_service.config import ConfigError, load_config

BASE = "https://cds.example.org"


def _issuer(keys, **extra):
    return {"iss": ISS, "jwks": jwk_set(keys["ES384"]), **extra}


@pytest.mark.parametrize("algs", [["HS256"], ["ES384", "HS384"], ["none"], ["None"], ["EdDSA"], []])
def test_symmetric_none_or_unknown_global_algorithms_refused(keys, algs):
    with pytest.raises(ConfigError, match="auth.algorithms"):
        Authenticator({"algorithms": algs, "issuers": [_issuer(keys)]}, BASE)


@pytest.mark.parametrize("algs", [["HS256"], ["none"], ["RS256"]])
def test_issuer_algorithms_must_be_asymmetric_and_within_global(keys, algs):
    with pytest.raises(ConfigError, match=r"auth.issuers\[0\].algorithms"):
        Authenticator({"issuers": [_issuer(keys, algorithms=algs)]}, BASE)


def test_issuer_needs_a_key_source():
    with pytest.raises(ConfigError, match="jwks, jwks_url or jku_allowlist"):
        Authenticator({"issuers": [{"iss": ISS}]}, BASE)


@pytest.mark.parametrize("jwks", [
    {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]},
    {"keys": []},
    {"nokeys": 1},
])
def test_inline_jwks_without_public_keys_refused(jwks):
    with pytest.raises(ConfigError, match="jwks"):
        Authenticator({"issuers": [{"iss": ISS, "jwks": jwks}]}, BASE)


def test_inline_private_key_refused(keys):
    leaked = dict(keys["ES384"].jwk, d="AAAA")
    with pytest.raises(ConfigError, match="jwks"):
        Authenticator({"issuers": [{"iss": ISS, "jwks": {"keys": [leaked]}}]}, BASE)


def test_duplicate_issuer_refused(keys):
    with pytest.raises(ConfigError, match="duplicate"):
        Authenticator({"issuers": [_issuer(keys), _issuer(keys)]}, BASE)


def test_bad_urls_refused(keys):
    with pytest.raises(ConfigError, match="jwks_url"):
        Authenticator({"issuers": [{"iss": ISS, "jwks_url": "file:///etc/passwd"}]}, BASE)
    with pytest.raises(ConfigError, match="jku_allowlist"):
        Authenticator({"issuers": [_issuer(keys, jku_allowlist=["ftp://x"])]}, BASE)
    with pytest.raises(ConfigError, match="base_url"):
        Authenticator({"issuers": [_issuer(keys)]}, "cds.example.org")


def test_replay_window_must_cover_token_lifetime(keys):
    with pytest.raises(ConfigError, match="replay_window_seconds"):
        Authenticator({"issuers": [_issuer(keys)], "replay_window_seconds": 600}, BASE)


def test_builds_from_the_default_configuration(keys):
    config = load_config(overrides={"auth": {"issuers": [_issuer(keys)]}}, environ={})
    auth = Authenticator(config["auth"], config["base_url"], config["redis"]["url"])
    assert auth.required and auth.discovery_requires_auth
    assert auth.algorithms == {"ES384", "RS384"}
