"""A small FHIR server on 127.0.0.1 for tests: searchsets with paging, and scripted failures."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class FhirTestServer:
    """Serves a patient's resources; `mode` scripts failures: ok, slow, 500, html, close, forever, outcome;
    `failing_types` makes the searches of some resource types fail alone."""

    def __init__(self, resources: list[dict[str, Any]], page_size: int = 2) -> None:
        self.resources = resources
        self.page_size = page_size
        self.mode = "ok"
        self.delay = 5.0
        #: resource types whose searches answer HTTP 500 while the others work (one failing search)
        self.failing_types: set[str] = set()
        self.requests: list[dict[str, Any]] = []
        #: when set, a bearer token not in it is answered 401 (an expired or malformed token)
        self.accepted_tokens: set[str] | None = None
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FhirTestServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append({"path": handler.path, "authorization": handler.headers.get("Authorization")})
        mode = self.mode
        if self.accepted_tokens is not None and handler.headers.get("Authorization", "").removeprefix(
                "Bearer ") not in self.accepted_tokens:
            self._send(handler, 401, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error",'
                                     b'"code":"login"}]}', "application/fhir+json")
            return
        if mode == "slow":
            time.sleep(self.delay)
        if mode == "500":
            return self._send(handler, 500, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}', "application/fhir+json")
        if mode == "html":
            return self._send(handler, 200, b"<html><body>Login</body></html>", "text/html")
        if mode == "close":
            handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
            return None
        if mode == "outcome":
            return self._send(handler, 200, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"forbidden"}]}', "application/fhir+json")
        url = urlsplit(handler.path)
        path = url.path.removeprefix("/fhir/")
        query = parse_qs(url.query)
        if "/" in path:
            kind, _, ident = path.partition("/")
            for resource in self.resources:
                if resource["resourceType"] == kind and resource.get("id") == ident:
                    return self._send(handler, 200, json.dumps(resource).encode(), "application/fhir+json")
            return self._send(handler, 404, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}', "application/fhir+json")
        if path in self.failing_types:
            return self._send(handler, 500, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}', "application/fhir+json")
        matches = [r for r in self.resources if r["resourceType"] == path]
        page = int(query.get("_page", ["0"])[0])
        chunk = matches[page * self.page_size:(page + 1) * self.page_size]
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(matches),
                                  "entry": [{"fullUrl": f"{self.base}/{r['resourceType']}/{r['id']}", "resource": r} for r in chunk]}
        more = (page + 1) * self.page_size < len(matches) or mode == "forever"
        if more:
            bundle["link"] = [{"relation": "next", "url": f"{self.base}/{path}?_page={page + 1}"}]
        if not bundle["entry"]:
            del bundle["entry"]
        return self._send(handler, 200, json.dumps(bundle).encode(), "application/fhir+json")
