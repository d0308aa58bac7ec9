"""GET /openapi.json: the OpenAPI 3.1 document of the HTTP API, built from the project's JSON Schemas
and the hooks' context schemas; GET /docs renders it as an HTML API reference (offline, no scripts)."""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

from flask import Blueprint, render_template

import hooks as hook_registry
from cds_service import __version__
from cds_service.api.http import json_response
from cds_service.protocol.validation import SCHEMA_DIR

bp = Blueprint("openapi", __name__, template_folder="templates")

_ERRORS = {
    "400": "Malformed JSON or a request that breaks the CDS Hooks 2.0 schema (every problem listed with its JSON path)",
    "401": "Missing or invalid JWT (no detail is given)",
    "404": "Unknown CDS service or path",
    "405": "Wrong HTTP method",
    "412": "Data the rules need is missing from the prefetch and cannot be fetched",
    "413": "Body or prefetch over the configured limit",
    "415": "Content-Type is not application/json",
    "500": "Internal error (a reference id, no internals)",
}

_SCHEMA_FILES = {"Discovery": "discovery", "Request": "request", "Response": "response",
                 "Feedback": "feedback", "OperationOutcome": "operation-outcome"}

_HTML = {"text/html": {"schema": {"type": "string"}}}
_JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}
_FHIR_JSON = {"application/fhir+json": {"schema": {"type": "object"}}}


def _rewrite_refs(node: Any, prefix: str) -> Any:
    """Point a schema's local `#/$defs/x` references at the component `<prefix>_x`."""
    if isinstance(node, dict):
        return {k: (f"#/components/schemas/{prefix}_{v.removeprefix('#/$defs/')}"
                    if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/")
                    else _rewrite_refs(v, prefix)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v, prefix) for v in node]
    return node


def _components() -> dict[str, Any]:
    """The project's JSON Schemas as components; each file's `$defs` become components of their own
    (inside an OpenAPI document `#/$defs/…` would point at the document's root, where there are none)."""
    schemas: dict[str, Any] = {}
    for name, file in _SCHEMA_FILES.items():
        schema = json.loads((SCHEMA_DIR / f"{file}.schema.json").read_text(encoding="utf-8"))
        for key in ("$schema", "$id"):  # an $id would move the base URI of the references below
            schema.pop(key, None)
        for def_name, definition in schema.pop("$defs", {}).items():
            schemas[f"{name}_{def_name}"] = _rewrite_refs(definition, name)
        schemas[name] = _rewrite_refs(schema, name)
    for module in hook_registry.HOOKS.values():
        schemas[_request_name(module)] = {
            "title": f"{module.HOOK} request",
            "description": f"A CDS Hooks request for the {module.HOOK} hook: the common request with this hook's context.",
            "allOf": [
                {"$ref": "#/components/schemas/Request"},
                {"type": "object", "properties": {"hook": {"const": module.HOOK},
                                                  "context": copy.deepcopy(module.CONTEXT_SCHEMA)}},
            ],
        }
    return schemas


def _request_name(module: Any) -> str:
    return "Request_" + module.HOOK.replace("-", "_")


def _errors(*codes: str) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/OperationOutcome"}
    return {code: {"description": _ERRORS[code], "content": {"application/json": {"schema": ref}}} for code in codes}


