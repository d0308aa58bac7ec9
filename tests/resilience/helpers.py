"""Shared pieces of the resilience tests: the patient, requests with or without prefetch, timing."""

from __future__ import annotations

import time
from typing import Any

from tests.support.ehr import hook_request, prefetch_for
from tests.support.patients import severe_sarcopenia

PV = "/cds-services/sarcopenia-patient-view"
WARNINGS = "org.sarcopenia-cds.warnings"
BUDGET = 2.0  # fhir.budget_seconds, the default
SLACK = 0.2  # the allowance over the budget
UNKNOWN = "; rules reading {} were evaluated as unknown, so cards may be missing"


def authorization(token: str = "at-resilience") -> dict[str, Any]:
    return {"access_token": token, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read",
            "subject": "sarcopenia-cds"}


def fetching_body(ehr, server_base: str, keep: tuple[str, ...] = ("patient",), token: str = "at-resilience",
                  patient_id: str = "sev-1", resources: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A patient-view request whose prefetch holds only `keep`; the rest must come from server_base."""
    prefetch = prefetch_for(resources or severe_sarcopenia(), ehr.templates("patient-view"))
    body = hook_request("patient-view", patient_id, {k: v for k, v in prefetch.items() if k in keep})
    body["fhirServer"] = server_base
    body["fhirAuthorization"] = authorization(token)
    return body


def full_body(ehr, resources: list[dict[str, Any]] | None = None, patient_id: str = "sev-1") -> dict[str, Any]:
    return hook_request("patient-view", patient_id, prefetch_for(resources or severe_sarcopenia(),
                                                                 ehr.templates("patient-view")))


def timed(call, *args, **kwargs) -> tuple[Any, float]:
    started = time.monotonic()
    result = call(*args, **kwargs)
    return result, time.monotonic() - started


def warnings_of(body: dict[str, Any], code: str | None = None) -> list[str]:
    return [w["message"] for w in (body.get("extension") or {}).get(WARNINGS, []) if code is None or w["code"] == code]


def topics(body: dict[str, Any]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in body.get("cards", [])]


def diagnostics(body: dict[str, Any]) -> list[str]:
    assert body["resourceType"] == "OperationOutcome", body
    return [i["diagnostics"] for i in body["issue"]]


DIETITIAN = "103699006"


def suggestion_codes(card: dict[str, Any]) -> list[str]:
    """The first action code of each suggestion of a card (SNOMED for referrals)."""
    codes = []
    for suggestion in card.get("suggestions", []):
        for action in suggestion.get("actions", []):
            coding = ((action.get("resource") or {}).get("code") or {}).get("coding") or [{}]
            codes.append(coding[0].get("code"))
    return codes


def all_suggestion_codes(body: dict[str, Any]) -> list[str]:
    return [code for card in body.get("cards", []) for code in suggestion_codes(card)]
