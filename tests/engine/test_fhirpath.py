"""The FHIRPath guard rejects what fhirpathpy silently accepts; the fast path matches fhirpathpy."""

import fhirpathpy
import pytest
from fhirpathpy.models import models

from cds_service.engine import fhirpath

OBS = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "1"}]},
    "valueQuantity": {"value": 3, "unit": "kg"},
    "component": [{"code": {"text": "a"}, "valueQuantity": {"value": 4}}],
}


@pytest.mark.parametrize(
    "expression",
    [
        "Patient.name.given)",
        "name.where(use = 'official'",
        "frobnicate(1)",
        "name given",
        "'abc",
        "a.b.",
        "value = 'x' 'y'",
        "status in",
        "#",
        "(code",
    ],
)
def test_rejected(expression):
    with pytest.raises(fhirpath.FhirPathError):
        fhirpath.check(expression, "Observation")


@pytest.mark.parametrize(
    "expression",
    [
        "code.coding.code",
        "value",
        "series.where(modality.code = 'CT').exists()",
        "status in ('final' | 'amended')",
        "component.where(code.text = 'a').valueQuantity",
        "effectiveDateTime > now() - 3 days",
        "code.coding[0].code",
        "value.ofType(Quantity).value",
        "iif(status = 'final', 1, 0)",
    ],
)
def test_accepted(expression):
    fhirpath.check(expression, "Observation")


@pytest.mark.parametrize(
    "expression",
    [
        "value",
        "code.coding.code",
        "Observation.status",
        "component.valueQuantity",
        "status | code.coding.code",
        "effectiveDateTime | status | status",
    ],
)
def test_fast_path_agrees_with_fhirpathpy(expression):
    fast = fhirpath.accessor(expression, "Observation")(OBS)
    slow = fhirpathpy.evaluate(OBS, expression, model=models["r4"])
    assert fast == slow


@pytest.mark.parametrize(
    "expression",
    ["status = 'final'", "status = 'draft'", "method.text = 'DXA'", "code.coding.code = '1'"],
)
def test_equality_fast_path_agrees_with_fhirpathpy(expression):
    for resource in (OBS, dict(OBS, method={"text": "DXA"}), {"resourceType": "Observation"}):
        fast = fhirpath.accessor(expression, "Observation")(resource)
        slow = fhirpathpy.evaluate(resource, expression, model=models["r4"])
        assert fast == slow, (expression, resource)


@pytest.mark.parametrize(
    "expression",
    [
        "valueBoolean.exists().not() or valueBoolean = true",
        "method.empty()",
        "method.exists()",
        "status = 'final' and method.text = 'DXA'",
        "status = 'draft' or method.exists()",
        "valueBoolean = false",
    ],
)
def test_boolean_fast_path_agrees_with_fhirpathpy(expression):
    resources = (
        OBS,
        dict(OBS, method={"text": "DXA"}),
        {"resourceType": "Observation", "valueBoolean": True},
        {"resourceType": "Observation", "valueBoolean": False},
        {"resourceType": "Observation"},
    )
    for resource in resources:
        fast = fhirpath.accessor(expression, "Observation")(resource)
        slow = fhirpathpy.evaluate(resource, expression, model=models["r4"])
        assert fast == slow, (expression, resource, fast, slow)


def test_non_dotted_expression_uses_fhirpathpy():
    get = fhirpath.accessor("component.where(code.text = 'a').valueQuantity.value", "Observation")
    assert get(OBS) == [4]
