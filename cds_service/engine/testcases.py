"""Pack tests: YAML cases in compact notation expanded to FHIR, run through the engine, checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from .dates import as_datetime
from .evaluate import EngineSettings

CASE_KEYS = {
    "name",
    "hook",
    "now",
    "settings",
    "patient",
    "data",
    "context",
    "expect",
    "defaults_data",
    "skip",
    "unavailable",
    "overrides",
}
EXPECT_KEYS = {
    "findings",
    "suggestions",
    "summary_contains",
    "evidence",
    "data_quality",
    "cards",
    "undetermined",
    "suggestion_labels_contain",
    "cards_not_contain",
    "detail_contains",
}
ITEM_KINDS = {"obs", "condition", "imaging", "med", "service", "procedure", "order", "resource"}


class CaseError(ValueError):
    """A malformed test case (reported as rule_test_error)."""


@dataclass
class Case:
    name: str
    file: str
    line: int
    spec: dict = field(default_factory=dict)


def read_cases(path: Path) -> list[Case]:
    """Cases of one file, with `defaults` merged in; raises CaseError if the file is malformed."""
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CaseError(f"{path}: YAML error: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise CaseError(f"{path}: a test file needs a 'cases' list")
    unknown = set(data) - {"defaults", "cases"}
    if unknown:
        raise CaseError(f"{path}: unknown top-level keys {sorted(unknown)}")
    defaults = data.get("defaults") or {}
    lines = _case_lines(node)
    out = []
    for i, raw in enumerate(data["cases"]):
        if not isinstance(raw, dict):
            raise CaseError(f"{path}: case {i} is not a mapping")
        spec = dict(defaults)
        spec.update({k: v for k, v in raw.items() if k != "data"})
        if raw.get("defaults_data", True) is not False:
            spec["data"] = list(defaults.get("data") or []) + list(raw.get("data") or [])
        else:
            spec["data"] = list(raw.get("data") or [])
        name = str(raw.get("name") or f"case {i}")
        out.append(Case(name, str(path), lines[i] if i < len(lines) else 1, spec))
    return out


def _case_lines(node) -> list[int]:
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if key.value == "cases" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def run_case(ruleset, case: Case) -> list[str]:
    """Run one case; return the list of failures (empty = passed)."""
    spec = case.spec
    unknown = set(spec) - CASE_KEYS
    if unknown:
        raise CaseError(f"unknown case keys {sorted(unknown)}")
    expect = spec.get("expect")
    if not isinstance(expect, dict) or not expect:
        raise CaseError(
            "a case needs 'expect' (at least 'findings'); a case that asserts nothing fails"
        )
    if set(expect) - EXPECT_KEYS:
        raise CaseError(f"unknown expect keys {sorted(set(expect) - EXPECT_KEYS)}")
    if "findings" not in expect:
        raise CaseError("expect needs 'findings' (the exact set of codes; [] for none)")
    now = as_datetime(str(spec.get("now") or "")) if spec.get("now") else None
    if now is None:
        raise CaseError("a case needs 'now' (ISO date-time)")
    settings = EngineSettings(**(spec.get("settings") or {}))
    hook = spec.get("hook") or "patient-view"
    patient = dict(spec.get("patient") or {})
    pid = str(patient.pop("id", "p1"))
    if spec.get("overrides"):
        ruleset = with_overrides(
            ruleset, tuple(str(Path(case.file).parent / p) for p in spec["overrides"])
        )
    resources, orders = expand(ruleset, spec.get("data") or [], pid, now, patient)
    context = {"patientId": pid, "userId": "Practitioner/test"}
    context.update(spec.get("context") or {})
    evaluation = ruleset.evaluate(
        resources,
        hook=hook,
        context=context,
        orders=orders,
        now=now,
        settings=settings,
        unavailable=frozenset(spec.get("unavailable") or ()),
    )
    return check(evaluation, expect)


def check(evaluation, expect) -> list[str]:
    failures = []
    got = sorted(f.code for f in evaluation.findings)
    want = sorted(expect["findings"] or [])
    if got != want:
        failures.append(f"findings: expected {want}, got {got}")
    if "suggestions" in expect:
        keys = sorted(k for s in evaluation.sent for k in s["suggestions"].values())
        if keys != sorted(expect["suggestions"] or []):
            failures.append(
                f"suggestions: expected {sorted(expect['suggestions'] or [])}, got {keys}"
            )
    if "undetermined" in expect and evaluation.undetermined != sorted(expect["undetermined"] or []):
        failures.append(
            f"undetermined: expected {sorted(expect['undetermined'] or [])},"
            f" got {evaluation.undetermined}"
        )
    if "cards" in expect and len(evaluation.cards) != expect["cards"]:
        failures.append(f"cards: expected {expect['cards']}, got {len(evaluation.cards)}")
    for text in _as_list(expect.get("summary_contains")):
        summaries = [c["summary"] for c in evaluation.cards]
        if not any(text in s for s in summaries):
            failures.append(f"summary_contains: {text!r} not in {summaries}")
    for text in _as_list(expect.get("detail_contains")):
        if not any(text in c.get("detail", "") for c in evaluation.cards):
            failures.append(f"detail_contains: {text!r} in no card detail")
    labels = [s.get("label", "") for c in evaluation.cards for s in c.get("suggestions", ())]
    for text in _as_list(expect.get("suggestion_labels_contain")):
        if not any(text in label for label in labels):
            failures.append(f"suggestion_labels_contain: {text!r} not in {labels}")
    if expect.get("cards_not_contain"):
        import json

        dumped = json.dumps(evaluation.cards, ensure_ascii=False)
        for text in _as_list(expect["cards_not_contain"]):
            if text in dumped:
                failures.append(f"cards_not_contain: {text!r} appears in the cards")
    if "evidence" in expect:
        values = {}
        for f in evaluation.findings:
            for e in f.evidence:
                if "fact" in e and "value" in e and "parameter" not in e and not e.get("excluded"):
                    values.setdefault(e["fact"], e["value"])
        for name, value in (expect["evidence"] or {}).items():
            if name not in values:
                failures.append(f"evidence: no value for {name!r} (have {sorted(values)})")
            elif isinstance(value, (int, float)) and isinstance(values[name], (int, float)):
                if abs(values[name] - value) > 0.01:
                    failures.append(f"evidence: {name} expected {value}, got {values[name]}")
            elif values[name] != value:
                failures.append(f"evidence: {name} expected {value!r}, got {values[name]!r}")
    if "data_quality" in expect:
        got_dq = sorted({d["fact"] for d in evaluation.data_quality})
        if got_dq != sorted(expect["data_quality"] or []):
            failures.append(
                f"data_quality: expected {sorted(expect['data_quality'] or [])}, got {got_dq}"
            )
    return failures


def _as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# ---- compact notation -------------------------------------------------------------------
def expand(ruleset, items, pid, now: datetime, patient: dict):
    """Compact items → (record resources, draft orders) as FHIR R4 dicts."""
    resources = [_patient(pid, now, patient)]
    orders = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in ITEM_KINDS:
            raise CaseError(f"data item {n} must be one of {sorted(ITEM_KINDS)}: {item!r}")
        ((kind, body),) = item.items()
        if kind == "resource":
            resources.append(dict(body))
        elif kind == "order":
            if not isinstance(body, dict) or len(body) != 1:
                raise CaseError(f"order item {n} must be {{med: ...}} or {{service: ...}}")
            ((okind, obody),) = body.items()
            resource = _build(ruleset, okind, obody, pid, now, n, draft=True)
            orders.append(resource)
        else:
            resources.append(_build(ruleset, kind, body, pid, now, n))
    return resources, orders


def _patient(pid, now, patient):
    out = {"resourceType": "Patient", "id": pid}
    if "gender" in patient:
        out["gender"] = patient["gender"]
    if "birthDate" in patient:
        out["birthDate"] = str(patient["birthDate"])
    elif "age" in patient:
        born = now.date().replace(year=now.year - int(patient["age"])) - timedelta(days=1)
        out["birthDate"] = born.isoformat()
    unknown = set(patient) - {"gender", "birthDate", "age"}
    if unknown:
        raise CaseError(f"unknown patient keys {sorted(unknown)}")
    return out


def _when(body, now) -> str:
    if "date" in body:
        return str(body["date"])
    days = float(body.get("days_ago", 0))
    return (now - timedelta(days=days)).isoformat().replace("+00:00", "Z")


def coding(ruleset, code) -> dict:
    """'alias:code' (code_systems alias) or a value-set name (its first exact code)."""
    code = str(code)
    if code in ruleset.value_sets:
        first = ruleset.value_sets[code].first_code()
        if first is None:
            raise CaseError(f"value set {code!r} has no single code to use")
        return {"system": first[0], "code": first[1]}
    alias, sep, value = code.partition(":")
    if sep and alias in ruleset.code_systems:
        return {"system": ruleset.code_systems[alias], "code": value}
    if sep and alias in ("http", "https", "urn"):
        system, _, value = code.rpartition("|")
        return {"system": system, "code": value}
    raise CaseError(f"code {code!r} is neither alias:code nor a value-set name")


def _concept(ruleset, code):
    return {"coding": [coding(ruleset, code)]}


def _build(ruleset, kind, body, pid, now, n, draft=False):
    if not isinstance(body, dict):
        raise CaseError(f"data item {n}: {kind} needs a mapping")
    rid = str(body.get("id") or f"{kind}{n}")
    subject = {"reference": f"Patient/{pid}"}
    when = _when(body, now)
    if kind == "obs":
        out = {
            "resourceType": "Observation",
            "id": rid,
            "status": body.get("status", "final"),
            "code": _concept(ruleset, body["code"]),
            "subject": subject,
            "effectiveDateTime": when,
        }
        value = body.get("value")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            quantity = {"value": value}
            if "unit" in body:
                quantity.update(
                    {
                        "unit": str(body["unit"]),
                        "system": "http://unitsofmeasure.org",
                        "code": str(body["unit"]),
                    }
                )
            out["valueQuantity"] = quantity
        elif isinstance(value, bool):
            out["valueBoolean"] = value
        elif value is not None:
            out["valueString"] = str(value)
        if "method" in body:
            out["method"] = {"text": str(body["method"])}
        if "derived_from" in body:
            out["derivedFrom"] = [{"reference": str(body["derived_from"])}]
        return out
    if kind == "condition":
        out = {
            "resourceType": "Condition",
            "id": rid,
            "subject": subject,
            "code": _concept(ruleset, body["code"]),
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": body.get("status", "active"),
                    }
                ]
            },
            "verificationStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        "code": body.get("verification", "confirmed"),
                    }
                ]
            },
            "recordedDate": when,
        }
        return out
    if kind == "imaging":
        series = {
            "uid": f"1.2.3.{n}",
            "modality": {
                "system": "http://dicom.nema.org/resources/ontology/DCM",
                "code": body.get("modality", "CT"),
            },
        }
        if "body_site" in body:
            series["bodySite"] = coding(ruleset, body["body_site"])
        out = {
            "resourceType": "ImagingStudy",
            "id": rid,
            "status": body.get("status", "available"),
            "subject": subject,
            "started": when,
            "series": [series],
            "modality": [
                {
                    "system": "http://dicom.nema.org/resources/ontology/DCM",
                    "code": body.get("modality", "CT"),
                }
            ],
        }
        if "procedure" in body:
            out["procedureCode"] = [_concept(ruleset, body["procedure"])]
        return out
    if kind == "med":
        return {
            "resourceType": "MedicationRequest",
            "id": rid,
            "status": "draft" if draft else body.get("status", "active"),
            "intent": "order" if not draft else "proposal",
            "subject": subject,
            "medicationCodeableConcept": _concept(ruleset, body["code"]),
            "authoredOn": when,
        }
    if kind == "service":
        out = {
            "resourceType": "ServiceRequest",
            "id": rid,
            "status": "draft" if draft else body.get("status", "active"),
            "intent": "order",
            "subject": subject,
            "code": _concept(ruleset, body["code"]),
            "authoredOn": when,
        }
        if "category" in body:
            out["category"] = [_concept(ruleset, body["category"])]
        return out
    if kind == "procedure":
        return {
            "resourceType": "Procedure",
            "id": rid,
            "status": body.get("status", "completed"),
            "subject": subject,
            "code": _concept(ruleset, body["code"]),
            "performedDateTime": when,
        }
    raise CaseError(f"data item {n}: unknown kind {kind!r}")


_OVERRIDDEN: dict[tuple, object] = {}


def with_overrides(ruleset, files: tuple[str, ...]):
    """The case's packs plus hospital-override files (paths relative to the test file)."""
    from .diagnostics import PackErrors
    from .load import load_ruleset

    key = (id(ruleset), files)
    found = _OVERRIDDEN.get(key)
    if found is None:
        base = list(ruleset.files)
        for f in files:
            if not Path(f).is_file():
                raise CaseError(f"override file not found: {f}")
        try:
            found = load_ruleset(base + list(files))
        except PackErrors as exc:
            raise CaseError(f"the packs with overrides {list(files)} do not load:\n{exc}") from None
        _OVERRIDDEN[key] = found
    return found


def is_case_file(path: Path) -> bool:
    """Test files are YAML under a `tests` folder, except override packs in `tests/overrides/`."""
    parts = path.parts[:-1]
    return "tests" in parts and "overrides" not in parts[parts.index("tests") :]


def case_files(paths=None) -> list[Path]:
    """Test files: rules/**/tests/*.yaml for the packs named (default: bundled packs)."""
    from .load import BUNDLED_NAME, _bundled_root

    roots = [_bundled_root()] if not paths else [
        _bundled_root() if str(p) == BUNDLED_NAME else Path(p) for p in paths
    ]
    out = []
    for root in roots:
        if root.is_file():
            out.append(root)
        elif root.is_dir():
            out.extend(
                sorted(
                    p
                    for p in root.rglob("*.yaml")
                    if ("tests" in p.relative_to(root).parts[:-1] or root.name == "tests")
                    and "overrides" not in p.relative_to(root).parts[:-1]
                )
            )
    return out


def pack_root_of(path: Path) -> Path:
    """The pack folder a test file belongs to: the parent of its `tests` folder."""
    parts = path.resolve().parts
    index = len(parts) - 1 - list(reversed(parts)).index("tests")
    return Path(*parts[:index])

