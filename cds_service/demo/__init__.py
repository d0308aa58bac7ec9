"""`sarcopenia-cds demo`: the service with synthetic patients, a demo FHIR source, an EHR-simulator
page at /demo and the SMART trend view at /trend/<patient_id>.

The demo acts as an EHR would: it has its own ES384 key (made at start, in memory only), trusted as
an issuer in demo mode only; the browser asks `POST /demo/token` for each signed JWT and never
holds the key. Authentication stays on for every CDS Hooks endpoint.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

from cds_service.demo.data import DemoData
from cds_service.demo.issuer import DemoIssuer

DEMO_DATABASE = "sarcopenia-cds-demo.db"

__all__ = [
    "DemoState",
    "DemoData",
    "DemoIssuer",
    "build_demo_config",
    "create_demo_app",
    "register_demo",
    "run_demo",
]


@dataclass
class DemoState:
    """What the demo blueprints share: the patients and the demo EHR identity."""

    data: DemoData
    issuer: DemoIssuer
    base_url: str

    @property
    def fhir_base(self) -> str:
        return f"{self.base_url}/demo/fhir"


def build_demo_config(
    host: str, port: int, issuer: DemoIssuer, workdir: Path | None = None
) -> dict[str, Any]:
    """The configuration `run_demo` passes to create_app: auth on, the demo issuer trusted, demo mode on."""
    database = (workdir or Path.cwd()) / DEMO_DATABASE
    return {
        "host": host,
        "port": port,
        "base_url": issuer.base_url,
        "auth": {"required": True, "issuers": [issuer.issuer_config()]},
        "demo": {"enabled": True},
        # the demo's FHIR source is this process on loopback; /metrics stays open for the page
        "fhir": {"allow_private_addresses": True},
        "database": {"url": f"sqlite:///{database}"},
        "logging": {"format": "text", "level": "INFO"},
    }


def register_demo(app: Flask, issuer: DemoIssuer, data: DemoData | None = None) -> DemoState:
    """Add the demo page, /demo/token, the demo FHIR source and the trend view to an app.

    Every demo route answers 404 unless the app's configuration has `demo.enabled: true`."""
    from cds_service.demo import fhir, trend, views

    state = DemoState(data=data or DemoData(), issuer=issuer, base_url=issuer.base_url)
    app.extensions["demo"] = state
    for blueprint in (views.bp, fhir.bp, trend.bp):
        app.register_blueprint(blueprint)
    return state


def create_demo_app(
    host: str,
    port: int,
    workdir: Path | None = None,
    *,
    clock=None,
    overrides: dict[str, Any] | None = None,
) -> Flask:
    """create_app with the demo configuration, plus the demo blueprints."""
    from cds_service.app import create_app

    base_url = f"http://{host}:{port}"
    issuer = DemoIssuer(base_url)
    config = build_demo_config(host, port, issuer, workdir)
    for key, value in (overrides or {}).items():
        config[key] = (
            {**config[key], **value}
            if isinstance(value, dict) and isinstance(config.get(key), dict)
            else value
        )
    app = create_app(config, clock=clock) if clock else create_app(config)
    register_demo(app, issuer)
    return app


def run_demo(host: str = "127.0.0.1", port: int = 8080, locale: str | None = None) -> int:
    """Serve the demo (werkzeug, threaded: the service may call the demo FHIR source in the same process)."""
    from werkzeug.serving import make_server

    app = create_demo_app(host, port, overrides={"locale": locale} if locale else None)
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        app.extensions["cds"].store.dispose()
        print(
            f"sarcopenia-cds demo: cannot listen on {host}:{port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    state: DemoState = app.extensions["demo"]
    print(
        f"sarcopenia-cds demo: open {state.base_url}/demo  (synthetic patients only; "
        f"database {Path.cwd() / DEMO_DATABASE})",
        flush=True,
    )
    print(
        f"  CDS Hooks discovery: {state.base_url}/cds-services (JWT required; the page signs its calls)",
        flush=True,
    )
    print(f"  demo FHIR source:    {state.fhir_base}", flush=True)

    def stop(signum, frame):  # noqa: ARG001 - signal handler signature
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.extensions["cds"].store.dispose()
    print("sarcopenia-cds demo: stopped", file=sys.stderr, flush=True)
    return 0
