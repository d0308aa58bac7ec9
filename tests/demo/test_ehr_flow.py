"""The EHR simulator's flow without a browser: discovery with a demo JWT, prefetch filled from the
discovery templates through the demo FHIR source, every patient and order scenario answered."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import pytest

from cds_service.demo.data import DemoData

SCENARIOS = [(p.id, "patient-view", None) for p in DemoData().patients.values()] + [
    (p.id, hook, key)
    for p in DemoData().patients.values()
    for key in p.orders
    for hook in ("order-select", "order-sign")
]


def signed(client, method, path, body=None):
    token = client.post("/demo/token", json={"path": path}).get_json()["token"]
    return client.open(path, method=method, json=body, headers={"Authorization": f"Bearer {token}"})


def prefetch_for(client, templates, patient_id):
    grant = client.post("/demo/fhir-authorization", json={"patient": patient_id}).get_json()
    headers = {"Authorization": f"Bearer {grant['access_token']}"}
    prefetch = {}
    for key, template in templates.items():
        url = "/demo/fhir/" + template.replace("{{context.patientId}}", patient_id)
        answer = client.get(url, headers=headers)
        assert answer.status_code == 200, (url, answer.get_json())
        value = answer.get_json()
        if value["resourceType"] == "Bundle":
            entries = list(value.get("entry", []))
            while nxt := next((x["url"] for x in value["link"] if x["relation"] == "next"), None):
                parts = urlsplit(nxt)
                value = client.get(f"{parts.path}?{parts.query}", headers=headers).get_json()
                entries += value.get("entry", [])
            value = {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
            if entries:
                value["entry"] = [{"resource": e["resource"]} for e in entries]
        prefetch[key] = value
    return prefetch


@pytest.fixture()
def services(client):
    answer = signed(client, "GET", "/cds-services")
    assert answer.status_code == 200
    return {s["hook"]: s for s in answer.get_json()["services"]}


@pytest.mark.parametrize(("patient_id", "hook", "order"), SCENARIOS)
def test_every_scenario_is_answered_from_prefetch(
    client, services, demo_app, patient_id, hook, order
):
    context = {"userId": "Practitioner/demo-clinician", "patientId": patient_id}
    if order is not None:
        bundle = client.get(f"/demo/api/orders/{patient_id}/{order}").get_json()
        context["draftOrders"] = bundle
        if hook == "order-select":
            context["selections"] = [
                f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]
            ]
    service = services[hook]
    body = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        "prefetch": prefetch_for(client, service.get("prefetch", {}), patient_id),
    }
    answer = signed(client, "POST", f"/cds-services/{service['id']}", body)
    assert answer.status_code == 200, answer.get_json()
    cards = answer.get_json()["cards"]
    for card in cards:
        assert card["uuid"] and card["indicator"] in ("info", "warning", "critical")


def test_severe_sarcopenia_patient_gets_the_severe_card(client, services):
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/demo-clinician", "patientId": "syn-01"},
        "prefetch": prefetch_for(client, services["patient-view"]["prefetch"], "syn-01"),
    }
    cards = signed(client, "POST", "/cds-services/sarcopenia-patient-view", body).get_json()[
        "cards"
    ]
    assert any("Severe sarcopenia" in c["summary"] for c in cards)
