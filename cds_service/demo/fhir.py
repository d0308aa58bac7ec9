"""The demo FHIR source at /demo/fhir: read and search (by patient, code, status…) over the demo patients.

Small on purpose: R4 JSON, searchset Bundles with `_count` paging (absolute `next` links), a bearer
token issued by the demo (`fhirAuthorization`), and OperationOutcome errors. Unknown search
parameters are ignored, as a lenient FHIR server does (the Bundle's self link lists those applied).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, json, request

bp = Blueprint("demo_fhir", __name__)

FHIR_JSON = "application/fhir+json"
DEFAULT_COUNT = 50
MAX_COUNT = 500

#: search parameter -> path of the Coding(s) it matches, per resource type
CODE_PATHS = {
    "Observation": ("code",),
    "Condition": ("code",),
    "MedicationRequest": ("medicationCodeableConcept",),
    "MedicationStatement": ("medicationCodeableConcept",),
    "MedicationAdministration": ("medicationCodeableConcept",),
    "ServiceRequest": ("code",),
    "Procedure": ("code",),
    "ImagingStudy": ("procedureCode",),
    "Encounter": ("type",),
}

APPLIED = (
    "_id",
    "patient",
    "subject",
    "code",
    "status",
    "category",
    "clinical-status",
    "intent",
    "_count",
)


def _fhir(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype=FHIR_JSON)


def _outcome(status: int, code: str, message: str) -> Response:
    response = _fhir(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": message}],
        },
        status,
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="sarcopenia-cds-demo"'
    return response


def _state():
    return current_app.extensions["demo"]


def _grant():
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return _state().issuer.check_fhir_token(token.strip())


def _codings(value: Any) -> list[tuple[str | None, str | None]]:
    out: list[tuple[str | None, str | None]] = []
    values = value if isinstance(value, list) else [value]
    for item in values:
        if isinstance(item, dict):
            if "coding" in item:
                out.extend((c.get("system"), c.get("code")) for c in item.get("coding") or [])
            elif "code" in item:
                out.append((item.get("system"), item.get("code")))
        elif isinstance(item, str):
            out.append((None, item))
    return out


def _token_match(criteria: str, codings: list[tuple[str | None, str | None]]) -> bool:
    """FHIR token search: a comma list of `system|code`, `code` or `|code` (any matches)."""
    for one in criteria.split(","):
        if "|" in one:
            system, _, code = one.partition("|")
            system = system or None
            if any(
                (s == system if system else s is None) and (not code or c == code)
                for s, c in codings
            ):
                return True
        elif any(c == one for _, c in codings):
            return True
    return False


def _patient_of(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") == "Patient":
        return resource.get("id")
    ref = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    return ref.split("/", 1)[1] if ref.startswith("Patient/") else None


def _matches(resource: dict[str, Any], params: dict[str, str]) -> bool:
    rtype = resource["resourceType"]
    if "_id" in params and resource.get("id") not in params["_id"].split(","):
        return False
    if "code" in params:
        paths = CODE_PATHS.get(rtype, ("code",))
        if not _token_match(params["code"], [c for p in paths for c in _codings(resource.get(p))]):
            return False
    if "status" in params and resource.get("status") not in params["status"].split(","):
        return False
    if "intent" in params and resource.get("intent") not in params["intent"].split(","):
        return False
    if "category" in params and not _token_match(
        params["category"], _codings(resource.get("category") or [])
    ):
        return False
    if "clinical-status" in params and not _token_match(
        params["clinical-status"], _codings(resource.get("clinicalStatus"))
    ):
        return False
    return True


def search(resource_type: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every demo resource of this type matching the supported parameters (sorted by id)."""
    data = _state().data
    patient = params.get("patient") or params.get("subject")
    if patient is not None:
        patient = patient.split("/", 1)[1] if patient.startswith("Patient/") else patient
    if resource_type == "Patient" and patient is not None:
        params = {**params, "_id": patient}
        patient = None
    pool = (
        data.resources_of(patient, resource_type)
        if patient is not None
        else list(data.by_type.get(resource_type, {}).values())
    )
    return sorted((r for r in pool if _matches(r, params)), key=lambda r: r["id"])


@bp.get("/demo/fhir/metadata")
def capability_statement():
    """A minimal CapabilityStatement (no token needed, as in FHIR)."""
    return _fhir(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json"],
            "date": _state().data.now.date().isoformat(),
            "software": {"name": "sarcopenia-cds demo FHIR source"},
            "rest": [
                {
                    "mode": "server",
                    "resource": [
                        {
                            "type": t,
                            "interaction": [{"code": "read"}, {"code": "search-type"}],
                            "searchParam": [
                                {
                                    "name": p,
                                    "type": "token"
                                    if p in ("code", "status", "category")
                                    else "reference",
                                }
                                for p in ("patient", "code", "status", "category")
                            ],
                        }
                        for t in sorted(_state().data.by_type)
                    ],
                }
            ],
        }
    )


@bp.get("/demo/fhir/<resource_type>/<resource_id>")
def read(resource_type: str, resource_id: str):
    grant = _grant()
    if grant is None:
        return _outcome(
            401, "login", "a bearer token from the demo (fhirAuthorization) is required"
        )
    resource = _state().data.read(resource_type, resource_id)
    if resource is None:
        return _outcome(404, "not-found", f"{resource_type}/{resource_id} is not known")
    if grant.patient and _patient_of(resource) != grant.patient:
        return _outcome(403, "forbidden", "the token is limited to another patient")
    return _fhir(resource)


@bp.get("/demo/fhir/<resource_type>")
def search_type(resource_type: str):
    grant = _grant()
    if grant is None:
        return _outcome(
            401, "login", "a bearer token from the demo (fhirAuthorization) is required"
        )
    if not resource_type[:1].isupper() or not resource_type.isalpha():
        return _outcome(404, "not-found", f"unknown resource type '{resource_type[:60]}'")
    params = {k: v for k, v in request.args.items()}
    wanted = (
        params.get("patient")
        or params.get("subject")
        or (params.get("_id") if resource_type == "Patient" else None)
    )
    if grant.patient:
        wanted_id = (wanted or "").removeprefix("Patient/")
        if wanted_id != grant.patient:
            return _outcome(
                403,
                "forbidden",
                "the token is limited to one patient: search with patient=<that id>",
            )
    try:
        count = min(max(int(params.get("_count", DEFAULT_COUNT)), 1), MAX_COUNT)
        offset = max(int(params.get("_offset", 0)), 0)
    except ValueError:
        return _outcome(400, "invalid", "_count and _offset must be integers")
    matches = search(resource_type, params)
    page = matches[offset : offset + count]
    base = request.host_url.rstrip("/") + f"/demo/fhir/{resource_type}"
    applied = {k: v for k, v in params.items() if k in APPLIED}
    applied["_count"] = str(count)
    links = [{"relation": "self", "url": f"{base}?{urlencode({**applied, '_offset': offset})}"}]
    if offset + count < len(matches):
        links.append(
            {
                "relation": "next",
                "url": f"{base}?{urlencode({**applied, '_offset': offset + count})}",
            }
        )
    if offset > 0:
        links.append(
            {
                "relation": "previous",
                "url": f"{base}?{urlencode({**applied, '_offset': max(offset - count, 0)})}",
            }
        )
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(matches),
        "link": links,
    }
    if page:
        bundle["entry"] = [
            {"fullUrl": f"{base}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in page
        ]
    return _fhir(bundle)
