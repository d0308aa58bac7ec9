"""A fake SMART EHR on 127.0.0.1: smart-configuration, authorize (redirects straight back with a
code), token (checks PKCE S256 and the client), and a FHIR API serving one patient's bundle."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlencode, urlsplit

PATIENTS = Path(__file__).resolve().parents[1] / "patients"
REQUIRED_AUTHORIZE = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "launch",
    "code_challenge",
    "code_challenge_method",
)


def load_bundle(
    name: str = "01-pancreatic-severe-sarcopenia-cachexia-f.json",
) -> list[dict[str, Any]]:
    bundle = json.loads((PATIENTS / name).read_text(encoding="utf-8"))
    return [entry["resource"] for entry in bundle["entry"]]


def s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


class FakeSmartEhr:
    """Serves /fhir (the iss) and /auth; every request is recorded (path, method, headers, form)."""

    def __init__(
        self,
        resources: list[dict[str, Any]],
        client_id: str = "trend-app",
        client_secret: str | None = None,
        page_size: int = 4,
    ) -> None:
        self.resources = resources
        self.patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        self.client_id = client_id
        self.client_secret = client_secret
        self.page_size = page_size
        self.requests: list[dict[str, Any]] = []
        self.authorize_params: list[dict[str, str]] = []
        self.codes: dict[str, dict[str, str]] = {}
        self.tokens: set[str] = set()
        self.token_errors: list[str] = []
        self.tamper_challenge = False
        self.app_context: str | None = None
        self.omit_patient = False
        self.smart_configuration_extra: dict[str, Any] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.iss = f"{self.origin}/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- plumbing ----------------------------------------------------------------------------

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: Any,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(raw)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(raw)

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        form: dict[str, str] = {}
        if method == "POST":
            length = int(handler.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(handler.rfile.read(length).decode()).items()}
        with self._lock:
            self.requests.append(
                {
                    "method": method,
                    "path": url.path,
                    "query": url.query,
                    "authorization": handler.headers.get("Authorization"),
                    "form": form,
                }
            )
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/fhir/.well-known/smart-configuration":
            return self._send(
                handler,
                200,
                {
                    "issuer": self.iss,
                    "authorization_endpoint": f"{self.origin}/auth/authorize",
                    "token_endpoint": f"{self.origin}/auth/token",
                    "capabilities": [
                        "launch-ehr",
                        "client-public",
                        "client-confidential-symmetric",
                        "context-ehr-patient",
                        "permission-v1",
                    ],
                    "code_challenge_methods_supported": ["S256"],
                    **self.smart_configuration_extra,
                },
            )
        if url.path == "/auth/authorize" and method == "GET":
            return self._authorize(handler, query)
        if url.path == "/auth/token" and method == "POST":
            return self._token(handler, form)
        if url.path.startswith("/fhir/") and method == "GET":
            return self._fhir(handler, url.path.removeprefix("/fhir/"), query)
        return self._send(handler, 404, {"error": "not_found"})

    # ---- OAuth -------------------------------------------------------------------------------

    def _authorize(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        self.authorize_params.append(query)
        missing = [k for k in REQUIRED_AUTHORIZE if not query.get(k)]
        if (
            missing
            or query["response_type"] != "code"
            or query["code_challenge_method"] != "S256"
            or query["aud"] != self.iss
            or query["client_id"] != self.client_id
        ):
            return self._send(handler, 400, {"error": "invalid_request", "missing": missing})
        code = secrets.token_urlsafe(16)
        challenge = query["code_challenge"]
        if self.tamper_challenge:
            challenge = s256("not-the-verifier-the-app-holds")
        self.codes[code] = {
            "challenge": challenge,
            "redirect_uri": query["redirect_uri"],
            "scope": query["scope"],
            "launch": query["launch"],
        }
        target = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
        return self._send(handler, 302, b"", "text/plain", {"Location": target})

    def _client_ok(self, handler: BaseHTTPRequestHandler, form: dict[str, str]) -> bool:
        if self.client_secret is None:
            return form.get("client_id") == self.client_id
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        return handler.headers.get("Authorization") == f"Basic {expected}"

    def _token(self, handler: BaseHTTPRequestHandler, form: dict[str, str]) -> None:
        def refuse(error: str, status: int = 400) -> None:
            self.token_errors.append(error)
            return self._send(handler, status, {"error": error})

        if not self._client_ok(handler, form):
            return refuse("invalid_client", 401)
        grant = self.codes.pop(form.get("code", ""), None)
        if form.get("grant_type") != "authorization_code" or grant is None:
            return refuse("invalid_grant")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return refuse("invalid_grant")
        verifier = form.get("code_verifier", "")
        if not verifier or s256(verifier) != grant["challenge"]:
            return refuse("invalid_grant")
        token = "at-" + secrets.token_urlsafe(24)
        self.tokens.add(token)
        body = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": grant["scope"],
            "patient": self.patient,
            "id_token": "not.checked.here",
        }
        if self.app_context is not None:
            body["appContext"] = self.app_context
        if self.omit_patient:
            del body["patient"]
        return self._send(handler, 200, body, headers={"Cache-Control": "no-store"})

    # ---- FHIR --------------------------------------------------------------------------------

    def _fhir(self, handler: BaseHTTPRequestHandler, path: str, query: dict[str, str]) -> None:
        auth = handler.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return self._send(
                handler,
                401,
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "login"}],
                },
                "application/fhir+json",
            )
        if "/" in path:
            kind, _, ident = path.partition("/")
            for resource in self.resources:
                if resource["resourceType"] == kind and resource.get("id") == ident:
                    return self._send(handler, 200, resource, "application/fhir+json")
            return self._send(
                handler,
                404,
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "not-found"}],
                },
                "application/fhir+json",
            )
        if query.get("patient") != self.patient:
            matches: list[dict[str, Any]] = []
        else:
            matches = [r for r in self.resources if r["resourceType"] == path]
        if "code" in query:
            wanted = set(query["code"].split(","))
            matches = [
                r
                for r in matches
                if any(
                    f"{c.get('system')}|{c.get('code')}" in wanted
                    for c in (r.get("code") or {}).get("coding") or []
                )
            ]
        page = int(query.get("_page", "0"))
        chunk = matches[page * self.page_size : (page + 1) * self.page_size]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "entry": [
                {"fullUrl": f"{self.iss}/{r['resourceType']}/{r['id']}", "resource": r}
                for r in chunk
            ],
        }
        if (page + 1) * self.page_size < len(matches):
            rest = {k: v for k, v in query.items() if k != "_page"}
            bundle["link"] = [
                {
                    "relation": "next",
                    "url": f"{self.iss}/{path}?{urlencode({**rest, '_page': page + 1})}",
                }
            ]
        return self._send(handler, 200, bundle, "application/fhir+json")

    def fhir_requests(self) -> list[dict[str, Any]]:
        return [
            r
            for r in self.requests
            if r["path"].startswith("/fhir/") and "well-known" not in r["path"]
        ]
