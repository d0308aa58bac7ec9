"""JSON in and out for the blueprints: content type, parsing, and OperationOutcome responses."""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask import Response, request

from cds_service.protocol import ProtocolError

JSON_TYPES = ("application/json", "application/fhir+json")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def read_json() -> Any:
    """The request body as JSON, or ProtocolError 415/400 with a precise message."""
    mimetype = (request.mimetype or "").lower()
    if mimetype not in JSON_TYPES:
        shown = request.content_type or "none"
        raise ProtocolError.single(415, "not-supported", f"Content-Type must be application/json (got '{shown[:60]}')")
    try:
        raw = request.get_data(cache=False)
    except OSError:  # the body did not arrive in time (cds_service.workers) or the client left
        raise ProtocolError.single(408, "timeout", "the request body did not arrive in time") from None
    try:
        return orjson.loads(raw)  # strict RFC 8259 and UTF-8, several times faster than json
    except orjson.JSONDecodeError:
        pass  # json below says precisely what is wrong (or takes what orjson cannot, like huge integers)
    if not raw.strip():
        raise ProtocolError.single(400, "structure", "the request body is empty; a JSON object is required")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError.single(400, "structure", "the request body is not UTF-8 encoded")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ProtocolError.single(400, "structure", f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except (ValueError, RecursionError) as exc:
        raise ProtocolError.single(400, "structure", f"the request body is not valid JSON: {str(exc)[:100]}")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact UTF-8 JSON response."""
    try:
        text: bytes | str = orjson.dumps(body)
    except orjson.JSONEncodeError:  # what orjson refuses (an integer beyond 64 bits) json still writes
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(text, status=status, mimetype="application/json", headers=headers)


def error_response(error: ProtocolError, headers: dict[str, str] | None = None) -> Response:
    """The OperationOutcome answer for a ProtocolError."""
    return json_response(error.body(), error.status, headers)
