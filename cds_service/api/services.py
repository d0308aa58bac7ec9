"""POST {base}/cds-services/{id}: validate, gather FHIR data, evaluate the rules, answer cards."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from flask import Blueprint, current_app, g

import hooks as hook_registry
from cds_service.api.http import json_response, read_json
from cds_service.logs import log_event
from cds_service.pipeline import answer_hook, check_request
from cds_service.protocol import ProtocolError

bp = Blueprint("services", __name__)


def known_service(service_id: str) -> str:
    """The hook a service id answers, or ProtocolError 404."""
    hook = hook_registry.SERVICES.get(service_id)
    if hook is None:
        known = ", ".join(sorted(hook_registry.SERVICES))
        raise ProtocolError.single(404, "not-found", f"there is no CDS service '{service_id[:80]}'; services: {known}")
    return hook


def caller() -> tuple[str, str]:
    """(issuer, tenant) of the verified JWT of this request; ('', '') without one (auth off)."""
    claims = g.get("jwt_claims") or {}
    issuer, tenant = claims.get("iss"), claims.get("tenant")
    return (issuer if isinstance(issuer, str) else "", tenant if isinstance(tenant, str) else "")


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str):
    """Answer one hook call with cards, and record what it did (also when it fails)."""
    state = current_app.extensions["cds"]
    started = time.perf_counter()
    hook_name = known_service(service_id)
    g.cds_hook = hook_name
    body = read_json()
    check_request(body, service_id, hook_registry.HOOKS[hook_name])
    g.hook_instance = body["hookInstance"]
    if "fhirServer" in body:  # an issuer that lists its FHIR servers is answered as if it sent none other
        claims = g.get("jwt_claims") or {}
        if state.fhir.egress.server_for(body["fhirServer"], claims.get("iss")) is None:
            body.pop("fhirServer")
    now = state.clock()
    settings = state.config["suppression"]
    skew = timedelta(seconds=state.config["auth"]["clock_skew_seconds"])
    patient_id = body["context"]["patientId"]
    issuer, tenant = caller()
    ruleset = state.rules.current
    record = {
        "hook_instance": body["hookInstance"], "service_id": service_id, "hook": hook_name,
        "patient_id": patient_id, "pack_version": ruleset.version, "called_at": now,
        "issuer": issuer, "tenant": tenant,
    }
    try:
        suppression = state.store.suppressions(
            patient_id, now, settings["override_days"], settings["default_override_days"],
            settings["accepted_referral_days"], service_id=service_id, issuer=issuer, tenant=tenant,
            clock_skew=skew,
        )
        outcome = answer_hook(
            body,
            service_id=service_id,
            ruleset=ruleset,
            engine_settings=state.engine_settings,
            config=state.config,
            client=state.fhir,
            suppression=suppression,
            now=now,
            on_fetch_error=lambda reason: state.metrics.fhir_errors.labels(reason=_reason_label(reason)).inc(),
        )
    except ProtocolError as error:
        _record_failure(state, record, error.status, started)
        raise
    except Exception:
        _record_failure(state, record, 500, started)
        raise
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    hidden = set(outcome.suppressed)
    state.store.record_call(
        **record, cards=outcome.sent, status=200, duration_ms=duration_ms,
        detail={
            "rules_fired": [{"rule": rule, "finding": finding} for rule, finding in outcome.rules_fired],
            "unknown_facts": outcome.unknown_facts,
            "unavailable": outcome.unavailable_types,
            "unavailable_reasons": {key: _reason_label(message) for key, message in outcome.unavailable_messages.items()},
            "undetermined": outcome.undetermined,
            "suppressed": [r.as_record() for r in suppression.reasons if r.kind == "finding" and r.target in hidden],
            "suggestions_held_back": sorted(suppression.suggestions),
            "rule_errors": outcome.rule_errors,
            "fallback": outcome.fallback,
            "timings_ms": outcome.timings_ms,
        },
        states=[(f, "suppressed", None) for f in outcome.suppressed]
        + [(f, "undetermined", ",".join(outcome.unavailable_types)) for f in outcome.undetermined],
    )
    for finding in outcome.findings:
        state.metrics.findings.labels(finding=finding).inc()
    for card in outcome.sent:
        state.metrics.cards.labels(finding=card["primary"]).inc()
    level = logging.ERROR if outcome.fallback else logging.INFO
    log_event(
        level, "hook answered" if not outcome.fallback else "response failed its schema; sent no cards",
        hookInstance=body["hookInstance"], service=service_id, hook=hook_name, pack_version=ruleset.version,
        findings=outcome.findings, cards=len(outcome.body["cards"]), unavailable=outcome.unavailable,
        timings_ms=outcome.timings_ms,
        duration_ms=duration_ms,
    )
    return json_response(outcome.body)


def _record_failure(state, record: dict, status: int, started: float) -> None:
    """Record a call that was answered with an error (the report counts them); a store that
    cannot record it is logged, and the call's own answer still goes out."""
    try:
        state.store.record_call(**record, status=status,
                                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                                detail={"error": status})
    except Exception as exc:  # noqa: BLE001 - the error answer matters more than its record
        log_event(logging.ERROR, "failed call not recorded", error_type=type(exc).__name__, status=status)


def _reason_label(reason: str) -> str:
    """A low-cardinality label for a FHIR fetch error message."""
    for needle, label in (("in time", "timeout"), ("reached", "unreachable"), ("HTTP 5", "http_5xx"),
                          ("HTTP", "http_other"), ("not FHIR JSON", "not_fhir"), ("JSON", "bad_json"),
                          ("circuit", "circuit_open"), ("budget", "budget")):
        if needle in reason:
            return label
    return "other"


def utcnow() -> datetime:
    """The service clock."""
    return datetime.now(UTC)