def _ok(description: str, content: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if content:
        answer["content"] = content
    return {"200": answer, **more}


def _public(operation_id: str, summary: str, responses: dict[str, Any], tag: str,
            parameters: list[dict[str, Any]] | None = None, description: str | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": [tag], "security": [],
                                 "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    if description:
        operation["description"] = description
    return {"get": operation}


def _query(name: str, description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": {"type": "string"}}


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def _service_paths() -> dict[str, Any]:
    """One path per CDS service, each with its own hook's request schema."""
    paths: dict[str, Any] = {}
    for module in hook_registry.HOOKS.values():
        paths[f"/cds-services/{module.SERVICE_ID}"] = {"post": {
            "operationId": "call_" + module.HOOK.replace("-", "_"),
            "summary": f"{module.HOOK}: {module.TITLE}",
            "description": f"{module.DESCRIPTION}\n\n{module.USAGE}",
            "tags": ["CDS Hooks"],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{_request_name(module)}"}}}},
            "responses": {"200": {"description": "Cards (an empty array when there is no guidance)",
                                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Response"}}}},
                          **_errors("400", "401", "404", "405", "412", "413", "415", "500")}}}
    return paths


@cache
def openapi_document() -> dict[str, Any]:
    """The document (stable across requests; depends only on the code)."""
    service_param = {"name": "id", "in": "path", "required": True, "description": "the CDS service id",
                     "schema": {"enum": sorted(hook_registry.SERVICES)}}
    demo_only = "Only in demo mode (`sarcopenia-cds demo`); 404 otherwise."
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sarcopenia-cds: CDS Hooks 2.0 service for cancer-associated sarcopenia",
            "version": __version__,
            "description": "CDS Hooks 2.0 (https://cds-hooks.hl7.org/STU2) discovery, service calls and feedback, "
                           "the SMART trend view, operational endpoints and the demo. Every non-2xx answer of the "
                           "API is a FHIR OperationOutcome.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "tags": [
            {"name": "CDS Hooks", "description": "Discovery, the three services and feedback (JWT from a trusted EHR)."},
            {"name": "Trend view", "description": "The SMART on FHIR launch of the muscle and weight trend view."},
            {"name": "Operations", "description": "Health, readiness, metrics, this document."},
            {"name": "Front door", "description": "The human entry points."},
            {"name": "Demo", "description": "The EHR simulator and its synthetic FHIR source (demo mode only)."},
        ],
        "components": {
            "securitySchemes": {"cdsHooksJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                                "description": "ES384/RS384 JWT signed by a trusted EHR; aud = the endpoint URL"}},
            "schemas": _components(),
        },
        "security": [{"cdsHooksJwt": []}],
        "paths": {
            "/cds-services": {"get": {
                "operationId": "discovery", "summary": "CDS Hooks discovery: one service per hook", "tags": ["CDS Hooks"],
                "description": "Public when `auth.discovery_requires_auth` is false.",
                "responses": {"200": {"description": "The services", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Discovery"}}}}, **_errors("401")}}},
            **_service_paths(),
            "/cds-services/{id}/feedback": {"post": {
                "operationId": "feedback", "summary": "Feedback on cards: accepted suggestions, overrides with reasons",
                "tags": ["CDS Hooks"],
                "parameters": [service_param],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Feedback"}}}},
                "responses": {"200": {"description": "Entries stored (each stored once however often posted)",
                                      "content": {"application/json": {"schema": {
                                          "type": "object", "required": ["stored", "duplicates"],
                                          "properties": {"stored": {"type": "integer"}, "duplicates": {"type": "integer"}}}}}},
                              **_errors("400", "401", "404", "405", "413", "415", "500")}}},
            "/trend/launch": _public(
                "trend_launch", "SMART EHR launch of the trend view", tag="Trend view",
                parameters=[_query("iss", "the EHR's FHIR base URL (must be in smart.allowed_issuers)", True),
                            _query("launch", "the EHR's opaque launch id", True)],
                description="Redirects to the EHR's authorize endpoint. 404 unless `smart.enabled`.",
                responses={"302": {"description": "To the EHR's authorize endpoint"},
                           "400": {"description": "A launch that cannot be accepted (HTML page)", "content": _HTML},
                           "404": {"description": "smart.enabled is false"}}),
            "/trend/callback": _public(
                "trend_callback", "OAuth redirect of the trend view: exchanges the code, shows the charts",
                tag="Trend view",
                parameters=[_query("code", "the authorization code"), _query("state", "the launch's state", True),
                            _query("error", "the authorize endpoint's error, if any")],
                responses={**_ok("The trend view (HTML)", _HTML),
                           "400": {"description": "A callback that cannot be accepted (HTML page)", "content": _HTML},
                           "404": {"description": "smart.enabled is false"}}),
            "/trend/{patient_id}": _public(
                "trend_demo", "The trend view of a demo patient", tag="Trend view",
                parameters=[_path("patient_id", "a demo patient id (syn-01 …)")], description=demo_only,
                responses={**_ok("The trend view (HTML)", _HTML), "404": {"description": "No such patient, or not demo mode"}}),
            "/": _public("home", "The front door: service, version, rule packs, hooks and links (no patient data)",
                         tag="Front door", responses=_ok("HTML page", _HTML)),
            "/docs": _public("docs", "This API reference as an HTML page", tag="Front door",
                             responses=_ok("HTML page", _HTML)),
            "/favicon.ico": _public("favicon", "The service's icon", tag="Front door",
                                    responses=_ok("ICO image", {"image/vnd.microsoft.icon": {}})),
            "/favicon.svg": _public("favicon_svg", "The service's icon as SVG", tag="Front door",
                                    responses=_ok("SVG image", {"image/svg+xml": {}})),
            "/healthz": _public("healthz", "Liveness, active rule-pack versions, last load error", tag="Operations",
                                responses=_ok("Alive", _JSON_OBJECT)),
            "/readyz": _public("readyz", "Readiness: database reachable, rule packs loaded", tag="Operations",
                               responses={**_ok("Ready", _JSON_OBJECT), "503": {"description": "Not ready", "content": _JSON_OBJECT}}),
            "/metrics": _public("metrics", "Prometheus metrics", tag="Operations",
                                responses=_ok("Text exposition format", {"text/plain": {"schema": {"type": "string"}}})),
            "/openapi.json": _public("openapi", "This document", tag="Operations",
                                     responses=_ok("OpenAPI 3.1", _JSON_OBJECT)),
            "/demo": _public("demo_page", "The EHR simulator page", tag="Demo", description=demo_only,
                             responses={**_ok("HTML page", _HTML), "404": {"description": "Not demo mode"}}),
            "/demo/api/patients": _public("demo_patients", "The synthetic patients", tag="Demo", description=demo_only,
                                          responses=_ok("Patient summaries", {"application/json": {"schema": {"type": "array"}}})),
            "/demo/api/orders/{patient_id}/{key}": _public(
                "demo_orders", "The draftOrders Bundle of one order scenario", tag="Demo", description=demo_only,
                parameters=[_path("patient_id", "a demo patient id"), _path("key", "the order scenario")],
                responses={**_ok("A Bundle", _JSON_OBJECT), "404": {"description": "No such scenario"}}),
            "/demo/token": {"post": {
                "operationId": "demo_token", "summary": "A JWT signed by the demo EHR for one CDS Hooks endpoint",
                "tags": ["Demo"], "security": [], "description": demo_only,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["path"], "properties": {"path": {"type": "string"}}}}}},
                "responses": {**_ok("The token and its claims", _JSON_OBJECT),
                              "400": {"description": "Not a CDS Hooks path", "content": _JSON_OBJECT}}}},
            "/demo/fhir-authorization": {"post": {
                "operationId": "demo_fhir_authorization", "summary": "A fhirAuthorization object for one demo patient",
                "tags": ["Demo"], "security": [], "description": demo_only,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["patient"], "properties": {"patient": {"type": "string"}}}}}},
                "responses": {**_ok("fhirAuthorization", _JSON_OBJECT),
                              "400": {"description": "Not a demo patient", "content": _JSON_OBJECT}}}},
            "/demo/jwks.json": _public("demo_jwks", "The demo EHR's public JWK Set", tag="Demo", description=demo_only,
                                       responses=_ok("JWK Set", _JSON_OBJECT)),
            "/demo/fhir/metadata": _public("demo_fhir_metadata", "CapabilityStatement of the demo FHIR source",
                                           tag="Demo", description=demo_only, responses=_ok("CapabilityStatement", _FHIR_JSON)),
            "/demo/fhir/{resource_type}": _public(
                "demo_fhir_search", "Search the demo FHIR source (bearer token from fhirAuthorization)", tag="Demo",
                parameters=[_path("resource_type", "a FHIR resource type")], description=demo_only,
                responses={**_ok("A searchset Bundle", _FHIR_JSON), "401": {"description": "No valid demo access token"}}),
            "/demo/fhir/{resource_type}/{resource_id}": _public(
                "demo_fhir_read", "Read one resource of the demo FHIR source", tag="Demo",
                parameters=[_path("resource_type", "a FHIR resource type"), _path("resource_id", "the resource id")],
                description=demo_only,
                responses={**_ok("The resource", _FHIR_JSON), "401": {"description": "No valid demo access token"},
                           "404": {"description": "No such resource"}}),
        },
    }


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI document."""
    return json_response(openapi_document())


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every operation with what the reference page shows, grouped in the order of the document's tags."""
    order = [t["name"] for t in document["tags"]]
    rows = []
    for path, item in document["paths"].items():
        for method, op in item.items():
            request = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
            rows.append({
                "path": path, "method": method, "op": op, "anchor": op["operationId"],
                "auth": op.get("security", document["security"]) != [],
                "request": request,
                "responses": [(code, r["description"], next(iter(r.get("content", {})), "")) for code, r in op["responses"].items()],
            })
    return sorted(rows, key=lambda r: order.index(r["op"]["tags"][0]))


@bp.get("/docs")
def docs():
    """The API reference, rendered on the server from the OpenAPI document (no scripts, no CDN)."""
    document = openapi_document()
    schemas = document["components"]["schemas"]
    return render_template("api/docs.html", document=document, operations=_operations(document),
                           schemas={name: json.dumps(schema, indent=2, ensure_ascii=False)
                                    for name, schema in schemas.items()})
