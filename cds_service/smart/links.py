"""The CDS Hooks Link to the trend view for patient-view cards: SMART in production, absolute in demo."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from cds_service.smart.oauth import FHIR_ID

LABELS = {
    "en": "Muscle and weight trend",
    "zh-CN": "肌肉与体重趋势图",
}


def trend_link(
    context: dict[str, Any], config: dict[str, Any], locale: str = "en"
) -> dict[str, Any] | None:
    """The Link to add to a patient-view card, or None when there is nothing to link to.

    Demo mode (`demo.enabled`): `{"type": "absolute", "url": "<base_url>/trend/<patientId>"}`.
    Production with `smart.enabled`: `{"type": "smart", "url": "<base_url>/trend/launch",
    "appContext": "patient=<patientId>"}`; the app takes the patient from the token response, the
    appContext is a hint only. None without `base_url`, without a usable `context.patientId`, or in
    production without `smart.enabled`."""
    patient = context.get("patientId") if isinstance(context, dict) else None
    base_url = config.get("base_url")
    if (
        not isinstance(patient, str)
        or not FHIR_ID.match(patient)
        or not isinstance(base_url, str)
        or not base_url
    ):
        return None
    base_url = base_url.rstrip("/")
    label = LABELS.get(locale) or LABELS["en"]
    if (config.get("demo") or {}).get("enabled"):
        return {
            "label": label,
            "url": f"{base_url}/trend/{quote(patient, safe='')}",
            "type": "absolute",
        }
    if not (config.get("smart") or {}).get("enabled"):
        return None
    return {
        "label": label,
        "url": f"{base_url}/trend/launch",
        "type": "smart",
        "appContext": f"patient={patient}",
    }
