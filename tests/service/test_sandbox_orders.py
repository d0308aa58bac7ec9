"""Order hooks shaped exactly as the CDS Hooks Sandbox's Rx View / Rx Sign tabs send them.

The sandbox (github.com/cds-hooks/sandbox, src/reducers/medication-reducers.js createFhirResource) sends one
MedicationRequest `request-123`, status draft, with `category` and `reasonCode` as objects (not lists), no
`intent` until the dispense request is filled in, and `medicationCodeableConcept` = {text, coding: [{display,
system RxNorm, code}]} from its RxNorm list (200328 "capecitabine 500 MG Oral Tablet"). The draftOrders Bundle
has no `type`.

The patient (tests/support/patients.py severe_sarcopenia) has active pancreatic cancer (C25.0) and low
muscle mass: L3 SMI 92.4 cm² / 1.62² m² = 35.2 cm²/m² < 41 (Martin 2013, women), so an antineoplastic
(ATC L01) order must give the chemotherapy-toxicity-risk card (rules/sarcopenia/orders.yaml, KB §3.10 I-TOX).
"""

from __future__ import annotations

import copy
import logging

import pytest

from tests.support.ehr import hook_request, prefetch_for
from tests.support.patients import severe_sarcopenia

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SELECT = "/cds-services/sarcopenia-order-select"
SIGN = "/cds-services/sarcopenia-order-sign"
WARNINGS = "org.sarcopenia-cds.warnings"
FINDINGS = "org.sarcopenia-cds.findings"
TOXICITY = "chemotherapy-toxicity-risk"
CONDITION_CODE = {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "C25.0",
                              "display": "Malignant neoplasm of head of pancreas"}]}
CAPECITABINE = {"text": "capecitabine 500 MG Oral Tablet",
                "coding": [{"display": "capecitabine 500 MG Oral Tablet", "system": RXNORM, "code": "200328"}]}


def sandbox_order(medication: dict | None = None, *, dispensed: bool = False, **extra) -> dict:
    """MedicationRequest as the sandbox builds it (R4): intent and category only with a dispense request."""
    resource = {"resourceType": "MedicationRequest", "id": "request-123", "status": "draft",
                "subject": {"reference": "Patient/sev-1"}, "authoredOn": "2026-11-28",
                "dosageInstruction": [{"timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                                       "doseAndRate": [{"doseQuantity": {"value": 1, "system": "http://unitsofmeasure.org",
                                                                         "code": "{pill}"}}]}],
                "reasonCode": copy.deepcopy(CONDITION_CODE)}
    if dispensed:
        resource["dispenseRequest"] = {"expectedSupplyDuration": {"value": 14, "unit": "days",
                                                                  "system": "http://unitsofmeasure.org", "code": "d"}}
        resource["intent"] = "order"
        resource["category"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                            "code": "community"}]}
    if medication is not None:
        resource["medicationCodeableConcept"] = copy.deepcopy(medication)
    resource.update(extra)
    return resource


