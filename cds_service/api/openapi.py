"""GET /openapi.json: the OpenAPI 3.1 document of the HTTP API, built from the project's JSON Schemas."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from flask import Blueprint

import hooks as hook_registry
from cds_service import __version__
from cds_service.api.http import json_response
from cds_service.protocol.validation import SCHEMA_DIR

bp = Blueprint("openapi", __name__)

_ERRORS = {
    "400": "Malformed JSON or a request that breaks the CDS Hooks 2.0 schema (every problem listed with its JSON path)",
    "401": "Missing or invalid JWT (no detail is given)",
    "404": "Unknown CDS service",
    "405": "Wrong HTTP method",
    "412": "Data the rules need is missing from the prefetch and cannot be fetched",
    "413": "Body or prefetch over the configured limit",
    "415": "Content-Type is not application/json",
    "500": "Internal error (a reference id, no internals)",
}


def _schema(name: str) -> dict[str, Any]:
    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    schema.pop("$schema", None)
    return schema


def _errors(*codes: str) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/OperationOutcome"}
    return {code: {"description": _ERRORS[code], "content": {"application/json": {"schema": ref}}} for code in codes}


@cache
def openapi_document() -> dict[str, Any]:
    """The document (stable across requests; depends only on the code)."""
    service_ids = sorted(hook_registry.SERVICES)
    service_param = {"name": "id", "in": "path", "required": True, "schema": {"enum": service_ids}}
    json_body = lambda ref: {"required": True, "content": {"application/json": {"schema": {"$ref": ref}}}}  # noqa: E731
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sarcopenia-cds: CDS Hooks 2.0 service for cancer-associated sarcopenia",
            "version": __version__,
            "description": "CDS Hooks 2.0 (https://cds-hooks.hl7.org/STU2) discovery, service calls and feedback, "
                           "plus operational endpoints. Every non-2xx answer is a FHIR OperationOutcome.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "components": {
            "securitySchemes": {"cdsHooksJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                                "description": "ES384/RS384 JWT signed by a trusted EHR; aud = the endpoint URL"}},
            "schemas": {
                "Discovery": _schema("discovery"),
                "Request": _schema("request"),
                "Response": _schema("response"),
                "Feedback": _schema("feedback"),
                "OperationOutcome": _schema("operation-outcome"),
            },
        },
        "security": [{"cdsHooksJwt": []}],
        "paths": {
            "/cds-services": {"get": {
                "operationId": "discovery", "summary": "CDS Hooks discovery: one service per hook",
                "responses": {"200": {"description": "The services", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Discovery"}}}}, **_errors("401")}}},
            "/cds-services/{id}": {"post": {
                "operationId": "callService", "summary": "Call a CDS service with a hook request",
                "parameters": [service_param], "requestBody": json_body("#/components/schemas/Request"),
                "responses": {"200": {"description": "Cards (an empty array when there is no guidance)",
                                      "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Response"}}}},
                              **_errors("400", "401", "404", "405", "412", "413", "415", "500")}}},
            "/cds-services/{id}/feedback": {"post": {
                "operationId": "feedback", "summary": "Feedback on cards: accepted suggestions, overrides with reasons",
                "parameters": [service_param], "requestBody": json_body("#/components/schemas/Feedback"),
                "responses": {"200": {"description": "Entries stored (each stored once however often posted)",
                                      "content": {"application/json": {"schema": {
                                          "type": "object", "required": ["stored", "duplicates"],
                                          "properties": {"stored": {"type": "integer"}, "duplicates": {"type": "integer"}}}}}},
                              **_errors("400", "401", "404", "405", "413", "415", "500")}}},
            "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness, active rule-pack versions, last load error",
                                 "security": [], "responses": {"200": {"description": "Alive"}}}},
            "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness: database reachable, rule packs loaded",
                                "security": [], "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}}}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics", "security": [],
                                 "responses": {"200": {"description": "Text exposition format",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "security": [],
                                      "responses": {"200": {"description": "OpenAPI 3.1"}}}},
        },
    }


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI document."""
    return json_response(openapi_document())
