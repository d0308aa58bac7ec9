"""Layered configuration: defaults, then the YAML file in SARCOPENIA_CDS_CONFIG, then environment."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ENV_FILE = "SARCOPENIA_CDS_CONFIG"
ENV_PREFIX = "SARCOPENIA_CDS_"

#: Every configuration key with its default. docs/configuration.md documents each one.
DEFAULTS: dict[str, Any] = {
    "base_url": None,
    "host": "127.0.0.1",
    "port": 8080,
    "locale": "en",
    "auth": {
        "required": True,
        "discovery_requires_auth": True,
        "issuers": [],
        "algorithms": ["ES384", "RS384"],
        "max_token_lifetime_seconds": 900,
        "clock_skew_seconds": 60,
        "jwks_cache_seconds": 3600,
        "jwks_min_refresh_seconds": 30,
        "replay_window_seconds": 1200,
        "replay_key_prefix": "sarcopenia-cds:jti:",
    },
    "cors": {
        "origins": [],
        "max_age_seconds": 600,
    },
    "database": {
        "url": "sqlite:///sarcopenia-cds.db",
        "card_journal": True,
    },
    "redis": {
        "url": None,
    },
    "rules": {
        "paths": [],
        "profile": "ewgsop2",
        "ct_cutoffs": None,
        "watch": True,
        "watch_interval_seconds": 2.0,
        "finding_system": "https://sarcopenia-cds.org/CodeSystem/finding",
    },
    "limits": {
        "max_body_bytes": 16 * 1024 * 1024,
        "max_prefetch_resources": 5000,
        "max_bundle_pages": 10,
    },
    "fhir": {
        "budget_seconds": 2.0,
        "connect_timeout_seconds": 0.5,
        "read_timeout_seconds": 1.5,
        "retries": 1,
        "backoff_seconds": 0.1,
        "breaker_failures": 5,
        "breaker_reset_seconds": 30.0,
        "allow_http": True,
        "open_servers": [],
        "allow_private_addresses": False,
    },
    "privacy": {
        "pseudonym_key": None,
        "pseudonym_key_file": None,
    },
    "metrics": {
        "token": None,
        "port": None,
        "host": "127.0.0.1",
    },
    "suppression": {
        "override_days": {
            "patient-declined": 90,
            "already-under-care": 90,
            "palliative-focus": 180,
            "measurement-doubtful": 14,
        },
        "default_override_days": 30,
        "accepted_referral_days": 90,
    },
    "smart": {
        "enabled": False,
        "client_id": None,
        "client_secret": None,
        "scopes": "launch openid fhirUser patient/Patient.read patient/Observation.read "
                  "patient/MedicationRequest.read patient/Condition.read",
        "allowed_issuers": [],
        "redirect_uri": None,
        "session_ttl_seconds": 300,
        "http_timeout_seconds": 5.0,
        "fhir_budget_seconds": 10.0,
        "browser_binding": True,
        "session_key_prefix": "sarcopenia-cds:smart:",
    },
    "admin": {
        "oidc_issuer": None,
        "audience": None,
        "role_claim": "roles",
        "role": "cds-governance",
        "tokens": [],
        "jwks_url": None,
    },
    "retention": {
        "days": None,
    },
    "logging": {
        "level": "INFO",
        "format": "json",
    },
    "demo": {
        "enabled": False,
    },
    "bulk": {
        "client_id": None,
        "private_key_file": None,
        "algorithm": "ES384",
        "token_url": None,
        "kid": None,
    },
}


def _schema_for(value: Any, path: str) -> dict[str, Any]:
    """A strict JSON Schema fragment for one default value."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, list):
        return {"type": "array"}
    if isinstance(value, dict):
        return {
            "type": "object",
            "properties": {k: _schema_for(v, f"{path}.{k}") for k, v in value.items()},
            "additionalProperties": path.endswith("override_days"),
        }
    return {}


