"""Minimal CORS for browser-based CDS Clients: preflight 204 and Allow-Origin on responses."""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, Response, request

ALLOW_HEADERS = "Authorization, Content-Type"
ALLOW_METHODS = "GET, POST, OPTIONS"
DEFAULT_MAX_AGE_SECONDS = 600


class Cors:
    """CORS policy from ``cors.origins``: an exact list of origins, or ``"*"``."""

    def __init__(self, origins: Iterable[str], max_age: int = DEFAULT_MAX_AGE_SECONDS) -> None:
        listed = [o.strip().rstrip("/") for o in origins]
        self.any = "*" in listed
        self.origins = frozenset(o.lower() for o in listed if o != "*")
        self.max_age = int(max_age)

    @property
    def enabled(self) -> bool:
        """False when no origin is allowed (no CORS headers are ever sent)."""
        return self.any or bool(self.origins)

    def allow_origin(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for this request's Origin, if allowed."""
        if self.any:
            return "*"
        if origin and origin.rstrip("/").lower() in self.origins:
            return origin
        return None

    def preflight(self) -> Response | None:
        """Answer an OPTIONS preflight with 204 (before authentication); None otherwise."""
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        response = Response(status=204)
        if self.allow_origin(request.headers.get("Origin")):
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Max-Age"] = str(self.max_age)
        return response

    def decorate(self, response: Response) -> Response:
        """Add Allow-Origin (and Vary: Origin unless "*") to every response."""
        if not self.enabled:
            return response
        allowed = self.allow_origin(request.headers.get("Origin"))
        if allowed:
            response.headers["Access-Control-Allow-Origin"] = allowed
        if not self.any:
            response.vary.add("Origin")
        return response


def init_cors(app: Flask, cors_config: dict) -> Cors:
    """Register the preflight hook and the response decorator on ``app``."""
    cors = Cors(cors_config.get("origins") or [],
                cors_config.get("max_age_seconds", DEFAULT_MAX_AGE_SECONDS))
    app.before_request(cors.preflight)
    app.after_request(cors.decorate)
    app.extensions["cds_cors"] = cors
    return cors
