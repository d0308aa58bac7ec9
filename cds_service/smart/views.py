"""/trend/launch and /trend/callback: the SMART EHR launch of the trend view.

launch: check `iss` against `smart.allowed_issuers` (before any request to it), read its
smart-configuration, keep {issuer, token endpoint, PKCE verifier, browser binding} server-side
under a random `state`, redirect to the authorize endpoint. callback: take the session (once),
exchange the code with the verifier, read the record with the token and render the demo's SVG
charts. The token lives only inside the callback request; it is never stored, logged or shown.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
)

from cds_service.demo import ruleview
from cds_service.demo.i18n import gender, texts
from cds_service.demo.trend import charts_for
from cds_service.logs import log_event
from cds_service.smart import oauth
from cds_service.smart.oauth import LaunchError
from cds_service.smart.record import read_record
from cds_service.smart.sessions import SessionStoreError, state_id

bp = Blueprint("smart_trend", __name__, template_folder="templates")

#: the page may be framed by the EHR, so no frame-ancestors; nothing but inline CSS is loaded
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'",
}
COOKIE_PREFIX = "trend_launch_"
COOKIE_PATH = "/trend/callback"


def _smart() -> Any:
    return current_app.extensions["smart"]


def _headers(response: Response) -> Response:
    for key, value in SECURITY_HEADERS.items():
        response.headers[key] = value
    return response


def _error(
    status: int, message: str, reason: str, sid: str | None = None, **fields: Any
) -> Response:
    log_event(
        logging.WARNING if status < 500 else logging.ERROR,
        "smart launch refused",
        status=status,
        reason=reason,
        state_id=sid,
        **fields,
    )
    response = make_response(
        render_template("smart/error.html", status=status, message=message, tx=_texts(), lang=_locale()), status
    )
    return _headers(response)


def _locale() -> str:
    return current_app.config["CDS"].get("locale", "en")


def _texts() -> dict[str, str]:
    return texts(_locale())


def _cookie_name(state: str) -> str:
    return COOKIE_PREFIX + state_id(state)


def _secure() -> bool:
    base = _smart().settings.base_url or ""
    return request.is_secure or base.startswith("https://")


def _not_enabled():
    return _error(404, "The SMART launch of the trend view is not enabled on this service.", "smart disabled")


@bp.get("/trend/launch")
def launch():
    """EHR launch: `?iss=<FHIR base>&launch=<opaque>` → 302 to the EHR's authorize endpoint."""
    smart = _smart()
    settings = smart.settings
    if not settings.enabled:
        return _not_enabled()
    iss = request.args.get("iss", "")
    launch_id = request.args.get("launch", "")
    if not iss or not launch_id:
        return _error(
            400,
            "The launch needs the parameters iss and launch: open the trend from the "
            "EHR (a standalone launch is not supported).",
            "iss or launch missing",
        )
    if len(iss) > 2048 or len(launch_id) > 4096:
        return _error(400, "The launch parameters are too long.", "parameter too long")
    if not settings.issuer_allowed(iss):
        # no request of any kind goes to an issuer that is not configured
        return _error(
            400,
            "This EHR (iss) is not on the service's list of allowed SMART issuers "
            "(smart.allowed_issuers).",
            "issuer not allowed",
            iss=iss[:300],  # configuration, not patient data: says what to add to the allow-list
        )
    try:
        oauth.check_url(iss, "iss", settings.allow_http)
        found = oauth.discover(iss, settings.http_timeout_seconds, settings.allow_http)
    except LaunchError as exc:
        return _error(exc.status if exc.reason != "iss scheme" else 400, exc.message, exc.reason)
    state, verifier = oauth.new_state(), oauth.new_verifier()
    session: dict[str, Any] = {
        "iss": iss,
        "token_endpoint": found.token_endpoint,
        "verifier": verifier,
        "created": time.time(),
    }
    nonce = None
    if settings.browser_binding:
        nonce = secrets.token_urlsafe(32)
        session["browser"] = hashlib.sha256(nonce.encode()).hexdigest()
    try:
        smart.sessions.put(state, session, settings.session_ttl_seconds)
    except SessionStoreError as exc:
        return _error(503, f"The launch cannot start now: {exc}.", "session store unavailable")
    target = oauth.authorize_url(
        found.authorization_endpoint,
        client_id=settings.client_id,
        redirect_uri=settings.redirect_uri,
        scope=settings.scopes,
        state=state,
        aud=iss,
        launch=launch_id,
        code_challenge=oauth.challenge_of(verifier),
    )
    log_event(
        logging.INFO,
        "smart launch started",
        state_id=state_id(state),
        iss=iss,
        launch_ehr="launch-ehr" in found.capabilities,
    )
    response = _headers(redirect(target, code=302))
    if nonce is not None:
        secure = _secure()
        response.set_cookie(
            _cookie_name(state),
            nonce,
            max_age=int(settings.session_ttl_seconds),
            path=COOKIE_PATH,
            httponly=True,
            secure=secure,
            samesite="None" if secure else "Lax",
        )
    return response


