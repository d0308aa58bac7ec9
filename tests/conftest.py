"""Fixtures shared by the service tests: a configured app, a signing EHR client, a fixed clock."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests.support import tokens
from tests.support.ehr import EhrClient

BASE_URL = "http://cds.test"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def service_config(tmp_path, **overrides) -> dict:
    """Configuration for an app under test: SQLite in tmp_path, the test EHR trusted, no file watching."""
    config = {
        "base_url": BASE_URL,
        "database": {"url": f"sqlite:///{tmp_path / 'cds.db'}"},
        "auth": {"required": True, "issuers": [tokens.issuer_config()]},
        "rules": {"watch": False},
        "logging": {"format": "json", "level": "INFO"},
        "fhir": {"allow_private_addresses": True},  # the test FHIR servers listen on 127.0.0.1
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


@pytest.fixture()
def make_app(tmp_path):
    """Build an app with extra configuration: make_app(limits={...})."""
    from cds_service.app import create_app

    apps = []

    def build(**overrides):
        app = create_app(service_config(tmp_path, **overrides), clock=lambda: NOW)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["cds"].store.dispose()


@pytest.fixture()
def app(make_app):
    return make_app()


@pytest.fixture()
def ehr(app) -> EhrClient:
    return EhrClient(app.test_client(), BASE_URL)