def call(ehr, hook: str, order: dict):
    path = SELECT if hook == "order-select" else SIGN
    context = {"draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order}]}}
    if hook == "order-select":
        context["selections"] = ["MedicationRequest/request-123"]
    body = hook_request(hook, "sev-1", prefetch_for(severe_sarcopenia(), ehr.templates(hook)), **context)
    response = ehr.post(path, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def toxicity_card(answer: dict) -> dict:
    cards = [c for c in answer["cards"] if c["source"]["topic"]["code"] == TOXICITY]
    assert len(cards) == 1, answer
    return cards[0]


def recognised(card: dict) -> list[dict]:
    evidence = next(f["evidence"] for f in card["extension"][FINDINGS] if f["code"]["code"] == TOXICITY)
    return next(e for e in evidence if e.get("fact") == "antineoplastic_order")["recognised"]


def warnings(answer: dict) -> list[str]:
    return [w["message"] for w in (answer.get("extension") or {}).get(WARNINGS, [])]


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_rxnorm_clinical_drug_before_a_dispense_request_gives_the_toxicity_card(ehr, hook, caplog):
    """200328 is an SCD, not an ingredient: known from the bundled table; no intent, reasonCode an object."""
    with caplog.at_level(logging.WARNING, logger="cds_service"):
        answer = call(ehr, hook, sandbox_order(CAPECITABINE))
    card = toxicity_card(answer)
    assert card["indicator"] == "warning"
    assert card["summary"] == "Low muscle mass before chemotherapy: higher risk of toxicity"
    assert recognised(card) == [{
        "resource": "MedicationRequest/request-123", "by": "clinical-drug",
        "text": "recognised by RxNorm clinical drug 200328 'capecitabine 500 MG Oral Tablet' (table "
                "antineoplastic-clinical-drugs): capecitabine, ATC L01BC06"}]
    assert warnings(answer) == [
        "MedicationRequest/request-123: $.reasonCode is an object where FHIR R4 has a list; read as a one-element list",
        "MedicationRequest/request-123: $.intent is required by FHIR R4 and missing; read without it",
    ]
    logged = [r for r in caplog.records if r.getMessage() == "resource read leniently"]
    assert [(r.levelno, r.resource, r.path) for r in logged] == [
        (logging.WARNING, "MedicationRequest/request-123", "$.reasonCode"),
        (logging.WARNING, "MedicationRequest/request-123", "$.intent")]
    assert all("C25.0" not in repr(r.__dict__) and "Pancreas" not in repr(r.__dict__) for r in logged)


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_a_dispensed_order_with_category_and_reason_as_objects_gives_the_card(ehr, hook):
    answer = call(ehr, hook, sandbox_order(CAPECITABINE, dispensed=True))
    assert recognised(toxicity_card(answer))[0]["by"] == "clinical-drug"
    assert warnings(answer) == [
        "MedicationRequest/request-123: $.category is an object where FHIR R4 has a list; read as a one-element list",
        "MedicationRequest/request-123: $.reasonCode is an object where FHIR R4 has a list; read as a one-element list",
    ]


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_a_local_formulary_code_with_only_a_display_is_recognised_by_name(ehr, hook):
    """No code known to the packs: the WHO ATC L01 name in the display is the fallback, and it says so."""
    local = {"coding": [{"system": "urn:oid:2.999.1.7.formulary", "code": "F-1029",
                         "display": "Capecitabine 500mg tablet (Xeloda)"}]}
    answer = call(ehr, hook, sandbox_order(local))
    assert recognised(toxicity_card(answer)) == [{
        "resource": "MedicationRequest/request-123", "by": "name",
        "text": "recognised by name: 'capecitabine' in 'Capecitabine 500mg tablet (Xeloda)' (ATC L01BC06, "
                "table antineoplastic-substances; no known code)"}]


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_a_medication_reference_to_a_contained_medication_is_read_through_its_ingredient(ehr, hook):
    """RxNorm 194000 capecitabine (KB §2.6, CPIC) as the contained Medication's ingredient."""
    contained = {"resourceType": "Medication", "id": "med1",
                 "code": {"coding": [{"system": "urn:oid:2.999.1.7.formulary", "code": "F-1029"}]},
                 "ingredient": [{"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "194000",
                                                                      "display": "capecitabine"}]}}]}
    order = sandbox_order(None, medicationReference={"reference": "#med1"}, contained=[contained])
    answer = call(ehr, hook, order)
    assert recognised(toxicity_card(answer)) == [{
        "resource": "MedicationRequest/request-123", "by": "ingredient",
        "text": "recognised by code RxNorm 194000 (capecitabine) of an ingredient of the contained Medication "
                "#med1, in value set antineoplastic"}]


def test_a_contained_medication_coded_as_a_clinical_drug_is_recognised(ehr):
    contained = {"resourceType": "Medication", "id": "m", "code": copy.deepcopy(CAPECITABINE)}
    answer = call(ehr, "order-sign", sandbox_order(None, medicationReference={"reference": "#m"}, contained=[contained]))
    assert recognised(toxicity_card(answer))[0]["text"] == (
        "recognised by RxNorm clinical drug 200328 'capecitabine 500 MG Oral Tablet' of the contained Medication "
        "#m (table antineoplastic-clinical-drugs): capecitabine, ATC L01BC06")


