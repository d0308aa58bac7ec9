"""A local FHIR Bulk Data server for tests: $export kick-off, scripted status polls, files, a token endpoint.

The token endpoint checks SMART Backend Services client assertions as a real server does: the
signature against the registered public key, iss = sub = client_id, aud = the token URL, an
expiry at most five minutes after iat, and a jti never seen before."""

from __future__ import annotations

import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import orjson


class BulkServer:
    """Serves the NDJSON files given as an export; `polls` scripts the status answers before the manifest."""

    def __init__(self, files: dict[str, list[Path]], *, client_id: str, public_key: Any, algorithm: str,
                 polls: list[tuple[int, dict[str, str]]], kickoff_429: bool = True) -> None:
        self.files = files  # resource type → files, in manifest order
        self.client_id, self.public_key, self.algorithm = client_id, public_key, algorithm
        self.polls = list(polls)
        self.kickoff_429 = kickoff_429
        self.fail_once: set[str] = set()  # file names whose next download answers 500
        self.tokens: set[str] = set()
        self.jtis: set[str] = set()
        self.assertions: list[dict[str, Any]] = []  # accepted assertion claims
        self.refused: list[str] = []  # why assertions were refused
        self.requests: list[dict[str, Any]] = []
        self.deleted = False
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.handle(self, "GET")

            def do_POST(self) -> None:
                server.handle(self, "POST")

            def do_DELETE(self) -> None:
                server.handle(self, "DELETE")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.base = f"{self.root}/fhir"
        self.token_url = f"{self.root}/auth/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> BulkServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- helpers ----------------------------------------------------------------------------
    def send(self, h: BaseHTTPRequestHandler, status: int, body: Any = b"", headers: dict[str, str] | None = None,
             content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)

    def outcome(self, text: str) -> dict[str, Any]:
        return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing",
                                                               "diagnostics": text}]}

    def authorized(self, h: BaseHTTPRequestHandler) -> bool:
        header = h.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.tokens

    def check_assertion(self, form: dict[str, list[str]]) -> str | None:
        """None when the client assertion is valid; else why not."""
        if form.get("grant_type") != ["client_credentials"]:
            return "grant_type must be client_credentials"
        if form.get("client_assertion_type") != ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]:
            return "wrong client_assertion_type"
        assertion = (form.get("client_assertion") or [""])[0]
        try:
            claims = jwt.decode(assertion, self.public_key, algorithms=[self.algorithm], audience=self.token_url,
                                options={"require": ["iss", "sub", "aud", "exp", "jti"]})
        except jwt.PyJWTError as exc:
            return f"invalid assertion: {exc}"
        if claims["iss"] != self.client_id or claims["sub"] != self.client_id:
            return "iss and sub must be the client_id"
        if claims["exp"] - int(claims.get("iat", time.time())) > 300 or claims["exp"] - time.time() > 300:
            return "exp more than five minutes ahead"
        with self.lock:
            if claims["jti"] in self.jtis:
                return "jti replayed"
            self.jtis.add(claims["jti"])
            self.assertions.append(claims)
        return None

    def manifest(self) -> dict[str, Any]:
        output = [{"type": kind, "url": f"{self.base}/files/{path.name}"}
                  for kind, paths in self.files.items() for path in paths]
        return {"transactionTime": "2026-11-28T12:00:00Z", "request": f"{self.base}/$export",
                "requiresAccessToken": True, "output": output,
                "error": [{"type": "OperationOutcome", "url": f"{self.base}/files/errors.ndjson"}]}

    # ---- routes -------------------------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        with self.lock:
            self.requests.append({"method": method, "path": url.path, "query": parse_qs(url.query),
                                  "prefer": h.headers.get("Prefer"), "authorized": self.authorized(h)})
        if method == "GET" and url.path == "/fhir/.well-known/smart-configuration":
            return self.send(h, 200, {"token_endpoint": self.token_url,
                                      "token_endpoint_auth_methods_supported": ["private_key_jwt"]})
        if method == "POST" and url.path == "/auth/token":
            length = int(h.headers.get("Content-Length") or 0)
            form = parse_qs(h.rfile.read(length).decode())
            why = self.check_assertion(form)
            if why is not None:
                self.refused.append(why)
                return self.send(h, 400, {"error": "invalid_client", "error_description": why})
            token = secrets.token_urlsafe(16)
            self.tokens.add(token)
            return self.send(h, 200, {"access_token": token, "token_type": "bearer", "expires_in": 300,
                                      "scope": form.get("scope", [""])[0]})
        if not self.authorized(h):
            return self.send(h, 401, self.outcome("a valid bearer token is required"))
        if method == "GET" and url.path.endswith("/$export"):
            if h.headers.get("Prefer") != "respond-async":
                return self.send(h, 400, self.outcome("Prefer: respond-async is required"))
            if self.kickoff_429:
                self.kickoff_429 = False
                return self.send(h, 429, self.outcome("too many exports"), {"Retry-After": "1"})
            return self.send(h, 202, b"", {"Content-Location": f"{self.base}/status/job-1"})
        if url.path == "/fhir/status/job-1":
            if method == "DELETE":
                self.deleted = True
                return self.send(h, 202, b"")
            if self.polls:
                status, headers = self.polls.pop(0)
                body = self.outcome("wait") if status == 429 else self.outcome("export job crashed") if status >= 500 else b""
                return self.send(h, status, body, headers)
            return self.send(h, 200, self.manifest())
        if method == "GET" and url.path.startswith("/fhir/files/"):
            name = url.path.rsplit("/", 1)[1]
            if name == "errors.ndjson":
                return self.send(h, 200, orjson.dumps(self.outcome("Group member Patient/gone was not found"))
                                 + b"\n", content_type="application/fhir+ndjson")
            if name in self.fail_once:
                self.fail_once.discard(name)
                return self.send(h, 500, self.outcome("storage hiccup"))
            path = next((p for paths in self.files.values() for p in paths if p.name == name), None)
            if path is None:
                return self.send(h, 404, self.outcome("no such file"))
            return self.send(h, 200, path.read_bytes(), content_type="application/fhir+ndjson")
        return self.send(h, 404, self.outcome("not found"))
