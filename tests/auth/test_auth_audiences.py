"""auth.issuers[].audiences: extra `aud` values accepted for that issuer only (Epic-style fixed audience)."""

from __future__ import annotations

import pytest
from authkit import BASE_URL, ENDPOINT, ISS, bearer, claims, jwk_set, sign

from cds_service.auth import AuthError
from cds_service.config import ConfigError

EPIC_AUD = "urn:health-system:cds:sarcopenia"  # a value the health system types into its EHR, for every service
OTHER_ISS = "https://other-ehr.example.org"


@pytest.fixture
def two_issuers(make_auth, keys):
    """ISS (ES384) lists EPIC_AUD as an extra audience; OTHER_ISS (RS384) lists none."""
    return make_auth(issuers=[
        {"iss": ISS, "jwks": jwk_set(keys["ES384"]), "audiences": [EPIC_AUD, "https://ehr.example.org/cds/"]},
        {"iss": OTHER_ISS, "jwks": jwk_set(keys["RS384"])},
    ])


def _reason(auth, token, endpoint=ENDPOINT) -> str:
    with pytest.raises(AuthError) as info:
        auth.verify(bearer(token), endpoint)
    return info.value.reason


def test_an_extra_audience_is_accepted_for_its_issuer_on_every_endpoint(two_issuers, keys):
    for endpoint in (ENDPOINT, "/cds-services", "/cds-services/sarcopenia-screen/feedback"):
        token = sign(keys["ES384"], claims(aud=EPIC_AUD))
        assert two_issuers.verify(bearer(token), endpoint)["aud"] == EPIC_AUD
    # an array holding it, and a URL audience compared as a normalised URL (no trailing slash, host case)
    assert two_issuers.verify(bearer(sign(keys["ES384"], claims(aud=["x", EPIC_AUD]))), ENDPOINT)
    assert two_issuers.verify(bearer(sign(keys["ES384"], claims(aud="https://EHR.example.org/cds"))), ENDPOINT)


def test_the_extra_audience_is_refused_for_another_issuer(two_issuers, keys):
    token = sign(keys["RS384"], claims(aud=EPIC_AUD, iss=OTHER_ISS))
    assert _reason(two_issuers, token) == "aud does not match this endpoint"
    # that issuer's own endpoint audience still works
    assert two_issuers.verify(bearer(sign(keys["RS384"], claims(iss=OTHER_ISS))), ENDPOINT)["iss"] == OTHER_ISS


def test_an_audience_that_is_neither_is_refused(two_issuers, keys):
    for aud in ("urn:health-system:cds:other", EPIC_AUD.upper(), BASE_URL + "/cds-services/another"):
        assert _reason(two_issuers, sign(keys["ES384"], claims(aud=aud))) == "aud does not match this endpoint"


def test_audiences_must_be_non_empty_strings(make_auth, keys):
    with pytest.raises(ConfigError, match=r"auth.issuers\[0\].audiences"):
        make_auth(issuer={"audiences": ["ok", " "]})


def test_a_doubled_slash_in_the_endpoint_url_is_the_same_audience(make_auth, keys):
    """A discovery URL typed with a slash: the client signs aud …/cds-services//id for the endpoint /id."""
    token = sign(keys["ES384"], claims(aud=BASE_URL + "/cds-services//sarcopenia-screen"))
    assert make_auth().verify(bearer(token), ENDPOINT)
