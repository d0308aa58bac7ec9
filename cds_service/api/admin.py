"""/admin: the governance report, a patient's suppressions (list, lift) and explain, for operators.

Registered only when ``admin`` is configured (else /admin answers 404). Every request needs an
operator's bearer token (cds_service.auth.admin); every action is audited in the store and
logged, never with patient data: patient ids travel in POST bodies (not URLs, which proxies
log) and are pseudonymised by the store.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

from flask import Blueprint, Response, current_app, g, request

from cds_service.api.http import json_response, read_json
from cds_service.auth.admin import AdminDenied, AdminGate
from cds_service.cli_governance import list_suppressions, periods
from cds_service.logs import log_event
from cds_service.protocol import ProtocolError

bp = Blueprint("admin", __name__, url_prefix="/admin")


def init_admin(app, config: dict) -> None:
    """Mount /admin when ``admin.oidc_issuer`` or ``admin.tokens`` is configured."""
    gate = AdminGate(config["admin"])
    if not gate.enabled:
        return
    app.extensions["cds_admin"] = gate
    app.register_blueprint(bp)


@bp.before_request
def _operator() -> Response | None:
    gate: AdminGate = current_app.extensions["cds_admin"]
    try:
        g.operator = gate.check(request.headers.get("Authorization"))
    except AdminDenied as denied:
        log_event(logging.WARNING, "admin request refused", status=denied.status, endpoint=request.url_rule.rule
                  if request.url_rule else "/admin")
        error = ProtocolError.single(denied.status, "security" if denied.status == 401 else "forbidden", str(denied))
        headers = {"WWW-Authenticate": 'Bearer realm="sarcopenia-cds admin"'} if denied.status == 401 else None
        return json_response(error.body(), denied.status, headers)
    return None


def _audit(action: str, **detail) -> None:
    state = current_app.extensions["cds"]
    state.store.audit(g.operator.actor, action, detail, state.clock())
    log_event(logging.INFO, "admin action", actor=g.operator.actor, action=action, **detail)


def _day(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
    except ValueError:
        raise ProtocolError.single(400, "value", f"{name}: '{value[:40]}' is not a date YYYY-MM-DD", name) from None


@bp.get("/report")
def report():
    """The governance report: ?since=YYYY-MM-DD[&until=YYYY-MM-DD][&format=html|csv|json]."""
    from cds_service.governance import build_report, render

    state = current_app.extensions["cds"]
    now = state.clock()
    since = _day("since", request.args.get("since")) or datetime(now.year, 1, 1, tzinfo=UTC)
    until = (_day("until", request.args.get("until")) or datetime.combine(now.date(), datetime.min.time(), UTC)) \
        + timedelta(days=1)
    fmt = request.args.get("format", "html")
    if fmt not in ("html", "csv", "json"):
        raise ProtocolError.single(400, "value", f"format: '{fmt[:20]}' is not one of html, csv, json", "format")
    if until <= since:
        raise ProtocolError.single(400, "value", "until: the last day is before since", "until")
    built = build_report(state.store, since, until, retention_days=state.config["retention"]["days"], now=now)
    _audit("report", since=since.date().isoformat(), until=(until - timedelta(days=1)).date().isoformat(), format=fmt)
    types = {"html": "text/html; charset=utf-8", "csv": "text/csv; charset=utf-8", "json": "application/json"}
    return Response(render(built, fmt), 200, {"Content-Type": types[fmt], "Cache-Control": "no-store"})


def _patient(body) -> str:
    patient = body.get("patient") if isinstance(body, dict) else None
    if not isinstance(patient, str) or not patient:
        raise ProtocolError.single(400, "required", "$.patient: the patient's id is required", "$.patient")
    return patient


@bp.post("/suppressions/list")
def suppressions_list():
    """The suppressions in force for {"patient": ID} (every service and caller), and its lifts."""
    state = current_app.extensions["cds"]
    listed = list_suppressions(state.store, state.config, _patient(read_json()), state.clock())
    _audit("suppressions.list", in_force=len(listed["in_force"]))
    return json_response(listed)


@bp.post("/suppressions/lift")
def suppressions_lift():
    """Lift {"patient": ID, "finding"?: CODE, "reason": TEXT}; audited (who, when, why)."""
    state = current_app.extensions["cds"]
    body = read_json()
    patient = _patient(body)
    reason, finding = body.get("reason"), body.get("finding")
    if not isinstance(reason, str) or not reason.strip():
        raise ProtocolError.single(400, "required", "$.reason: a lift needs a reason", "$.reason")
    if finding is not None and not isinstance(finding, str):
        raise ProtocolError.single(400, "value", "$.finding: a finding code (string) or absent", "$.finding")
    result = state.store.lift_suppressions(patient, state.clock(), *periods(state.config),
                                           actor=g.operator.actor, reason=reason, finding=finding)
    log_event(logging.INFO, "admin action", actor=g.operator.actor, action="suppressions.lift",
              lift=result.lift_id, entries=result.entries, finding=finding)
    return json_response({"lift": result.lift_id, "entries": result.entries,
                          "findings": result.findings, "suggestions": result.suggestions})


@bp.get("/explain/<hook_instance>")
def explain(hook_instance: str):
    """What the calls with this hookInstance fired, from the store (no patient data)."""
    state = current_app.extensions["cds"]
    calls = state.store.explain_call(hook_instance)
    _audit("explain", calls=len(calls))
    if not calls:
        raise ProtocolError.single(404, "not-found", f"no call with hookInstance '{hook_instance[:80]}' is stored")
    return json_response({"calls": calls})
