"""The SMART on FHIR EHR launch of the trend view (/trend/launch, /trend/callback) and the CDS Hooks
Link that opens it.

`register_smart(app, config)` adds the routes (they answer 404 unless `smart.enabled`);
`trend_link(context, config, locale)` gives the Link for patient-view cards. The charts are the
demo's (`cds_service.demo.trend.build_charts`/`render_charts`); only the data source differs: the
EHR's FHIR API with the launch's access token. docs/integrating-with-an-ehr.md §8 describes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask

from cds_service.config import DEFAULTS
from cds_service.fhir.client import FhirClient
from cds_service.fhir.egress import EgressPolicy
from cds_service.smart.links import LABELS, trend_link
from cds_service.smart.sessions import (
    MemorySessionStore,
    RedisSessionStore,
    SessionStore,
    make_session_store,
)
from cds_service.smart.settings import SMART_DEFAULTS, SmartConfigError, SmartSettings

__all__ = [
    "LABELS",
    "SMART_DEFAULTS",
    "MemorySessionStore",
    "RedisSessionStore",
    "SmartConfigError",
    "SmartSettings",
    "SmartState",
    "register_smart",
    "trend_link",
]


@dataclass
class SmartState:
    """What the launch routes share: settings, the session store and a FHIR client."""

    settings: SmartSettings
    sessions: SessionStore
    fhir: FhirClient


def _fhir_client(config: dict[str, Any]) -> FhirClient:
    fhir = {**DEFAULTS["fhir"], **(config.get("fhir") or {})}
    fhir["max_bundle_pages"] = (config.get("limits") or {}).get("max_bundle_pages", DEFAULTS["limits"]["max_bundle_pages"])
    allowed = (config.get("smart") or {}).get("allowed_issuers") or ()
    return FhirClient(fhir, egress=EgressPolicy(fhir, trusted=[i for i in allowed if isinstance(i, str)]))


def register_smart(app: Flask, config: dict[str, Any]) -> SmartState:
    """Add /trend/launch and /trend/callback to `app` (settings from `config["smart"]`).

    Calling it again replaces the settings and the session store (the routes stay registered)."""
    from cds_service.smart import views

    settings = SmartSettings.from_config(config)
    state = SmartState(
        settings=settings,
        sessions=make_session_store(settings.redis_url, settings.session_key_prefix),
        fhir=_fhir_client(config),
    )
    if "smart" not in app.extensions:
        app.register_blueprint(views.bp)
    app.extensions["smart"] = state
    return state
