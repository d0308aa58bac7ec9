"""Flask integration: the before_request JWT gate, the 401 response and CORS registration."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import NotFound

from cds_service.auth.cors import init_cors
from cds_service.auth.errors import AuthError
from cds_service.auth.verify import Authenticator, token_hints
from cds_service.logs import route_template

log = logging.getLogger("cds_service.auth")

#: Paths that never need a token (exact) and path prefixes that never need one.
PUBLIC_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs",
                          "/favicon.ico", "/favicon.svg"})
PUBLIC_PREFIXES = ("/static/", "/demo", "/trend")
DISCOVERY_PATH = "/cds-services"

UNAUTHORIZED_BODY = json.dumps(
    {"resourceType": "OperationOutcome",
     "issue": [{"severity": "error", "code": "login", "diagnostics": "Unauthorized"}]},
    separators=(",", ":"),
)


def unauthorized() -> Response:
    """HTTP 401 with a fixed OperationOutcome and ``WWW-Authenticate: Bearer``, no detail."""
    return Response(UNAUTHORIZED_BODY, status=401, mimetype="application/json",
                    headers={"WWW-Authenticate": "Bearer"})


def _dot_segments(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.split("/"))


def is_public(method: str, path: str, discovery_public: bool,
              extra_public: Iterable[str] = (), extra_prefixes: tuple[str, ...] = ()) -> bool:
    """True for requests that pass without a token; every other path needs one (fail closed)."""
    if method == "OPTIONS":
        return True
    if _dot_segments(path):
        return False
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or path in extra_public:
        return True
    if extra_prefixes and path.startswith(extra_prefixes):
        return True
    return discovery_public and method in ("GET", "HEAD") and path.rstrip("/") == DISCOVERY_PATH


def init_auth(app: Flask, auth: Authenticator | None, config: dict[str, Any],
              extra_public: Iterable[str] = (), extra_prefixes: tuple[str, ...] = ()) -> None:
    """Register CORS and the JWT gate; verified claims land in ``flask.g.jwt_claims``.
    ``extra_prefixes``: paths with a gate of their own (``/admin/`` when it is configured)."""
    init_cors(app, config.get("cors") or {})
    auth_cfg = config.get("auth") or {}
    required = bool(auth_cfg.get("required", True)) if auth is None else auth.required
    if required and auth is None:
        raise ValueError("auth.required is true but no Authenticator was given")
    discovery_public = not (auth.discovery_requires_auth if auth is not None
                            else auth_cfg.get("discovery_requires_auth", True))
    extra = frozenset(extra_public)
    app.extensions["cds_auth"] = auth

    @app.before_request
    def _authenticate() -> Response | None:
        g.jwt_claims = None
        if not required or is_public(request.method, request.path, discovery_public, extra, extra_prefixes):
            return None
        if isinstance(request.routing_exception, NotFound) and not _dot_segments(request.path):
            return None  # no such route: the 404 handler answers (a token would not change that)
        header = request.headers.get("Authorization")
        try:
            g.jwt_claims = auth.verify(header, request.path)
        except AuthError as exc:
            log.warning("auth rejected", extra={"reason": exc.reason, "endpoint": route_template(),
                                                **token_hints(header)})
            return unauthorized()
        return None
