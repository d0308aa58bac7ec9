"""The patient's record for the trend view, read from the EHR's FHIR API with the launch's token
through the service's FHIR client (timeouts, one retry, same-origin paging up to
`limits.max_bundle_pages`, circuit breaker, urllib3 log lines without paths)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cds_service.demo.trend import CHARTS
from cds_service.fhir.client import Budget, FetchError, FhirClient
from cds_service.smart.oauth import LaunchError

#: value sets the charts read besides CHARTS' own (height for BMI and SMI, the L3 area for SMI)
EXTRA_VALUE_SETS = ("body-height", "l3-skeletal-muscle-area")


@dataclass
class Record:
    resources: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(
        default_factory=list
    )  # shown on the page (the charts may miss data)
    skipped: list[str] = field(default_factory=list)  # optional reads that failed (logged only)

    @property
    def patient(self) -> dict[str, Any]:
        return next((r for r in self.resources if r.get("resourceType") == "Patient"), {})


def observation_codes(ruleset: Any) -> list[str] | None:
    """`system|code` tokens for the charts' value sets, or None when one of them has prefixes or
    ranges (then every Observation of the patient is read and the trend code filters them)."""
    names = [spec.value_set for spec in CHARTS if spec.value_set] + list(EXTRA_VALUE_SETS)
    tokens: set[str] = set()
    value_sets = getattr(ruleset, "value_sets", None) or {}
    for name in names:
        value_set = value_sets.get(name)
        if value_set is None:
            continue
        if not getattr(value_set, "exact_only", False):
            return None
        tokens |= {f"{system}|{code}" for system, code in value_set.exact}
    return sorted(tokens) or None


def _entries(bundle: dict[str, Any], kind: str, patient: str) -> list[dict[str, Any]]:
    """The bundle's resources of `kind` that belong to `patient` (a server may add includes)."""
    found = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != kind:
            continue
        subject = (resource.get("subject") or {}).get("reference", "")
        if subject and subject.rsplit("/", 1)[-1] != patient:
            continue
        found.append(resource)
    return found


def read_record(
    client: FhirClient, iss: str, token: str, patient: str, ruleset: Any, budget_seconds: float
) -> Record:
    """Patient, Observations, MedicationRequests (required) and Conditions (for the header only)."""
    budget = Budget(budget_seconds)
    record = Record()
    try:
        resource, _ = client.fetch(iss, f"Patient/{patient}", token, budget)
    except FetchError as exc:
        raise LaunchError(
            502, f"the patient could not be read from the EHR: {exc}", "fhir Patient"
        ) from None
    if resource.get("resourceType") != "Patient" or resource.get("id") != patient:
        raise LaunchError(
            502,
            "the EHR answered a different resource than the launch's patient",
            "fhir Patient mismatch",
        )
    record.resources.append(resource)
    codes = observation_codes(ruleset)
    searches = [
        (
            "Observation",
            f"Observation?patient={patient}" + (f"&code={','.join(codes)}" if codes else ""),
            True,
        ),
        ("MedicationRequest", f"MedicationRequest?patient={patient}", True),
        ("Condition", f"Condition?patient={patient}", False),
    ]
    for kind, query, required in searches:
        try:
            bundle, warnings = client.fetch(iss, query, token, budget)
        except FetchError as exc:
            if required:
                raise LaunchError(
                    502,
                    f"the {kind} resources could not be read from the EHR: {exc}",
                    f"fhir {kind}",
                ) from None
            record.skipped.append(f"{kind}: {exc}")
            continue
        if bundle.get("resourceType") != "Bundle":
            if required:
                raise LaunchError(
                    502,
                    f"the EHR answered the {kind} search with a "
                    f"{bundle.get('resourceType')}, not a Bundle",
                    f"fhir {kind} not Bundle",
                )
            record.skipped.append(f"{kind}: not a Bundle")
            continue
        record.resources.extend(_entries(bundle, kind, patient))
        record.warnings.extend(f"{kind}: {w}" for w in warnings)
    return record
