"""GET /: the front door (service, version, rule packs, hooks, links) and /favicon.ico; no patient data."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, render_template

import hooks as hook_registry
from cds_service import __version__
from cds_service.api.discovery import discovery_document

bp = Blueprint("home", __name__, template_folder="templates")

_STATIC = Path(__file__).parent / "static"
FAVICON_ICO = (_STATIC / "favicon.ico").read_bytes()
FAVICON_SVG = (_STATIC / "favicon.svg").read_bytes()


def _links(config: dict) -> list[tuple[str, str, str]]:
    """(href, label, what it is) of the public entry points; the demo only when it runs."""
    links = [
        ("/cds-services", "CDS Hooks discovery", "the services, their hooks and prefetch templates"
         + (" (JWT required)" if config["auth"]["required"] and config["auth"]["discovery_requires_auth"] else "")),
        ("/docs", "API reference", "every route, request and response, from the OpenAPI document"),
        ("/openapi.json", "OpenAPI 3.1 document", "for code generators and API tools"),
        ("/healthz", "health", "liveness and the active rule packs"),
        ("/readyz", "readiness", "database reachable, rule packs loaded"),
        ("/metrics", "metrics", "Prometheus text format"),
    ]
    if config.get("demo", {}).get("enabled") and "demo" in current_app.extensions:
        links.insert(0, ("/demo", "demo EHR", "synthetic patients: fire a hook and see the cards"))
    return links


@bp.get("/")
def home():
    """The front door: what this service is and where to go next."""
    state = current_app.extensions["cds"]
    config = state.config
    ruleset = state.rules.current
    services = discovery_document(ruleset)["services"]
    return render_template(
        "api/home.html",
        version=__version__,
        packs=ruleset.versions,
        profile=config["rules"]["profile"],
        ct_cutoffs=config["rules"]["ct_cutoffs"],
        locale=config["locale"],
        auth_required=config["auth"]["required"],
        services=services,
        service_count=len(hook_registry.SERVICES),
        links=_links(config),
    )


_CACHED = {"Cache-Control": "public, max-age=86400"}


@bp.get("/favicon.ico")
def favicon():
    """The service's icon (browsers ask for /favicon.ico on every page they open)."""
    return Response(FAVICON_ICO, mimetype="image/vnd.microsoft.icon", headers=_CACHED)


@bp.get("/favicon.svg")
def favicon_svg():
    """The same icon as SVG, for the pages' <link rel=icon>."""
    return Response(FAVICON_SVG, mimetype="image/svg+xml", headers=_CACHED)
