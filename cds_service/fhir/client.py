"""A small FHIR REST client: bearer token, per-request time budget, retries, paging, circuit breaker."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from cds_service.fhir.egress import UNREACHABLE, EgressPolicy, EgressRefused

FHIR_JSON = "application/fhir+json"

#: a URL path (and query) in a urllib3 log line: '"GET /fhir/Patient/<id>?… HTTP/1.1"', "url='/fhir/…'"
_URL_PATH = re.compile(r"""(?<=[\s"'=(])/[^\s"')]*""")


class _RedactUrls(logging.Filter):
    """urllib3 logs request paths at DEBUG (and in retry messages); FHIR paths carry patient ids."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is dropped, not logged raw
            return False
        record.msg, record.args = _URL_PATH.sub("/…", message), ()
        return True


for _name in ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.poolmanager", "urllib3.response"):
    if not any(isinstance(f, _RedactUrls) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_RedactUrls())


class FetchError(Exception):
    """A fetch that did not yield FHIR JSON; the message is safe to show (no token, no body).

    ``server_fault``: the server failed (no connection, no answer in time, HTTP 5xx), which the
    circuit breaker counts; an answer meant for this caller (401, 403, 404, not FHIR JSON) is not."""

    transient = False
    server_fault = False


@dataclass
class Budget:
    """The time left for all FHIR calls of one hook request (and the origins that failed in it:
    one request counts once against a server's breaker, however many of its fetches failed)."""

    seconds: float
    started: float = field(default_factory=time.monotonic)
    failed_origins: set[str] = field(default_factory=set)

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def spent(self) -> float:
        return time.monotonic() - self.started


class CircuitBreaker:
    """Per-origin breaker: after N consecutive failing hook requests, fail fast for a while."""

    def __init__(self, failures: int, reset_seconds: float) -> None:
        self.failures = failures
        self.reset_seconds = reset_seconds
        self._state: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def allow(self, server: str) -> bool:
        with self._lock:
            count, opened_at = self._state.get(server, (0, 0.0))
            return count < self.failures or time.monotonic() - opened_at >= self.reset_seconds

    def record(self, server: str, ok: bool) -> None:
        with self._lock:
            if ok:
                self._state.pop(server, None)
            else:
                count, _ = self._state.get(server, (0, 0.0))
                self._state[server] = (count + 1, time.monotonic())


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def origin_key(url: str) -> str:
    """scheme://host:port of a URL: what the circuit breaker counts failures by (every base
    path on one server shares its breaker; a caller cannot dodge it with another path)."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower(), 0)
        return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"
    except ValueError:
        return url


class FhirClient:
    """Fetches FHIR reads and searches from an EHR's fhirServer within a time budget."""

    def __init__(self, settings: dict[str, Any], egress: EgressPolicy | None = None) -> None:
        self.connect_timeout = float(settings["connect_timeout_seconds"])
        self.read_timeout = float(settings["read_timeout_seconds"])
        self.retries = int(settings["retries"])
        self.backoff = float(settings["backoff_seconds"])
        self.max_pages = int(settings.get("max_bundle_pages", 10))
        self.breaker = CircuitBreaker(int(settings["breaker_failures"]), float(settings["breaker_reset_seconds"]))
        self.egress = egress or EgressPolicy(settings)
        self._local = threading.local()

    def _session(self, url: str) -> requests.Session:
        """This thread's session: an address-guarded one unless the policy trusts the server."""
        guarded = self.egress.guards_addresses(url)
        sessions = getattr(self._local, "sessions", None)
        if sessions is None:
            sessions = self._local.sessions = {}
        session = sessions.get(guarded)
        if session is None:
            session = sessions[guarded] = self.egress.session(guarded)
        return session

    def get_json(self, url: str, token: str, budget: Budget, server: str | None = None) -> dict[str, Any]:
        """GET one URL as FHIR JSON, retrying transient failures while the budget lasts."""
        attempt = 0
        while True:
            try:
                return self._get_once(url, token, budget, server)
            except FetchError as exc:
                attempt += 1
                transient = getattr(exc, "transient", False)
                wait = self.backoff * (2 ** (attempt - 1))
                if not transient or attempt > self.retries or budget.remaining() <= wait + 0.05:
                    raise
                time.sleep(wait)

    def _get_once(self, url: str, token: str, budget: Budget, server: str | None = None) -> dict[str, Any]:
        try:
            self.egress.check_url(url)
        except EgressRefused:
            raise FetchError(UNREACHABLE) from None
        left = budget.remaining()
        if left <= 0.01:
            raise FetchError("the FHIR time budget was used up")
        timeout = (min(self.connect_timeout, left), min(self.read_timeout, left))
        try:
            response = self._session(server or url).get(
                url,
                headers={"Authorization": f"Bearer {token}", "Accept": FHIR_JSON},
                timeout=timeout,
                allow_redirects=False,
                stream=True,
            )
            body = self._read_within(response, budget)
        except requests.exceptions.ConnectTimeout:  # worded as every connection failure (no port oracle)
            raise _transient(UNREACHABLE)
        except (requests.exceptions.ReadTimeout, TimeoutError):
            raise _transient("the FHIR server did not answer in time")
        except requests.exceptions.ConnectionError:
            raise _transient(UNREACHABLE)
        except requests.exceptions.RequestException as exc:
            raise FetchError(f"the FHIR request failed ({type(exc).__name__})")
        except (UnicodeError, ValueError) as exc:  # e.g. a token or URL that cannot go into an HTTP request
            raise FetchError(f"the FHIR request could not be sent ({type(exc).__name__})")
        if response.status_code >= 500:
            raise _transient(f"the FHIR server answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise FetchError(f"the FHIR server answered HTTP {response.status_code}")
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in (FHIR_JSON, "application/json", "application/json+fhir"):
            raise FetchError(f"the FHIR server answered {content_type or 'no content type'}, not FHIR JSON")
        try:
            data = json.loads(body)
        except ValueError:
            raise FetchError("the FHIR server answered malformed JSON")
        if not isinstance(data, dict) or "resourceType" not in data:
            raise FetchError("the FHIR server answered JSON that is not a FHIR resource")
        return data

    @staticmethod
    def _read_within(response: requests.Response, budget: Budget, limit: int = 50 * 1024 * 1024) -> bytes:
        """Read the body, giving up when the budget ends (a server may trickle bytes)."""
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise FetchError("the FHIR server answered more than 50 MiB")
            if budget.remaining() <= 0:
                response.close()
                raise TimeoutError
        return b"".join(chunks)

    def fetch(self, server: str, query: str, token: str, budget: Budget) -> tuple[dict[str, Any], list[str]]:
        """A read or search, following Bundle next links (same origin only) up to max_pages.

        Returns the resource (a search gives one Bundle with all pages' entries) and warnings."""
        base = server.rstrip("/") + "/"
        origin = origin_key(base)
        if not self.breaker.allow(origin):
            raise FetchError("the FHIR server failed repeatedly; calls are paused (circuit open)")
        url = urljoin(base, query)
        if _origin(url) != _origin(base):
            raise FetchError("a URL outside fhirServer was not fetched")
        try:
            first = self.get_json(url, token, budget, server)
        except FetchError as exc:
            if exc.server_fault and origin not in budget.failed_origins:
                budget.failed_origins.add(origin)  # once per hook request, however many fetches failed
                self.breaker.record(origin, ok=False)
            raise
        if origin not in budget.failed_origins:
            self.breaker.record(origin, ok=True)
        warnings: list[str] = []
        if first.get("resourceType") != "Bundle":
            return first, warnings
        entries = list(first.get("entry") or [])
        page, pages = first, 1
        while (next_url := _next_link(page)) is not None:
            if _origin(next_url) != _origin(base):
                warnings.append("a Bundle next link pointed outside fhirServer and was not followed")
                break
            if pages >= self.max_pages:
                warnings.append(f"paging stopped after {self.max_pages} pages")
                break
            try:
                page = self.get_json(next_url, token, budget, server)
            except FetchError as exc:
                warnings.append(f"paging stopped: {exc}")
                break
            pages += 1
            entries.extend(page.get("entry") or [])
        merged = {k: v for k, v in first.items() if k not in ("entry", "link")}
        if entries:
            merged["entry"] = entries
        return merged, warnings


def _next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def _transient(message: str) -> FetchError:
    """A server-side failure: retried within the budget, counted by the circuit breaker."""
    error = FetchError(message)
    error.transient = True
    error.server_fault = True
    return error
