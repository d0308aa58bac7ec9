"""Configuration: layering, validation with the key named, and a README entry for every key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cds_service.config import ConfigError, all_keys, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_alone_are_valid():
    config = load_config(environ={})
    assert config["rules"]["profile"] == "ewgsop2"
    assert config["rules"]["ct_cutoffs"] == "martin2013"
    assert config["base_url"] == "http://127.0.0.1:8080"
    assert config["database"]["url"] == "sqlite:///sarcopenia-cds.db"


def test_awgs_profile_defaults_to_zhuang_cutoffs():
    assert load_config({"rules": {"profile": "awgs2019"}}, environ={})["rules"]["ct_cutoffs"] == "zhuang2016"


@pytest.mark.parametrize(("profile", "expected"), [("ewgsop2", "martin2013"), ("awgs2019", "zhuang2016")])
def test_bundled_packs_default_to_the_ct_set_the_configuration_chooses(profile, expected):
    """A caller of the engine without rules.ct_cutoffs (the rules CLI, a notebook) gets the same
    CT L3 cut-offs as the service: the knowledge base's Martin 2013, and Zhuang 2016 for AWGS."""
    from cds_service.engine import load_ruleset

    assert load_ruleset(None).default_ct_cutoffs(profile) == expected
    assert load_config({"rules": {"profile": profile}}, environ={})["rules"]["ct_cutoffs"] == expected


def test_file_then_environment_then_overrides(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("locale: zh-CN\nrules:\n  profile: awgs2019\nlimits:\n  max_bundle_pages: 3\n", encoding="utf-8")
    environ = {"SARCOPENIA_CDS_CONFIG": str(path), "SARCOPENIA_CDS_LIMITS__MAX_BUNDLE_PAGES": "4",
               "SARCOPENIA_CDS_BASE_URL": "https://cds.example.org/"}
    config = load_config({"port": 9000}, environ=environ)
    assert config["locale"] == "zh-CN"
    assert config["rules"]["profile"] == "awgs2019"
    assert config["limits"]["max_bundle_pages"] == 4
    assert config["base_url"] == "https://cds.example.org"
    assert config["port"] == 9000


@pytest.mark.parametrize(("overrides", "environ", "message"), [
    ({"rules": {"profil": "x"}}, {}, "unknown configuration key 'rules.profil'"),
    ({}, {"SARCOPENIA_CDS_RULES__PROFIL": "x"}, "unknown configuration key 'rules.profil' (from environment variable SARCOPENIA_CDS_RULES__PROFIL)"),
    ({"limits": {"max_body_bytes": "big"}}, {}, "configuration key 'limits.max_body_bytes': 'big' is not of type 'integer'"),
    ({"rules": {"profile": "ewgsop3"}}, {}, "configuration key 'rules.profile': 'ewgsop3' is not one of ['ewgsop2', 'awgs2019']"),
    ({"auth": {"issuers": [{"jwks_url": "https://x"}]}}, {}, "configuration key 'auth.issuers.0': 'iss' is a required property"),
])
def test_bad_configuration_stops_with_the_key_named(overrides, environ, message):
    with pytest.raises(ConfigError) as error:
        load_config(overrides, environ=environ)
    assert str(error.value) == message


def test_string_keys_from_the_environment_stay_text():
    """A Redis prefix like 'cds:jti:' would be a YAML mapping; string keys are taken as written."""
    config = load_config(environ={"SARCOPENIA_CDS_AUTH__REPLAY_KEY_PREFIX": "cds:jti:",
                                  "SARCOPENIA_CDS_DATABASE__URL": "postgresql+psycopg://cds@db:5432/cds",
                                  "SARCOPENIA_CDS_REDIS__URL": "",
                                  "SARCOPENIA_CDS_AUTH__ISSUERS": '[{"iss": "https://ehr/fhir", "jwks_url": "https://ehr/jwks"}]',
                                  "SARCOPENIA_CDS_LIMITS__MAX_BODY_BYTES": "1024"})
    assert config["auth"]["replay_key_prefix"] == "cds:jti:"
    assert config["database"]["url"] == "postgresql+psycopg://cds@db:5432/cds"
    assert config["redis"]["url"] is None
    assert config["auth"]["issuers"] == [{"iss": "https://ehr/fhir", "jwks_url": "https://ehr/jwks"}]
    assert config["limits"]["max_body_bytes"] == 1024


def test_unreadable_config_file_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match=r"SARCOPENIA_CDS_CONFIG=.*missing.yaml: cannot read the file"):
        load_config(environ={"SARCOPENIA_CDS_CONFIG": str(tmp_path / "missing.yaml")})


def test_every_configuration_key_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", readme, re.M))
    assert set(all_keys()) - documented == set()
    assert documented - set(all_keys()) == set(), "README documents keys the code does not have"
