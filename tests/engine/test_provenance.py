"""Provenance on cards: when a hospital override supplies the grip cut-off, the card's source,
its texts and its evidence name the hospital's reference and pack (issue 13, item 5)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cds_service.engine import EngineSettings, load_ruleset
from tests.support.patients import severe_sarcopenia

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
HOSPITAL = """\
pack: {id: hospital-x, version: 2026.1.0, title: {en: Hospital X local settings}, locales: [en]}
references:
  hospital-x-nc12:
    citation: "Hospital X nutrition committee, policy NC-12 (2026): grip cut-offs for our dynamometer."
    short: Hospital X NC-12
parameters:
  grip_low:
    unit: kg
    profiles:
      ewgsop2: {male: 30, female: 18, source: hospital-x-nc12}
      awgs2019: {male: 28, female: 18, source: chen-2020}
"""


@pytest.fixture(scope="module")
def hospital(tmp_path_factory):
    path = tmp_path_factory.mktemp("hx") / "hospital-x.yaml"
    path.write_text(HOSPITAL, encoding="utf-8")
    return load_ruleset([path])


def severe_card(rs, profile="ewgsop2", locale="en"):
    settings = EngineSettings(profile=profile, ct_cutoffs=None, locale=locale)
    ev = rs.evaluate(severe_sarcopenia(), hook="patient-view", context={"patientId": "sev-1"}, now=NOW,
                     settings=settings)
    (card,) = [c for c in ev.cards if c["source"]["topic"]["code"] == "severe-sarcopenia"]
    return card


def grip_threshold(card):
    findings = card["extension"]["org.sarcopenia-cds.findings"]
    primary = next(f for f in findings if f["code"]["code"] == "severe-sarcopenia")
    return next(e for e in primary["evidence"] if e.get("parameter") == "grip_low")


def test_a_local_grip_cut_off_is_named_with_the_hospital_reference(hospital):
    card = severe_card(hospital)
    # the woman's grip of 14.0 kg (KB: EWGSOP2 < 16 kg) against the hospital's < 18 kg
    assert card["summary"] == (
        "Severe sarcopenia (EWGSOP2, local cut-off): grip 14.0 kg (< 18 kg); low muscle quantity; "
        "low physical performance"
    )
    assert card["source"]["label"] == "EWGSOP2 (Cruz-Jentoft 2019); local cut-off: Hospital X NC-12"
    assert grip_threshold(card) == {
        "parameter": "grip_low", "comparison": "< 18", "value": 18.0, "unit": "kg",
        "source": "hospital-x-nc12",
        "citation": "Hospital X nutrition committee, policy NC-12 (2026): grip cut-offs for our dynamometer.",
        "pack": "hospital-x", "local": True, "fact": "grip_max", "result": True,
    }
    assert "Grip strength (max, latest session) < 18 kg (Hospital X NC-12, local cut-off)" in card["detail"]
    # the other cut-offs are still the bundled ones, cited as such
    assert "Usual gait speed ≤ 0.8 m/s (EWGSOP2 2019)" in card["detail"]


def test_the_local_cut_off_is_named_in_other_locales_too(hospital):
    card = severe_card(hospital, locale="zh-CN")
    assert card["summary"].startswith("严重肌少症（EWGSOP2，本地切点）：握力 14.0 kg（< 18 kg）")
    assert card["source"]["label"] == "EWGSOP2（Cruz-Jentoft 2019）；本地切点：Hospital X NC-12"


def test_bundled_cut_offs_keep_the_bundled_source(hospital):
    bundled = severe_card(load_ruleset())
    assert bundled["summary"].startswith("Severe sarcopenia (EWGSOP2): grip 14.0 kg (< 16 kg)")
    assert bundled["source"]["label"] == "EWGSOP2 (Cruz-Jentoft 2019)"
    threshold = grip_threshold(bundled)
    assert (threshold["source"], threshold["pack"], "local" in threshold) == (
        "cruz-jentoft-2019", "sarcopenia-core", False)


def test_a_value_the_override_restates_unchanged_is_not_local(hospital):
    # AWGS 2019 is written again with its own numbers and reference: not a local choice
    grip_low = hospital.params["grip_low"]
    assert grip_low.pack == "hospital-x"
    assert grip_low.is_local("ewgsop2", "martin2013") is True
    assert grip_low.is_local("awgs2019", "zhuang2016") is False
    assert hospital.local_params == frozenset({"grip_low"})
