"""Lenient reading (docs/lenient-reading.md): an object for a list, a missing required element; nothing else."""

from __future__ import annotations

from cds_service.fhir.validate import Leniency, Verdicts, validate_resources

LOINC = "http://loinc.org"


def observation(**changes) -> dict:
    resource = {"resourceType": "Observation", "id": "o1", "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                          "code": "vital-signs"}]}],
                "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-20",
                "valueQuantity": {"value": 52.0, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}
    resource.update(changes)
    return {k: v for k, v in resource.items() if v is not None}


def read(resource) -> tuple[list, list, list]:
    notes: list[Leniency] = []
    valid, invalid = validate_resources([resource], lambda _r: True, Verdicts(), lenient=notes)
    return valid, invalid, [n.message() for n in notes]


def test_a_record_observation_with_category_as_an_object_is_read_as_a_list():
    sent = observation(category={"coding": [{"code": "vital-signs"}]})
    valid, invalid, notes = read(sent)
    assert invalid == []
    assert valid[0]["category"] == [{"coding": [{"code": "vital-signs"}]}]
    assert sent["category"] == {"coding": [{"code": "vital-signs"}]}  # what the EHR sent is not changed
    assert notes == ["Observation/o1: $.category is an object where FHIR R4 has a list; read as a one-element list"]


def test_a_nested_object_for_a_list_is_repaired_at_its_path():
    sent = observation(code={"coding": {"system": LOINC, "code": "29463-7"}})
    valid, invalid, notes = read(sent)
    assert valid[0]["code"]["coding"] == [{"system": LOINC, "code": "29463-7"}]
    assert notes == ["Observation/o1: $.code.coding is an object where FHIR R4 has a list; read as a one-element list"]


def test_a_missing_required_element_is_read_without_it():
    valid, invalid, notes = read(observation(status=None))
    assert "status" not in valid[0] and invalid == []
    assert notes == ["Observation/o1: $.status is required by FHIR R4 and missing; read without it"]


def test_other_problems_still_skip_the_resource_and_name_it():
    for broken in (observation(valueQuantity={"value": "fifty-two", "unit": "kg"}),
                   observation(category={"coding": "vital-signs"}),
                   observation(effectiveDateTime="20th of November")):
        valid, invalid, notes = read(broken)
        assert valid == [] and notes == [], broken
        assert invalid[0]["reference"] == "Observation/o1"


def test_without_a_lenient_list_the_check_stays_strict():
    valid, invalid = validate_resources([observation(category={"coding": []})], lambda _r: True, Verdicts())
    assert valid == [] and invalid == [{"reference": "Observation/o1", "problems": ["category: list_type"]}]
