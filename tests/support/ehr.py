"""Act as an EHR: build hook requests and prefetch from discovery templates, sign every call."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cds_service.pipeline import template_type
from tests.support import tokens

PATIENTS = Path(__file__).resolve().parent.parent / "patients"


def prefetch_for(resources: list[dict[str, Any]], templates: dict[str, str]) -> dict[str, Any]:
    """Fill each prefetch key as an EHR would: a read gives the resource, a search a searchset Bundle."""
    prefetch: dict[str, Any] = {}
    for key, template in templates.items():
        kind = template_type(template)
        matching = [r for r in resources if r.get("resourceType") == kind]
        if "?" not in template:
            prefetch[key] = matching[0] if matching else None
        else:
            bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(matching)}
            if matching:
                bundle["entry"] = [{"resource": r} for r in matching]
            prefetch[key] = bundle
    return prefetch


def hook_request(hook: str, patient_id: str, prefetch: dict[str, Any] | None = None, **context: Any) -> dict[str, Any]:
    """A CDS Hooks 2.0 request body."""
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": patient_id, **context},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def load_bundle(name: str) -> list[dict[str, Any]]:
    """The resources of tests/patients/<name>.json."""
    bundle = json.loads((PATIENTS / f"{name}.json").read_text(encoding="utf-8"))
    return [e["resource"] for e in bundle.get("entry", [])]


def shift_dates(resources: list[dict[str, Any]], delta: timedelta) -> list[dict[str, Any]]:
    """The same resources with every date and dateTime moved by delta (birthDate too)."""
    def move(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: move(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v, key) for v in value]
        if isinstance(value, str) and _is_date_key(key):
            return _shift(value, delta)
        return value
    return [move(copy.deepcopy(r)) for r in resources]


def _is_date_key(key: str) -> bool:
    return key in {"birthDate", "issued", "authoredOn", "recordedDate", "started", "start", "end",
                   "onsetDateTime", "abatementDateTime", "effectiveDateTime", "performedDateTime",
                   "occurrenceDateTime", "date"}


def _shift(text: str, delta: timedelta) -> str:
    try:
        if len(text) == 10:
            return (datetime.fromisoformat(text) + delta).date().isoformat()
        moved = datetime.fromisoformat(text.replace("Z", "+00:00")) + delta
        return moved.isoformat().replace("+00:00", "Z")
    except ValueError:
        return text


class EhrClient:
    """A Flask test client that signs each call with a fresh JWT whose aud is the endpoint URL."""

    def __init__(self, flask_client: Any, base_url: str) -> None:
        self.client = flask_client
        self.base_url = base_url

    def _headers(self, path: str, headers: dict[str, str] | None) -> dict[str, str]:
        signed = {"Authorization": f"Bearer {tokens.token(self.base_url + path)}"}
        signed.update(headers or {})
        return signed

    def get(self, path: str, headers: dict[str, str] | None = None):
        return self.client.get(path, headers=self._headers(path, headers))

    def post(self, path: str, body: Any = None, *, data: bytes | str | None = None,
             content_type: str = "application/json", headers: dict[str, str] | None = None):
        payload = data if data is not None else json.dumps(body)
        return self.client.post(path, data=payload, content_type=content_type, headers=self._headers(path, headers))

    def discovery(self) -> dict[str, Any]:
        return self.get("/cds-services").get_json()

    def templates(self, hook: str) -> dict[str, str]:
        return next(s for s in self.discovery()["services"] if s["hook"] == hook).get("prefetch", {})
