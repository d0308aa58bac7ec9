"""gunicorn workers for the service: a request must arrive within REQUEST_READ_SECONDS (slow
clients cannot hold a worker or a thread), and what gunicorn's HTTP parser refuses (headers
over the limits, a malformed request line) is answered with an OperationOutcome, as everything
else the service refuses, instead of gunicorn's HTML page. Nothing here logs the request line.

`sarcopenia-cds serve` and gunicorn_conf.py choose `SyncWorker` for one thread per worker and
`ThreadWorker` for more (see cli.worker_class)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from gunicorn import util
from gunicorn.http import errors
from gunicorn.workers.gthread import ThreadWorker as _GunicornThreadWorker
from gunicorn.workers.sync import SyncWorker as _GunicornSyncWorker

log = logging.getLogger("cds_service.server")

#: the most time one request (its line, headers and body) may take to arrive; behind a reverse
#: proxy that buffers requests it arrives at once
REQUEST_READ_SECONDS = 10.0
#: how long an idle kept-alive connection stays open (gthread; the sync worker closes after each)
KEEPALIVE_SECONDS = 5
#: gunicorn's own limits, stated so that the answers name them (gunicorn's defaults)
LIMIT_REQUEST_LINE = 4094
LIMIT_REQUEST_FIELDS = 100
LIMIT_REQUEST_FIELD_SIZE = 8190


class RequestTimeout(errors.NoMoreData):
    """The request did not arrive within REQUEST_READ_SECONDS (gunicorn closes the connection
    quietly, as for a client that went away)."""


class DeadlineSocket:
    """A client socket whose reads share one deadline, armed when a request starts."""

    def __init__(self, sock: Any, seconds: float = REQUEST_READ_SECONDS) -> None:
        self._sock = sock
        self._seconds = seconds
        self._deadline = time.monotonic() + seconds

    def arm(self) -> None:
        """The next request starts now."""
        self._deadline = time.monotonic() + self._seconds

    def recv(self, size: int, *flags: Any) -> bytes:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise RequestTimeout(f"the request did not arrive within {self._seconds:g} s")
        previous = self._sock.gettimeout()
        self._sock.settimeout(left)
        try:
            return self._sock.recv(size, *flags)
        except TimeoutError:
            raise RequestTimeout(f"the request did not arrive within {self._seconds:g} s") from None
        finally:
            self._sock.settimeout(previous)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _refusal(exc: BaseException, cfg: Any) -> tuple[int, str, str]:
    """(status, reason phrase, diagnostics) for an error of gunicorn's HTTP parser."""
    if isinstance(exc, errors.LimitRequestHeaders):
        return (431, "Request Header Fields Too Large",
                f"the request headers are larger than the limits: at most {cfg.limit_request_fields} "
                f"fields of at most {cfg.limit_request_field_size} bytes each")
    if isinstance(exc, errors.LimitRequestLine):
        return 414, "URI Too Long", f"the request line is longer than {cfg.limit_request_line} bytes"
    if isinstance(exc, errors.UnsupportedTransferCoding):
        return 501, "Not Implemented", "the request's Transfer-Encoding is not supported"
    if isinstance(exc, (errors.InvalidResponseHeader, errors.InvalidResponseHeaderName, errors.ConfigurationProblem)):
        return 500, "Internal Server Error", "the service failed to process the request"
    if isinstance(exc, errors.ParseException):
        return 400, "Bad Request", f"the request is not valid HTTP/1.1 ({type(exc).__name__})"
    return 500, "Internal Server Error", "the service failed to process the request"


def write_outcome(client: Any, status: int, reason: str, diagnostics: str) -> None:
    """An OperationOutcome response written straight to the socket (the connection closes)."""
    code = {400: "structure", 414: "too-long", 431: "too-long", 501: "not-supported"}.get(status, "exception")
    body = json.dumps({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": code, "diagnostics": diagnostics}]}, separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(client, head + body)


class _OutcomeErrors:
    """handle_error for both workers: an OperationOutcome, and a log line without the request."""

    cfg: Any

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        status, reason, diagnostics = _refusal(exc, self.cfg)
        if status >= 500:
            log.error("request failed in the HTTP server", extra={"status": status, "error": type(exc).__name__})
        else:
            log.warning("request refused by the HTTP parser", extra={"status": status, "error": type(exc).__name__})
        try:
            write_outcome(client, status, reason, diagnostics)
        except Exception:  # noqa: BLE001 - the client may be gone
            log.debug("could not send the error response")


class SyncWorker(_OutcomeErrors, _GunicornSyncWorker):
    """gunicorn's sync worker (one request per connection) with a deadline on reading it."""

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        if not self.cfg.is_ssl:  # TLS terminates at the reverse proxy; its socket is left as it is
            client = DeadlineSocket(client)
        super().handle(listener, client, addr)


class ThreadWorker(_OutcomeErrors, _GunicornThreadWorker):
    """gunicorn's gthread worker with a deadline on reading each request of a connection."""

    def handle(self, conn: Any) -> Any:
        if not self.cfg.is_ssl:
            if not isinstance(conn.sock, DeadlineSocket):
                conn.sock = DeadlineSocket(conn.sock)
            else:
                conn.sock.arm()
        return super().handle(conn)