#: Keys whose types the defaults cannot show (null defaults, enums, free maps).
_SPECIAL: dict[str, dict[str, Any]] = {
    "base_url": {"type": ["string", "null"], "pattern": "^https?://"},
    "locale": {"enum": ["en", "zh-CN"]},
    "database.url": {"type": "string", "minLength": 1},
    "redis.url": {"type": ["string", "null"]},
    "rules.profile": {"enum": ["ewgsop2", "awgs2019"]},
    "rules.ct_cutoffs": {"enum": [None, "martin2013", "prado2008", "zhuang2016"]},
    "rules.paths": {"type": "array", "items": {"type": "string"}},
    "privacy.pseudonym_key": {"type": ["string", "null"]},
    "privacy.pseudonym_key_file": {"type": ["string", "null"], "minLength": 1},
    "metrics.token": {"type": ["string", "null"], "minLength": 16},
    "metrics.port": {"type": ["integer", "null"], "minimum": 1, "maximum": 65535},
    "auth.algorithms": {
        "type": "array",
        "items": {"enum": ["ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]},
    },
    "auth.issuers": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["iss"],
            "additionalProperties": False,
            "properties": {
                "iss": {"type": "string", "minLength": 1},
                "jwks": {"type": "object"},
                "jwks_url": {"type": "string"},
                "jku_allowlist": {"type": "array", "items": {"type": "string"}},
                "algorithms": {"type": "array", "items": {"type": "string"}},
                "tenants": {"type": "array", "items": {"type": "string"}},
                "audiences": {"type": "array", "items": {"type": "string", "minLength": 1}},
                "fhir_servers": {"type": "array", "items": {"type": "string", "pattern": "^https?://"}},
            },
        },
    },
    "cors.origins": {"type": "array", "items": {"type": "string"}},
    "smart.client_id": {"type": ["string", "null"]},
    "smart.client_secret": {"type": ["string", "null"]},
    "smart.redirect_uri": {"type": ["string", "null"], "pattern": "^https?://"},
    "smart.allowed_issuers": {"type": "array", "items": {"type": "string", "pattern": "^https?://"}},
    "smart.session_ttl_seconds": {"type": "integer", "minimum": 1},
    "smart.http_timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
    "smart.fhir_budget_seconds": {"type": "number", "exclusiveMinimum": 0},
    "logging.level": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR"]},
    "logging.format": {"enum": ["json", "text"]},
    "suppression.override_days": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
    "fhir.budget_seconds": {"type": "number", "exclusiveMinimum": 0},
    "fhir.open_servers": {"type": "array", "items": {"type": "string", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]+"}},
    "admin.oidc_issuer": {"type": ["string", "null"], "pattern": "^https?://"},
    "admin.audience": {"type": ["string", "null"]},
    "admin.jwks_url": {"type": ["string", "null"], "pattern": "^https?://"},
    "admin.tokens": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name", "sha256"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            },
        },
    },
    "retention.days": {"type": ["integer", "null"], "minimum": 1},
    "bulk.client_id": {"type": ["string", "null"]},
    "bulk.private_key_file": {"type": ["string", "null"]},
    "bulk.algorithm": {"enum": ["ES384", "RS384"]},
    "bulk.token_url": {"type": ["string", "null"], "pattern": "^https?://"},
    "bulk.kid": {"type": ["string", "null"]},
}


def _build_schema() -> dict[str, Any]:
    schema = _schema_for(DEFAULTS, "")
    for dotted, fragment in _SPECIAL.items():
        node = schema
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node["properties"][part]
        node["properties"][parts[-1]] = fragment
    return schema


CONFIG_SCHEMA = _build_schema()


class ConfigError(ValueError):
    """A configuration value that stops start-up; the message names the key."""


def all_keys(node: Mapping[str, Any] = DEFAULTS, prefix: str = "") -> list[str]:
    """Every dotted configuration key (leaves only), in definition order."""
    keys: list[str] = []
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and not dotted.endswith("override_days"):
            keys.extend(all_keys(value, dotted + "."))
        else:
            keys.append(dotted)
    return keys


def _merge(base: dict[str, Any], override: Mapping[str, Any], where: str) -> None:
    for key, value in override.items():
        if key not in base and not where.endswith("override_days"):
            raise ConfigError(f"unknown configuration key '{where}{key}'")
        if isinstance(base.get(key), dict) and isinstance(value, Mapping) and not (where + key).endswith("override_days"):
            _merge(base[key], value, f"{where}{key}.")
        else:
            base[key] = value


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """SARCOPENIA_CDS_<SECTION>__<KEY>=value, values parsed as YAML scalars/JSON."""
    result: dict[str, Any] = {}
    lookup = {k.upper(): k for k in all_keys()}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_FILE:
            continue
        dotted_upper = name[len(ENV_PREFIX):].replace("__", ".")
        dotted = lookup.get(dotted_upper)
        if dotted is None:
            raise ConfigError(f"unknown configuration key '{dotted_upper.lower()}' (from environment variable {name})")
        value = _parse_env_value(dotted, raw)
        node = result
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


def _schema_fragment(dotted: str) -> dict[str, Any]:
    node: dict[str, Any] = CONFIG_SCHEMA
    for part in dotted.split("."):
        node = node.get("properties", {}).get(part, {})
    return node


def _parse_env_value(dotted: str, raw: str) -> Any:
    """Text for string keys (a value like 'cds:jti:' stays text); YAML for everything else."""
    fragment = _schema_fragment(dotted)
    kinds = fragment.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if "string" in kinds and not {"array", "object"} & set(kinds):
        return None if raw == "" and "null" in kinds else raw
    if raw == "":
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _validate(config: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(CONFIG_SCHEMA)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for error in errors:
            key = ".".join(str(p) for p in error.absolute_path) or "(root)"
            lines.append(f"configuration key '{key}': {error.message}")
        raise ConfigError("; ".join(lines))


def load_config(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Defaults, then the YAML file named by SARCOPENIA_CDS_CONFIG, then env, then overrides."""
    environ = os.environ if environ is None else environ
    config = copy.deepcopy(DEFAULTS)
    file_name = environ.get(ENV_FILE)
    if file_name:
        path = Path(file_name)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"{ENV_FILE}={file_name}: cannot read the file ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{ENV_FILE}={file_name}: not valid YAML ({exc})") from exc
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{ENV_FILE}={file_name}: the file must hold a mapping of keys")
        _merge(config, loaded, "")
    _merge(config, _env_overrides(environ), "")
    if overrides:
        _merge(config, json.loads(json.dumps(overrides)), "")
    _validate(config)
    if config["rules"]["ct_cutoffs"] is None:
        config["rules"]["ct_cutoffs"] = "zhuang2016" if config["rules"]["profile"] == "awgs2019" else "martin2013"
    if config["base_url"] is None:
        config["base_url"] = f"http://{config['host']}:{config['port']}"
    config["base_url"] = config["base_url"].rstrip("/")
    return config
