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

from cds_service.auth.audience import normalise_url
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


def is_open_server(url: str | None, open_servers: list[str] | tuple[str, ...]) -> bool:
    """True when `url` is one of the configured fhir.open_servers (called without a token)."""
    if not url or not open_servers:
        return False
    key = normalise_url(url)  # compared as the issuers' fhir_servers are (fhir/egress.py)
    return key is not None and key in {normalise_url(s) for s in open_servers}


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

    def get_json(self, url: str, token: str | None, budget: Budget, server: str | None = None) -> dict[str, Any]:
        """GET one URL as FHIR JSON, retrying transient failures while the budget lasts.

        `token` None: an open server (fhir.open_servers), called without an Authorization header."""
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

    def _get_once(self, url: str, token: str | None, budget: Budget, server: str | None = None) -> dict[str, Any]:
        try:
            self.egress.check_url(url)
        except EgressRefused:
            raise FetchError(UNREACHABLE) from None
        left = budget.remaining()
        if left <= 0.01:
            raise FetchError("the FHIR time budget was used up")
        timeout = (min(self.connect_timeout, left), min(self.read_timeout, left))
        headers = {"Accept": FHIR_JSON}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = self._session(server or url).get(
                url,
                headers=headers,
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

    def fetch(self, server: str, query: str, token: str | None, budget: Budget) -> tuple[dict[str, Any], list[str]]:
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
        merged, more = self.page_through(first, server, token, budget, pages=1)
        return merged, warnings + more

    def page_through(
        self, first: dict[str, Any], server: str, token: str | None, budget: Budget, pages: int = 0,
    ) -> tuple[dict[str, Any], list[str]]:
        """Follow the `next` links of a searchset Bundle (same origin only) up to max_pages.

        `pages` is how many pages were already fetched from the server (0 for a prefetched
        Bundle). Returns one Bundle with every page's entries, and warnings saying where and why
        paging stopped; a malformed link is a warning, never an exception."""
        base = server.rstrip("/") + "/"
        entries = list(_entries(first))
        page, read = first, 1
        warnings: list[str] = []
        while True:
            next_url, problem = next_link(page)
            if problem is not None:
                warnings.append(f"paging stopped after {read} page(s): {problem}")
                break
            if next_url is None:
                break
            next_url = urljoin(base, next_url)
            if _origin(next_url) != _origin(base):
                warnings.append("a Bundle next link pointed outside fhirServer and was not followed")
                break
            if pages >= self.max_pages:
                warnings.append(f"paging stopped after {self.max_pages} pages")
                break
            try:
                page = self.get_json(next_url, token, budget, server)
            except FetchError as exc:
                warnings.append(f"paging stopped after {read} page(s): {exc}")
                break
            pages += 1
            if page.get("resourceType") != "Bundle":
                warnings.append(f"paging stopped after {read} page(s): a next page was a "
                                f"{str(page.get('resourceType'))[:40]}, not a Bundle")
                break
            read += 1
            entries.extend(_entries(page))
        merged = {k: v for k, v in first.items() if k not in ("entry", "link")}
        if entries:
            merged["entry"] = entries
        return merged, warnings


def _entries(bundle: dict[str, Any]) -> list[Any]:
    entries = bundle.get("entry")
    return entries if isinstance(entries, list) else []


def next_link(bundle: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the `next` link's URL, None), (None, None) without one, or (None, what is wrong with it)."""
    links = bundle.get("link")
    if links is None:
        return None, None
    if not isinstance(links, list):
        return None, "Bundle.link is not a list"
    for index, link in enumerate(links):
        if not isinstance(link, dict) or link.get("relation") != "next":
            continue
        url = link.get("url")
        if not isinstance(url, str):
            kind = "no url" if url is None else f"a url that is not a string ({type(url).__name__})"
            return None, f"the Bundle's next link (link[{index}]) has {kind}"
        if not url.strip():
            return None, f"the Bundle's next link (link[{index}]) has an empty url"
        return url.strip(), None
    return None, None


def _transient(message: str) -> FetchError:
    """A server-side failure: retried within the budget, counted by the circuit breaker."""
    error = FetchError(message)
    error.transient = True
    error.server_fault = True
    return error
