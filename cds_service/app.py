"""The Flask application factory: configuration, rule packs, store, FHIR client, auth, routes."""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException

from cds_service.api import discovery, feedback, home, openapi, ops, services
from cds_service.api.http import COLLECTOR, GC_PAUSE_BYTES, error_response
from cds_service.config import load_config
from cds_service.engine import EngineSettings, RuleSetHolder
from cds_service.fhir import FhirClient
from cds_service.fhir.egress import EgressPolicy
from cds_service.logs import log_event, route_template, setup_logging
from cds_service.metrics import Metrics
from cds_service.protocol import ProtocolError
from cds_service.smart import register_smart
from cds_service.store import Store
from cds_service.store.engine import RETRY_AFTER_SECONDS, is_database_outage


@dataclass
class ServiceState:
    """Everything a request handler needs, built once per app."""

    config: dict[str, Any]
    rules: RuleSetHolder
    engine_settings: EngineSettings
    store: Store
    fhir: FhirClient
    metrics: Metrics
    clock: Callable[[], datetime]
    auth: Any = None


_HTTP_MESSAGES = {
    404: ("not-found", "there is no such endpoint: {path}"),
    405: ("not-supported", "method {method} is not allowed on {path}"),
    413: ("too-costly", "the request body is larger than the limit of {limit} bytes"),
}


def engine_settings(settings: dict[str, Any]) -> EngineSettings:
    """What the configuration chooses for the rule engine."""
    return EngineSettings(
        profile=settings["rules"]["profile"],
        ct_cutoffs=settings["rules"]["ct_cutoffs"],
        locale=settings["locale"],
        finding_system=settings["rules"]["finding_system"],
    )


