"""Partial data: resource types the service could not fetch make their facts unknown, not missing."""

import inspect

from cds_service.engine import RuleSet

from .helpers import codes, obs, run

CT = {"imaging": {"modality": "CT", "body_site": "snomed:818981001", "days_ago": 10}}
LOW_GRIP = obs("grip-strength", 20, "kg", 3)


def test_signature_keyword_with_empty_default():
    param = inspect.signature(RuleSet.evaluate).parameters["unavailable"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default == frozenset()


def test_missing_on_unavailable_type_is_unknown_not_true():
    # CT on record, no L3 area: with Observations available the CT is "available for analysis" …
    assert codes(run([CT])) == ["ct-body-composition-available"]
    # … but a failed Observation fetch does not mean "no L3 result": the finding is undetermined
    ev = run([CT], unavailable=frozenset({"Observation"}))
    assert codes(ev) == []
    assert "ct-body-composition-available" in ev.undetermined


def test_exists_on_unavailable_type_is_unknown():
    ev = run([], unavailable=frozenset({"ImagingStudy"}))
    assert codes(ev) == [] and "ct-body-composition-available" in ev.undetermined


def test_findings_from_available_data_still_fire():
    ev = run([LOW_GRIP], unavailable=frozenset({"ImagingStudy"}))
    assert codes(ev) == ["probable-sarcopenia"]


def test_unavailable_values_are_ignored_even_if_sent():
    # resources of an unavailable type that were sent anyway (partial page) are not trusted
    ev = run([LOW_GRIP], unavailable=frozenset({"Observation"}))
    assert codes(ev) == []


def test_finding_unknown_propagates_through_finding_references():
    # probable needs "not low-SMI"; low-SMI needs the CT area (an Observation) — unknown,
    # so probable sarcopenia is unknown as well (never a false finding)
    ev = run([LOW_GRIP], unavailable=frozenset({"Observation"}))
    assert "probable-sarcopenia" in ev.undetermined
    assert "low-skeletal-muscle-index" in ev.undetermined


def test_unavailable_conditions_block_every_cancer_rule():
    ev = run([LOW_GRIP, CT], unavailable=frozenset({"Condition"}))
    assert codes(ev) == []
    assert {"probable-sarcopenia", "ct-body-composition-available"} <= set(ev.undetermined)


def test_implausible_any_is_unknown_when_values_could_not_be_read():
    ev = run([], unavailable=frozenset({"Observation"}))
    assert "implausible-measurement" not in codes(ev)
    assert "implausible-measurement" in ev.undetermined


def test_implausible_value_in_available_data_still_flags():
    ev = run([obs("grip-strength", 400, "kg", 3)], unavailable=frozenset({"ImagingStudy"}))
    assert "implausible-measurement" in codes(ev)


def test_derived_and_banded_facts_are_unknown():
    # sex comes from Patient: unavailable Patient makes sex-specific thresholds unknown
    ev = run([LOW_GRIP], unavailable=frozenset({"Patient"}))
    assert codes(ev) == [] and "probable-sarcopenia" in ev.undetermined


def test_draft_orders_are_never_unavailable():
    # the hook's draft orders come with the request; only record data can be unavailable
    order = {"order": {"med": {"code": "atc:L01BC06"}}}
    smi = [obs("l3-area", 100, "cm2", 20), obs("body-height", 170, "cm", 20)]
    smi.append(obs("body-weight", 64, "kg", 5))
    ev = run(smi + [order], hook="order-select", unavailable=frozenset({"MedicationRequest"}))
    assert "chemotherapy-toxicity-risk" in codes(ev)


def test_no_unavailable_means_no_undetermined():
    ev = run([LOW_GRIP])
    assert ev.undetermined == []


def test_evidence_says_unavailable_not_missing():
    from cds_service.engine.facts import Run

    from .helpers import NOW, SETTINGS, core

    run_ = Run(
        core(), [], [], "patient-view", {"patientId": "p1"}, NOW, SETTINGS, False, {"Observation"}
    )
    assert run_.fact_entry("grip_max") == {
        "fact": "grip_max",
        "label": "Grip strength",
        "unavailable": True,
    }
    plain = Run(core(), [], [], "patient-view", {"patientId": "p1"}, NOW, SETTINGS, False)
    assert plain.fact_entry("grip_max")["missing"] is True
