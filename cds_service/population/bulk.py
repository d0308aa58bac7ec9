"""A FHIR Bulk Data ($export) client: kick-off, polling, manifest, downloads, DELETE; resumable.

FHIR Bulk Data Access IG 2.0: kick-off with `Prefer: respond-async` (202 + Content-Location),
status polling that honours Retry-After (seconds or an HTTP date) and 429, a manifest listing
the NDJSON files (several per type), downloads with the bearer token when
`requiresAccessToken` is true, and DELETE of the status URL once every file is home. The state
(status URL, manifest, files downloaded) is kept in OUT/.export-state.json, so a run that fails
half-way resumes where it stopped instead of exporting again."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import requests

from cds_service.population.backend_auth import AuthError, BackendClient
from cds_service.population.reader import ReadPlan
from cds_service.population.worklist import make_private_dir, private_files

STATE_FILE = ".export-state.json"
NDJSON = "application/fhir+ndjson"


class ExportError(RuntimeError):
    """The export cannot go on; the message says why (the state is kept for a resume when useful)."""


@dataclass
class ExportResult:
    """What the export brought home."""

    folder: Path
    files: list[Path] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    transaction_time: str | None = None
    resumed: bool = False
    deleted: bool = False


def retry_after(value: str | None, default: float) -> float:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def type_filters(plan: ReadPlan) -> list[str]:
    """`_typeFilter` values: the codes the packs read, per type (Observation?code=s|c,…)."""
    return [f"{kind}?code={','.join(codes)}" for kind, codes in sorted(plan.codes.items()) if codes]


def scope_for(plan: ReadPlan) -> str:
    """The system scopes the export needs: read access to the types the packs read."""
    return " ".join(f"system/{kind}.read" for kind in sorted(plan.types))


class BulkExport:
    """One export from `base_url` into `folder` (system level, a Group, or all Patients)."""

    def __init__(
        self, base_url: str, folder: Path, plan: ReadPlan, *, auth: BackendClient | None = None,
        group: str | None = None, patient_level: bool = False, use_type_filter: bool = True,
        session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep,
        default_wait: float = 5.0, max_wait: float = 120.0, timeout: float = 60.0, max_polls: int = 10_000,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.base = base_url.rstrip("/")
        self.folder = make_private_dir(folder)
        self.plan, self.auth, self.group, self.patient_level = plan, auth, group, patient_level
        self.use_type_filter = use_type_filter
        self.session = session or requests.Session()
        self.sleep, self.default_wait, self.max_wait = sleep, default_wait, max_wait
        self.timeout, self.max_polls = timeout, max_polls
        self.say = on_event or (lambda _m: None)
        self._token: str | None = None
        self._token_until = 0.0
        self.state_path = self.folder / STATE_FILE

    # ---- state ----------------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any]:
        try:
            return orjson.loads(self.state_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}

    def _save_state(self, state: dict[str, Any]) -> None:
        with private_files():
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(state, option=orjson.OPT_INDENT_2))
            tmp.replace(self.state_path)

    # ---- HTTP -----------------------------------------------------------------------------
    def _headers(self, accept: str = "application/fhir+json", refresh: bool = False) -> dict[str, str]:
        headers = {"Accept": accept}
        if self.auth is not None:
            if refresh or self._token is None or time.time() > self._token_until - 30:
                self._token, lifetime = self.auth.token(scope_for(self.plan), self.session, self.timeout)
                self._token_until = time.time() + lifetime
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _request(self, method: str, url: str, *, authorize: bool = True, accept: str = "application/fhir+json",
                 stream: bool = False, **kwargs: Any) -> requests.Response:
        """One call; a 401 gets one fresh token and one more try."""
        extra = kwargs.pop("headers", {})
        for attempt in (0, 1):
            headers = self._headers(accept, refresh=attempt == 1) if authorize else {"Accept": accept}
            headers.update(extra)
            try:
                response = self.session.request(method, url, headers=headers, timeout=self.timeout, stream=stream,
                                                **kwargs)
            except requests.RequestException as exc:
                raise ExportError(f"{method} {url}: server not reached ({type(exc).__name__})") from exc
            if response.status_code != 401 or not authorize or self.auth is None or attempt == 1:
                return response
            response.close()
        raise AssertionError("unreachable")

    @staticmethod
    def _outcome(response: requests.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return response.text[:200].strip()
        issues = body.get("issue") if isinstance(body, dict) else None
        if issues:
            return "; ".join(str(i.get("diagnostics") or i.get("details", {}).get("text") or i.get("code"))
                             for i in issues[:3])
        return str(body)[:200]

    # ---- the steps --------------------------------------------------------------------------
    def kickoff_url(self) -> str:
        if self.group:
            return f"{self.base}/Group/{self.group}/$export"
        return f"{self.base}/Patient/$export" if self.patient_level else f"{self.base}/$export"

    def kick_off(self) -> str:
        """Start the export; the status URL (Content-Location of the 202)."""
        params: dict[str, str] = {"_outputFormat": NDJSON, "_type": ",".join(sorted(self.plan.types))}
        filters = type_filters(self.plan) if self.use_type_filter else []
        for attempt in range(5):
            query = list(params.items()) + [("_typeFilter", f) for f in filters]
            response = self._request("GET", self.kickoff_url(), params=query, headers={"Prefer": "respond-async"})
            if response.status_code == 202 and response.headers.get("Content-Location"):
                self.say(f"export started at {self.kickoff_url()} ({'with' if filters else 'without'} _typeFilter)")
                return response.headers["Content-Location"]
            if response.status_code == 429 or response.status_code == 503:
                wait = min(retry_after(response.headers.get("Retry-After"), self.default_wait), self.max_wait)
                self.say(f"kick-off: HTTP {response.status_code}, waiting {wait:.0f} s")
                self.sleep(wait)
                continue
            if response.status_code == 400 and filters:
                self.say(f"kick-off refused _typeFilter ({self._outcome(response)}); asking again without it")
                filters = []
                continue
            raise ExportError(f"kick-off {self.kickoff_url()}: HTTP {response.status_code}: {self._outcome(response)}")
        raise ExportError(f"kick-off {self.kickoff_url()}: still refused after {attempt + 1} tries")

    def poll(self, status_url: str) -> dict[str, Any]:
        """Poll until the manifest arrives, waiting as the server asks (Retry-After, 429)."""
        failures = 0
        for _ in range(self.max_polls):
            response = self._request("GET", status_url, accept="application/json")
            status = response.status_code
            if status == 200:
                try:
                    return response.json()
                except ValueError as exc:
                    raise ExportError(f"status {status_url}: the manifest is not JSON") from exc
            if status in (202, 429):
                wait = min(retry_after(response.headers.get("Retry-After"), self.default_wait), self.max_wait)
                progress = response.headers.get("X-Progress")
                self.say(f"export {'in progress' if status == 202 else 'polled too often (429)'}"
                         f"{f' ({progress})' if progress else ''}; next poll in {wait:.0f} s")
                self.sleep(wait)
                continue
            if status >= 500 and failures < 3 and not _is_fatal_outcome(response):
                failures += 1
                self.say(f"status poll: HTTP {status}, trying again")
                self.sleep(min(self.default_wait * failures, self.max_wait))
                continue
            raise ExportError(f"export failed on the server: HTTP {status}: {self._outcome(response)}")
        raise ExportError(f"export not finished after {self.max_polls} polls")

    def download(self, item: dict[str, Any], name: str, requires_token: bool) -> Path:
        """One output file, streamed to disk (a partial file never takes the final name)."""
        target = self.folder / name
        tmp = self.folder / f".{name}.part"
        response = self._request("GET", item["url"], authorize=requires_token, accept=NDJSON, stream=True)
        if response.status_code != 200:
            raise ExportError(f"HTTP {response.status_code}")
        try:
            with private_files(), tmp.open("wb") as handle:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    handle.write(chunk)
        except requests.RequestException as exc:
            tmp.unlink(missing_ok=True)
            raise ExportError(f"download cut short ({type(exc).__name__})") from exc
        tmp.replace(target)
        return target

    def run(self) -> ExportResult:
        """Kick off (or resume), poll, download what is missing, DELETE when all is home."""
        state = self._load_state()
        result = ExportResult(self.folder)
        if state.get("base") not in (None, self.base) or state.get("kickoff") not in (None, self.kickoff_url()):
            raise ExportError(f"{self.folder} holds another export's state ({state.get('kickoff')}); "
                              "use another folder")
        if state.get("status_url"):
            result.resumed = True
            self.say(f"resuming the export at {state['status_url']}")
        else:
            state = {"base": self.base, "kickoff": self.kickoff_url(), "status_url": self.kick_off(),
                     "downloaded": {}}
            self._save_state(state)
        if not state.get("manifest"):
            try:
                state["manifest"] = self.poll(state["status_url"])
            except ExportError:
                self.state_path.unlink(missing_ok=True)  # a failed export cannot resume: the next run starts anew
                raise
            self._save_state(state)
        manifest = state["manifest"]
        result.transaction_time = manifest.get("transactionTime")
        requires_token = bool(manifest.get("requiresAccessToken"))
        counters: dict[str, int] = {}
        complete = True
        for item in manifest.get("output") or []:
            kind = str(item.get("type") or "Unknown")
            counters[kind] = counters.get(kind, 0) + 1
            name = f"{kind}.{counters[kind]:03d}.ndjson"
            if state["downloaded"].get(item["url"]) == name and (self.folder / name).exists():
                result.files.append(self.folder / name)
                continue
            try:
                result.files.append(self.download(item, name, requires_token))
            except (ExportError, AuthError) as exc:
                complete = False
                result.problems.append({"file": name, "line": None,
                                        "reason": f"export file {item['url']} not downloaded: {exc}; "
                                                  "run the same command again to resume"})
                continue
            state["downloaded"][item["url"]] = name
            self._save_state(state)
        for index, item in enumerate(manifest.get("error") or [], start=1):
            name = f".error.{index:03d}.ndjson"
            try:
                path = self.download(item, name, requires_token)
            except (ExportError, AuthError) as exc:
                result.problems.append({"file": name, "line": None, "reason": f"server error file not read: {exc}"})
                continue
            for number, line in enumerate(path.read_bytes().splitlines(), start=1):
                try:
                    outcome = orjson.loads(line)
                    text = "; ".join(str(i.get("diagnostics") or i.get("code")) for i in outcome.get("issue", []))
                except (orjson.JSONDecodeError, AttributeError):
                    text = "unreadable OperationOutcome line"
                result.problems.append({"file": item.get("url"), "line": number, "reason": f"server reported: {text}"})
        if complete:
            response = self._request("DELETE", state["status_url"], accept="application/json")
            result.deleted = response.status_code in (200, 202, 204, 404)
            state["deleted"] = result.deleted
            self._save_state(state)
            self.say(f"export complete: {len(result.files)} file(s); status URL deleted "
                     f"(HTTP {response.status_code})")
        return result


def _is_fatal_outcome(response: requests.Response) -> bool:
    """A 5xx whose OperationOutcome says the export itself failed (not a passing outage)."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("resourceType") == "OperationOutcome"


def discover_token_url(base_url: str, session: requests.Session, timeout: float = 30.0) -> str | None:
    """`token_endpoint` from {base}/.well-known/smart-configuration, or None if the server has none."""
    try:
        response = session.get(f"{base_url.rstrip('/')}/.well-known/smart-configuration",
                               headers={"Accept": "application/json"}, timeout=timeout)
        if response.status_code == 200:
            value = response.json().get("token_endpoint")
            return str(value) if value else None
    except (requests.RequestException, ValueError):
        return None
    return None