class CdsServicesPaths:
    """WSGI middleware: `/cds-services/` and `/cds-services//id` are `/cds-services` and
    `/cds-services/id` (a discovery URL typed with a trailing slash makes clients build the
    second), before routing and before the JWT audience is compared. Other paths are untouched."""

    PREFIX = "/cds-services"

    def __init__(self, wsgi_app: Callable[..., Any]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO") or ""
        if path.startswith(self.PREFIX) and ("//" in path or path.endswith("/")):
            tidy = re.sub(r"/{2,}", "/", path).rstrip("/")
            if tidy == self.PREFIX or tidy.startswith(self.PREFIX + "/"):
                environ["PATH_INFO"] = tidy
        return self.wsgi_app(environ, start_response)


def create_app(
    config: dict[str, Any] | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    rules: RuleSetHolder | None = None,
) -> Flask:
    """Build the service. `config` overrides the layered configuration (defaults, file, environment).

    `rules`: rule packs already loaded (serve loads them in the gunicorn master, so a worker that
    starts while the files on disk are broken still starts from the last good set)."""
    settings = load_config(overrides=config)
    setup_logging(settings["logging"])
    app = Flask(__name__)
    app.wsgi_app = CdsServicesPaths(app.wsgi_app)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = settings["limits"]["max_body_bytes"]
    app.config["CDS"] = settings
    app.json.sort_keys = False  # type: ignore[attr-defined]

    if rules is None:
        rules = RuleSetHolder(settings["rules"]["paths"] or None)
    if settings["rules"]["watch"]:
        rules.start_watching(settings["rules"]["watch_interval_seconds"])
    store = Store(settings["database"]["url"], settings["privacy"]["pseudonym_key"],
                  pseudonym_key_file=settings["privacy"]["pseudonym_key_file"],
                  card_journal=settings["database"]["card_journal"])
    store.migrate()
    _purge_expired(store, settings)
    state = ServiceState(
        config=settings,
        rules=rules,
        engine_settings=engine_settings(settings),
        store=store,
        fhir=FhirClient({**settings["fhir"], "max_bundle_pages": settings["limits"]["max_bundle_pages"]},
                        egress=EgressPolicy(settings["fhir"], settings["auth"]["issuers"])),
        metrics=Metrics(),
        clock=clock or services.utcnow,
    )
    app.extensions["cds"] = state
    rules.refused_listeners.append(lambda trigger, _exc: state.metrics.reloads_refused.labels(trigger=trigger).inc())
    rules.warm(state.engine_settings)  # no-op when serve warmed them before the fork
    _install_auth(app, state)
    for blueprint in (home.bp, discovery.bp, services.bp, feedback.bp, ops.bp, openapi.bp):
        app.register_blueprint(blueprint)
    register_smart(app, settings)
    from cds_service.api.admin import init_admin

    init_admin(app, settings)
    _install_error_handlers(app, settings)
    _install_request_metrics(app, state)
    log_event(logging.INFO, "service started", pack_version=rules.current.version,
              profile=settings["rules"]["profile"], ct_cutoffs=settings["rules"]["ct_cutoffs"],
              auth_required=settings["auth"]["required"])
    return app


def _purge_expired(store: Store, settings: dict[str, Any]) -> None:
    """``retention.days``: delete what is older than the limit, once at start-up (each worker
    start purges again; the delete is idempotent)."""
    days = settings["retention"]["days"]
    if days:
        from datetime import UTC, timedelta

        store.purge(datetime.now(UTC) - timedelta(days=days))


def install_reload_signal(app: Flask) -> None:
    """SIGHUP reloads the rule packs in this process (a set with errors is refused; the last
    good one stays and /healthz shows the error). Called by the server entry points, not by
    create_app, so that tests and notebooks keep their own signal handling."""
    holder = app.extensions["cds"].rules

    def reload_in_background(_signum: int, _frame: Any) -> None:
        threading.Thread(target=_reload, args=(holder,), name="rules-reload", daemon=True).start()

    signal.signal(signal.SIGHUP, reload_in_background)


def _reload(holder: RuleSetHolder) -> None:
    holder.reload(trigger="SIGHUP")  # logs the outcome (a refused set at ERROR, with its diagnostics)


def _install_auth(app: Flask, state: ServiceState) -> None:
    from cds_service.auth import Authenticator, init_auth

    settings = state.config
    authenticator = None
    if settings["auth"]["required"]:
        authenticator = Authenticator(settings["auth"], settings["base_url"], settings["redis"]["url"])
    state.auth = authenticator
    from cds_service.auth.admin import AdminGate

    # /admin/ has a gate of its own (operators' tokens, not EHRs' JWTs) when it is configured
    admin_prefixes = ("/admin/",) if AdminGate(settings["admin"]).enabled else ()
    init_auth(app, authenticator, settings, extra_prefixes=admin_prefixes)


def _install_error_handlers(app: Flask, settings: dict[str, Any]) -> None:
    @app.errorhandler(ProtocolError)
    def protocol_error(error: ProtocolError):
        log_event(logging.WARNING if error.status < 500 else logging.ERROR, "request refused",
                  status=error.status, route=route_template(), hookInstance=g.get("hook_instance"),
                  issues=[i.code for i in error.issues])
        return error_response(error)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code, template = _HTTP_MESSAGES.get(error.code or 500, ("processing", "{name}"))
        message = template.format(path=request.path[:200], method=request.method,
                                  limit=settings["limits"]["max_body_bytes"], name=error.name)
        if error.code == 405 and error.valid_methods:
            message += f"; use {', '.join(m for m in error.valid_methods if m not in ('HEAD', 'OPTIONS'))}"
        headers = {k: v for k, v in error.get_response().headers.items() if k.lower() == "allow"}
        return error_response(ProtocolError.single(error.code or 500, code, message), headers)

    @app.errorhandler(Exception)
    def internal_error(error: Exception):
        if isinstance(error, RecursionError):  # wherever it happens, a structure nested too deeply
            log_event(logging.WARNING, "request refused", status=400, route=route_template(), issues=["too-costly"])
            return error_response(ProtocolError.single(
                400, "too-costly", "the request is nested too deeply to be processed"))
        if is_database_outage(error):
            log_event(logging.ERROR, "database unavailable", error_type=type(error).__name__, route=route_template(),
                      hookInstance=g.get("hook_instance"))
            return error_response(ProtocolError.single(
                503, "transient", "the service's database is unavailable; try again shortly"),
                {"Retry-After": str(RETRY_AFTER_SECONDS)})
        reference = str(uuid.uuid4())
        frames = [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}" for f in traceback.extract_tb(error.__traceback__)]
        log_event(logging.ERROR, "internal error", error_type=type(error).__name__, frames=frames[-8:],
                  reference=reference, route=route_template(), hookInstance=g.get("hook_instance"))
        return error_response(ProtocolError.single(
            500, "exception", f"the service failed to process the request; reference {reference}"))


def _install_request_metrics(app: Flask, state: ServiceState) -> None:
    @app.before_request
    def start_timer():
        g.cds_started = time.perf_counter()
        if (request.content_length or 0) >= GC_PAUSE_BYTES:  # resumed at teardown (CollectorPause)
            COLLECTOR.pause()
            g.cds_collector_paused = True

    @app.teardown_request
    def resume_collector(_error):
        if g.pop("cds_collector_paused", False):
            COLLECTOR.resume()

    @app.after_request
    def observe(response):
        if request.path.startswith("/cds-services"):
            hook = g.get("cds_hook") or ("discovery" if request.path.rstrip("/") == "/cds-services" else "feedback"
                                         if request.path.endswith("/feedback") else "unknown")
            status = str(response.status_code)
            state.metrics.requests.labels(hook=hook, status=status).inc()
            started = g.get("cds_started")
            if started is not None:
                state.metrics.latency.labels(hook=hook, status=status).observe(time.perf_counter() - started)
        return response
