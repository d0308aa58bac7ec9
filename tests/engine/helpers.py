"""Shared helpers for engine tests: the fixture pack, a fixed clock, compact data → FHIR."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from cds_service.engine import EngineSettings, load_ruleset
from cds_service.engine.testcases import expand

PACKS = Path(__file__).resolve().parents[1] / "fixtures" / "packs"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SETTINGS = EngineSettings(profile="prof-a", ct_cutoffs="set-banded")
CANCER = {"condition": {"code": "icd10:C16.9"}}


@lru_cache(maxsize=1)
def core():
    return load_ruleset([PACKS / "core"])


def run(
    items,
    *,
    gender="male",
    age=70,
    hook="patient-view",
    settings=SETTINGS,
    trace=False,
    suppress=None,
    cancer=True,
    rs=None,
    unavailable=frozenset(),
):
    rs = rs or core()
    items = ([CANCER] if cancer else []) + list(items)
    resources, orders = expand(rs, items, "p1", NOW, {"gender": gender, "age": age})
    return rs.evaluate(
        resources,
        hook=hook,
        context={"patientId": "p1"},
        orders=orders,
        now=NOW,
        settings=settings,
        trace=trace,
        suppress=suppress,
        unavailable=unavailable,
    )


def fact(items, name, **kw):
    """The value of one fact for this data (via trace-free direct Run access)."""
    from cds_service.engine.facts import Run

    rs = core()
    resources, orders = expand(
        rs,
        ([CANCER] if kw.pop("cancer", True) else []) + list(items),
        "p1",
        NOW,
        {"gender": kw.pop("gender", "male"), "age": kw.pop("age", 70)},
    )
    r = Run(
        rs,
        resources,
        orders,
        kw.pop("hook", "patient-view"),
        {"patientId": "p1"},
        NOW,
        kw.pop("settings", SETTINGS),
        False,
    )
    fv = r.fact(name)
    return (None if fv is None else fv.value), r


def obs(code, value, unit, days_ago, **extra):
    return {"obs": dict(code=code, value=value, unit=unit, days_ago=days_ago, **extra)}


def codes(evaluation):
    return sorted(f.code for f in evaluation.findings)
