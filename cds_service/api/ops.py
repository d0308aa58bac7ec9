"""Operations: /healthz (process and rule packs), /readyz (database too), /metrics."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, request

from cds_service.api.http import json_response
from cds_service.auth.middleware import unauthorized
from cds_service.protocol import ProtocolError

bp = Blueprint("ops", __name__)


def _rules_status(state) -> dict:
    holder = state.rules
    status = {"versions": holder.current.versions, "version": holder.current.version,
              "loaded_at": holder.loaded_at.isoformat() if getattr(holder, "loaded_at", None) else None}
    if getattr(holder, "last_error", None):
        status["last_error"] = holder.last_error
        status["errors"] = list(getattr(holder, "last_errors", []) or holder.last_error.splitlines())
        refused_at = getattr(holder, "refused_at", None)
        status["refused_at"] = refused_at.isoformat() if refused_at else None
    return {k: v for k, v in status.items() if v is not None}


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers; shows the active rule packs and, after a refused reload
    (the last good set keeps serving), "status": "degraded" with the error."""
    state = current_app.extensions["cds"]
    rules = _rules_status(state)
    body = {"status": "degraded" if "last_error" in rules else "ok", "rules": rules}
    if "last_error" in rules:
        body["error"] = (f"rule pack reload refused ({len(rules['errors'])} error(s)); the last good set "
                         f"{rules['version']} keeps serving: " + rules["errors"][0])
    return json_response(body)


@bp.get("/readyz")
def readyz():
    """Readiness: rule packs loaded and the database reachable."""
    state = current_app.extensions["cds"]
    database = state.store.ping()
    body = {"status": "ok" if database else "unavailable", "database": "ok" if database else "unreachable",
            "rules": _rules_status(state)}
    return json_response(body, 200 if database else 503)


@bp.get("/metrics")
def metrics():
    """Prometheus text exposition, to the bearer of metrics.token only (its per-finding counters
    tell what the last call found); open in the demo; not here at all with neither."""
    state = current_app.extensions["cds"]
    token = state.config["metrics"]["token"]
    if not state.config["demo"]["enabled"]:
        if token is None:
            where = (f"on the internal metrics port {state.config['metrics']['port']}"
                     if state.config["metrics"]["port"] else "only with metrics.token or on metrics.port")
            raise ProtocolError.single(404, "not-found", f"metrics are served {where}")
        offered = request.headers.get("Authorization", "")
        if not hmac.compare_digest(offered.encode("utf-8", "replace"), f"Bearer {token}".encode()):
            return unauthorized()
    return Response(state.metrics.exposition(), mimetype="text/plain; version=0.0.4")
