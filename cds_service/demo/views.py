"""The EHR-simulator page (/demo) and what it needs from the demo EHR: signed JWTs, FHIR access
tokens and the draft orders. Only in demo mode (`demo.enabled`); 404 otherwise."""

from __future__ import annotations

import re

from flask import Blueprint, abort, current_app, jsonify, render_template, request

import hooks as hook_registry
from cds_service.demo.i18n import gender, scenario, texts

bp = Blueprint(
    "demo",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/demo/static",
)

#: paths the demo signs tokens for: the CDS Hooks endpoints only
SIGNABLE = re.compile(r"^/cds-services(/[A-Za-z0-9._-]+(/feedback)?)?$")


def demo_enabled() -> bool:
    return (
        bool(current_app.config["CDS"].get("demo", {}).get("enabled"))
        and "demo" in current_app.extensions
    )


@bp.before_app_request
def _demo_mode_only():
    """Every /demo route is 404 unless the app runs in demo mode."""
    if request.path.startswith("/demo") and not demo_enabled():
        abort(404)


def _state():
    return current_app.extensions["demo"]


@bp.get("/demo")
@bp.get("/demo/")
def page():
    """The EHR simulator."""
    state = _state()
    locale = current_app.config["CDS"].get("locale", "en")
    patients = []
    for patient in state.data.patients.values():
        summary = patient.summary()
        summary["scenario"] = scenario(locale, patient.number, summary["scenario"])
        # the record's cancer text in English; the scenario (with the cancer) in Chinese
        summary["headline"] = summary["cancer"] if locale == "en" else summary["scenario"]
        summary["gender_short"] = gender(locale, patient.gender) if locale != "en" else patient.gender[:1].upper()
        patients.append(summary)
    services = {hook: module.SERVICE_ID for hook, module in hook_registry.HOOKS.items()}
    tx = texts(locale)
    return render_template(
        "demo/ehr.html",
        tx=tx,
        lang=locale,
        js_texts={k[3:]: v for k, v in tx.items() if k.startswith("js.")},
        patients=patients,
        services=services,
        fhir_base=state.fhir_base,
        today=state.data.now.date().isoformat(),
        issuer=state.issuer.iss,
    )


@bp.get("/demo/api/patients")
def patients():
    return jsonify([p.summary() for p in _state().data.patients.values()])


@bp.get("/demo/api/orders/<patient_id>/<key>")
def draft_orders(patient_id: str, key: str):
    """The draftOrders Bundle of one order scenario (dates shifted like the record)."""
    bundle = _state().data.draft_orders(patient_id, key)
    if bundle is None:
        abort(404)
    return jsonify(bundle)


@bp.post("/demo/token")
def token():
    """A freshly signed JWT for one CDS Hooks endpoint: aud = base_url + path (ES384, 5 minutes)."""
    body = request.get_json(silent=True) or {}
    path = body.get("path")
    if not isinstance(path, str) or not SIGNABLE.match(path):
        return jsonify(
            {
                "error": 'give {"path": "/cds-services/..."}: the demo signs for CDS Hooks endpoints only'
            }
        ), 400
    signed = _state().issuer.sign(path)
    return jsonify({"token": signed["token"], **signed["claims"]})


@bp.post("/demo/fhir-authorization")
def fhir_authorization():
    """A CDS Hooks fhirAuthorization object for the demo FHIR source, limited to one patient."""
    body = request.get_json(silent=True) or {}
    patient = body.get("patient")
    if not isinstance(patient, str) or patient not in _state().data.patients:
        return jsonify({"error": 'give {"patient": "<a demo patient id>"}'}), 400
    return jsonify(_state().issuer.fhir_authorization(patient))


@bp.get("/demo/jwks.json")
def jwks():
    """The demo EHR's public JWK Set (what run_demo registers inline in auth.issuers)."""
    return jsonify(_state().issuer.jwks())