@pytest.mark.parametrize("medication", [
    # letrozole is L02BG04 (endocrine therapy), by name and with a local code: not L01
    {"coding": [{"system": "urn:oid:2.999.1.7.formulary", "code": "F-2001", "display": "Letrozole 2.5 mg tablet"}]},
    # celecoxib 200 MG Oral Capsule: WHO lists celecoxib under L01XX33 and M01AH01, so it is left out
    {"coding": [{"system": RXNORM, "code": "205323", "display": "celecoxib 200 MG Oral Capsule"}]},
    # a coded non-L01 drug whose text mentions an L01 name: a known code stops the name fallback
    {"text": "leucovorin with fluorouracil", "coding": [{"system": "http://www.whocc.no/atc", "code": "V03AF03"}]},
], ids=["letrozole-local", "celecoxib-dual-use", "coded-leucovorin"])
def test_drugs_that_are_not_l01_give_no_toxicity_card(ehr, medication):
    answer = call(ehr, "order-select", sandbox_order(medication))
    assert [c["source"]["topic"]["code"] for c in answer["cards"]] == []


def test_a_hospital_override_adds_its_local_formulary_code(make_app, tmp_path):
    """The hospital's override file extends `antineoplastic` with its own code: recognised by code."""
    from cds_service.engine.load import BUNDLED
    from tests.conftest import BASE_URL
    from tests.support.ehr import EhrClient

    override = tmp_path / "hospital.yaml"
    override.write_text(
        "pack: {id: st-elsewhere, version: 1.0.0}\n"
        "value_sets:\n"
        "  antineoplastic:\n"
        "    - {system: 'urn:oid:2.999.1.7.formulary', code: F-1029}\n", encoding="utf-8")
    ehr = EhrClient(make_app(rules={"paths": [str(BUNDLED), str(override)]}).test_client(), BASE_URL)
    local = {"coding": [{"system": "urn:oid:2.999.1.7.formulary", "code": "F-1029", "display": "Cape 500"}]}
    answer = call(ehr, "order-select", sandbox_order(local))
    assert recognised(toxicity_card(answer)) == [{
        "resource": "MedicationRequest/request-123", "by": "code",
        "text": "recognised by code urn:oid:2.999.1.7.formulary F-1029 (Cape 500), in value set antineoplastic"}]


def test_an_order_whose_needed_fields_are_unreadable_is_skipped_and_named(ehr):
    """medicationCodeableConcept.coding as a string cannot be read leniently: skipped, named, no card."""
    order = sandbox_order(CAPECITABINE)
    order["medicationCodeableConcept"]["coding"] = "200328"
    answer = call(ehr, "order-select", order)
    assert answer["cards"] == []
    assert answer["extension"]["org.sarcopenia-cds.invalid-resources"][0]["reference"] == "MedicationRequest/request-123"


def test_a_medication_in_draft_orders_named_by_reference_is_read(ehr):
    """order-sign with a Medication entry beside the order: `Medication/m2` coded ATC L01BC06."""
    medication = {"resourceType": "Medication", "id": "m2",
                  "code": {"coding": [{"system": "http://www.whocc.no/atc", "code": "L01BC06"}]}}
    order = sandbox_order(None, medicationReference={"reference": "Medication/m2"})
    context = {"draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order}, {"resource": medication}]}}
    body = hook_request("order-sign", "sev-1", prefetch_for(severe_sarcopenia(), ehr.templates("order-sign")), **context)
    answer = ehr.post(SIGN, body).get_json()
    assert recognised(toxicity_card(answer)) == [{
        "resource": "MedicationRequest/request-123", "by": "medication",
        "text": "recognised by code ATC L01BC06 of Medication/m2, in value set antineoplastic"}]