@bp.get("/trend/callback")
def callback():
    """The authorize endpoint's redirect: `?code=…&state=…` (or `?error=…&state=…`)."""
    smart = _smart()
    settings = smart.settings
    if not settings.enabled:
        return _not_enabled()
    state = request.args.get("state", "")
    if not state or len(state) > 512:
        return _error(
            400, "The callback has no state: open the trend again from the EHR.", "state missing"
        )
    sid = state_id(state)
    try:
        session = smart.sessions.take(state)
    except SessionStoreError as exc:
        return _error(503, f"The launch cannot go on now: {exc}.", "session store unavailable", sid)
    if session is None:
        return _error(
            400,
            "This launch is unknown or has expired (it is valid for "
            f"{settings.session_ttl_seconds:g} seconds and can be used once): open the trend "
            "again from the EHR.",
            "unknown or expired state",
            sid,
        )
    started = time.perf_counter()
    response = _callback(session, state, sid)
    if settings.browser_binding:
        response.delete_cookie(
            _cookie_name(state),
            path=COOKIE_PATH,
            secure=_secure(),
            samesite="None" if _secure() else "Lax",
        )
    if response.status_code == 200:
        log_event(
            logging.INFO,
            "smart trend rendered",
            state_id=sid,
            duration_ms=round((time.perf_counter() - started) * 1000),
        )
    return response


def _callback(session: dict[str, Any], state: str, sid: str) -> Response:
    smart = _smart()
    settings = smart.settings
    if settings.browser_binding:
        nonce = request.cookies.get(_cookie_name(state), "")
        expected = session.get("browser", "")
        if not nonce or not hmac.compare_digest(
            hashlib.sha256(nonce.encode()).hexdigest(), expected
        ):
            return _error(
                400,
                "This callback does not belong to the browser that started the launch: "
                "open the trend again from the EHR. (If the EHR shows apps in a frame, "
                "the browser may block the launch cookie.)",
                "browser binding",
                sid,
            )
    error = request.args.get("error")
    if error:
        shown = error if oauth._ERROR_CODE.match(error) else "error"
        return _error(
            400, f"The EHR did not authorize the trend view ({shown}).", f"authorize {shown}", sid
        )
    code = request.args.get("code", "")
    if not code or len(code) > 4096:
        return _error(400, "The callback has no authorization code.", "code missing", sid)
    try:
        token = oauth.exchange_code(
            session["token_endpoint"],
            code=code,
            redirect_uri=settings.redirect_uri,
            verifier=session["verifier"],
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            timeout=settings.http_timeout_seconds,
        )
        hinted = oauth.app_context_patient(token.app_context)
        if hinted is not None and hinted != token.patient:
            log_event(
                logging.WARNING,
                "smart appContext names another patient; the token's patient is used",
                state_id=sid,
            )
        state_obj = current_app.extensions["cds"]
        ruleset = state_obj.rules.current
        record = read_record(
            smart.fhir,
            session["iss"],
            token.access_token,
            token.patient,
            ruleset,
            settings.fhir_budget_seconds,
        )
    except LaunchError as exc:
        return _error(exc.status, exc.message, exc.reason, sid)
    del token  # the access token is not needed for rendering; it dies with this request
    if record.skipped:  # optional reads (Condition, for the header): FetchError texts carry no data
        log_event(
            logging.WARNING, "smart optional FHIR read skipped", state_id=sid, reads=record.skipped
        )
    engine = state_obj.engine_settings
    now = state_obj.clock()
    charts, markers, facts = charts_for(state_obj, ruleset, record.resources, now)
    summary = _summary(ruleset, record.resources)
    page = render_template(
        "smart/trend.html",
        tx=texts(engine.locale),
        lang=engine.locale,
        gender=gender(engine.locale, summary["gender"]),
        patient=summary,
        charts=charts,
        markers=markers,
        facts=facts,
        warnings=record.warnings,
        profile=ruleview.title_of(ruleset, "profiles", engine.profile, engine.locale),
        ct_set=ruleview.title_of(ruleset, "ct_sets", engine.ct_cutoffs, engine.locale),
        pack_version=getattr(ruleset, "version", ""),
        now=now,
    )
    return _headers(make_response(page, 200))


def _summary(ruleset: Any, resources: list[dict[str, Any]]) -> dict[str, str]:
    """Name, sex, birth date and the cancer (a Condition in the packs' malignant-neoplasm value set)."""
    patient = next((r for r in resources if r.get("resourceType") == "Patient"), {})
    names = patient.get("name") or [{}]
    name = next((n for n in names if n.get("use") == "official"), names[0]) if names else {}
    text = (
        name.get("text") or " ".join([*(name.get("given") or []), name.get("family") or ""]).strip()
    )
    cancer = ""
    for resource in resources:
        if resource.get("resourceType") != "Condition":
            continue
        concept = resource.get("code") or {}
        codings = [
            (c.get("system"), c.get("code"))
            for c in concept.get("coding") or []
            if isinstance(c, dict)
        ]
        if ruleview.value_set_matches(ruleset, "malignant-neoplasm", codings):
            cancer = concept.get("text") or next(
                (c.get("display") for c in concept.get("coding") or [] if c.get("display")), ""
            )
            break
    return {
        "name": text or "(no name)",
        "gender": patient.get("gender") or "unknown",
        "birthDate": patient.get("birthDate") or "unknown",
        "cancer": cancer,
    }
