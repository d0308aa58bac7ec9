"""The demo's synthetic patients: bundled FHIR R4 bundles, dates moved so that their 'now' is today.

The bundles in `patients/` are copies of tests/patients (fictional people, identifier system
`urn:example:synthetic`, meta tag `synthetic`). They were written for the fixed instant
2026-11-28T12:00:00Z; at start the demo moves every date by whole days so that 2026-11-28 is today.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

PATIENT_DIR = Path(__file__).resolve().parent / "patients"
ORDER_DIR = PATIENT_DIR / "orders"

#: the instant the bundles were written for
DATA_NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)

#: element names whose values are FHIR date / dateTime / instant values in these bundles
DATE_KEYS = frozenset(
    {
        "birthDate",
        "issued",
        "authoredOn",
        "recordedDate",
        "started",
        "start",
        "end",
        "onsetDateTime",
        "abatementDateTime",
        "effectiveDateTime",
        "performedDateTime",
        "occurrenceDateTime",
        "date",
        "timestamp",
        "lastUpdated",
    }
)

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def shift_value(text: str, delta: timedelta) -> str:
    """A FHIR date/dateTime moved by delta, keeping its precision; other strings unchanged."""
    if not _DATE_RE.match(text):
        return text
    try:
        if len(text) == 10:
            return (date.fromisoformat(text) + delta).isoformat()
        moved = datetime.fromisoformat(text.replace("Z", "+00:00")) + delta
        out = moved.isoformat()
        return out[:-6] + "Z" if text.endswith("Z") and out.endswith("+00:00") else out
    except ValueError:
        return text


def shift_dates(value: Any, delta: timedelta, key: str = "") -> Any:
    """A deep copy of value with every date element moved by delta."""
    if isinstance(value, dict):
        return {k: shift_dates(v, delta, k) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_dates(v, delta, key) for v in value]
    if isinstance(value, str) and key in DATE_KEYS:
        return shift_value(value, delta)
    return copy.deepcopy(value)


def delta_to(today: date) -> timedelta:
    """Whole days from the bundles' 'now' (2026-11-28) to today."""
    return timedelta(days=(today - DATA_NOW.date()).days)


@dataclass
class DemoPatient:
    """One synthetic patient: slug (file name), id, display name and what the README expects."""

    slug: str
    id: str
    name: str
    gender: str
    birth_date: str
    cancer: str
    resources: list[dict[str, Any]]
    orders: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # order slug -> draftOrders Bundle

    @property
    def number(self) -> str:
        return self.slug.split("-", 1)[0]

    @property
    def title(self) -> str:
        return self.slug.split("-", 1)[1].replace("-", " ")

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "slug": self.slug,
            "number": self.number,
            "name": self.name,
            "gender": self.gender,
            "birthDate": self.birth_date,
            "cancer": self.cancer,
            "scenario": self.title,
            "orders": [
                {"key": key, "label": order_label(key, bundle), "kinds": order_kinds(bundle)}
                for key, bundle in self.orders.items()
            ],
        }


def order_label(key: str, bundle: dict[str, Any]) -> str:
    """A human label for a draft-order bundle: the order texts joined."""
    texts = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        concept = resource.get("medicationCodeableConcept") or resource.get("code") or {}
        text = concept.get("text") or next(
            (c.get("display") for c in concept.get("coding") or [] if c.get("display")), None
        )
        texts.append(text or f"{resource.get('resourceType')}/{resource.get('id')}")
    return " + ".join(texts) or key


def order_kinds(bundle: dict[str, Any]) -> list[str]:
    return sorted(
        {(e.get("resource") or {}).get("resourceType", "") for e in bundle.get("entry") or []}
    )


class DemoData:
    """All demo patients in memory, dates shifted, indexed by resource type and id."""

    def __init__(self, today: date | None = None, patient_dir: Path = PATIENT_DIR) -> None:
        self.delta = delta_to(today or datetime.now(timezone.utc).date())
        self.patients: dict[str, DemoPatient] = {}
        self.by_type: dict[str, dict[str, dict[str, Any]]] = {}
        for path in sorted(patient_dir.glob("*.json")):
            bundle = json.loads(path.read_text(encoding="utf-8"))
            resources = [shift_dates(e["resource"], self.delta) for e in bundle.get("entry") or []]
            patient = next(r for r in resources if r["resourceType"] == "Patient")
            name = (patient.get("name") or [{}])[0]
            cancer = next(
                (
                    c.get("code", {}).get("text")
                    for c in resources
                    if c["resourceType"] == "Condition" and c.get("code", {}).get("text")
                ),
                "",
            )
            demo = DemoPatient(
                slug=path.stem,
                id=patient["id"],
                name=name.get("text") or " ".join(name.get("given", [])),
                gender=patient.get("gender", "unknown"),
                birth_date=patient.get("birthDate", ""),
                cancer=cancer,
                resources=resources,
            )
            for order_path in sorted((patient_dir / "orders").glob(f"{path.stem}-*.json")):
                order = json.loads(order_path.read_text(encoding="utf-8"))
                demo.orders[order_path.stem[len(path.stem) + 1 :]] = shift_dates(order, self.delta)
            self.patients[demo.id] = demo
            for resource in resources:
                self.by_type.setdefault(resource["resourceType"], {})[resource["id"]] = resource

    @property
    def now(self) -> datetime:
        """The bundles' 'now' moved to today."""
        return DATA_NOW + self.delta

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        return self.by_type.get(resource_type, {}).get(resource_id)

    def resources_of(
        self, patient_id: str, resource_type: str | None = None
    ) -> list[dict[str, Any]]:
        patient = self.patients.get(patient_id)
        if patient is None:
            return []
        return [
            r
            for r in patient.resources
            if resource_type is None or r["resourceType"] == resource_type
        ]

    def draft_orders(self, patient_id: str, key: str) -> dict[str, Any] | None:
        patient = self.patients.get(patient_id)
        return None if patient is None else copy.deepcopy(patient.orders.get(key))
