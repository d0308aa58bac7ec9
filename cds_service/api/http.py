"""JSON in and out for the blueprints: content type, parsing, and OperationOutcome responses."""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from flask import Response, request

from cds_service.protocol import ProtocolError

JSON_TYPES = ("application/json", "application/fhir+json")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


#: requests with bodies from this size on run with the garbage collector paused (see CollectorPause)
GC_PAUSE_BYTES = 512 * 1024


class CollectorPause:
    """Pauses Python's cyclic garbage collector while a large request is parsed and answered.

    A body of megabytes becomes hundreds of thousands of dicts, lists and strings, and every 700
    new objects set off a collection that walks the young ones again, and every tenth one the
    older ones too: a 17.6 MB body took 3-4× as long to parse with the collector running, and the
    collections it put off came due in the first steps after the parse. Parsed JSON holds no
    reference cycle, and what the request builds is freed by reference counting when it ends, so
    the pause collects nothing later that it would have collected now. Counted, so that
    overlapping requests (threaded workers) resume the collector only when the last one ends;
    a collector that was off already (gc.disable() by the operator) stays off."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._resume = False

    def pause(self) -> None:
        with self._lock:
            if self._holders == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._holders += 1

    def resume(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._resume:
                gc.enable()

    @contextmanager
    def paused(self) -> Iterator[None]:
        self.pause()
        try:
            yield
        finally:
            self.resume()


COLLECTOR = CollectorPause()


def parse_json(raw: bytes) -> Any:
    """orjson.loads (strict RFC 8259 and UTF-8, several times faster than json), with the
    collector paused for a large body; raises orjson.JSONDecodeError."""
    if len(raw) < GC_PAUSE_BYTES:
        return orjson.loads(raw)
    with COLLECTOR.paused():
        return orjson.loads(raw)


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
        return parse_json(raw)
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
