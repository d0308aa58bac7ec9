"""The prefetch decision table: use what the EHR sent, fetch what it did not, say what is missing.

| prefetch[key]                         | action                                                       |
|---------------------------------------|--------------------------------------------------------------|
| a resource or a Bundle                | use it (a Bundle `next` link is paged through, on every path) |
| null                                  | "no data": used as empty, never re-fetched                   |
| absent, or an OperationOutcome        | fetch `{fhirServer}/{template}` (bearer, or an open server)  |
| fetch impossible or failed            | the key is `missing`, with the real reason                    |

fhirServer is called when the request gave fhirAuthorization for it, or when it is listed in
`fhir.open_servers` (then without an Authorization header). A key whose fetch was attempted and
failed (timeout, 5xx, HTML, closed connection, an OperationOutcome answer) is also listed in
`failed`. Whether a missing key means 412 is the pipeline's decision (only a missing Patient does).
A malformed `next` link (no url, a url that is not a string) is a warning, never an error.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cds_service.fhir.client import Budget, FetchError, FhirClient, next_link
from cds_service.fhir.templates import render_template

ABSENT = object()
NEXT_PAGES = "(the next pages of a prefetched Bundle)"


@dataclass
class Gathered:
    """The FHIR data of one hook call, and how each prefetch key was obtained."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    fetch_seconds: float = 0.0


def _is_outcome(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


def _flatten(value: dict[str, Any], key: str, warnings: list[str]) -> list[dict[str, Any]]:
    """The resources inside a prefetch value; OperationOutcome entries are reported, not used."""
    if value.get("resourceType") != "Bundle":
        return [value]
    found: list[dict[str, Any]] = []
    for entry in value.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        if _is_outcome(resource):
            warnings.append(f"prefetch '{key}': the Bundle held an OperationOutcome entry, which was skipped")
            continue
        found.append(resource)
    return found


def gather(
    prefetch: dict[str, Any] | None,
    templates: dict[str, str],
    tokens: dict[str, str],
    fhir_server: str | None,
    access_token: str | None,
    client: FhirClient | None,
    budget: Budget,
    on_fetch_error: Callable[[str], None] | None = None,
    *,
    open_server: bool = False,
) -> Gathered:
    """Apply the decision table to every prefetch key this service declared.

    The service calls `fhir_server` when the request gave an access token for it, or when it is an
    open server (`open_server`: listed in fhir.open_servers), then without an Authorization header."""
    prefetch = prefetch or {}
    result = Gathered()
    raw: dict[str, dict[str, Any]] = {}
    to_fetch: dict[str, str] = {}
    can_fetch = bool(fhir_server and client and (access_token or open_server))
    why_not = _why_no_fetch(fhir_server, access_token, client, open_server)

    for key, template in templates.items():
        value = prefetch.get(key, ABSENT)
        if value is None:
            result.sources[key] = "null"
            continue
        if isinstance(value, dict) and not _is_outcome(value):
            raw[key] = value
            result.sources[key] = "prefetch"
            if value.get("resourceType") == "Bundle":
                next_url, problem = next_link(value)
                if problem is not None:
                    result.warnings.append(f"prefetch '{key}' was read as sent (1 page): {problem}")
                elif next_url is not None:
                    if can_fetch:
                        to_fetch[key] = NEXT_PAGES
                    else:
                        result.warnings.append(
                            f"prefetch '{key}' has more pages, which were not read: {why_not}")
            continue
        why = "held an OperationOutcome" if _is_outcome(value) else "was not in the prefetch"
        if not can_fetch:
            result.missing[key] = f"prefetch '{key}' {why}, and {why_not}"
            continue
        query = render_template(template, tokens)
        if query is None:
            result.missing[key] = f"prefetch '{key}' {why}, and its template needs context the request did not give"
            continue
        to_fetch[key] = query

    if to_fetch:
        assert fhir_server and client
        token = access_token or None

        def run(item: tuple[str, str]) -> tuple[str, dict[str, Any] | None, list[str], str | None]:
            key, query = item
            try:
                if query is NEXT_PAGES:
                    return (key, *client.page_through(raw[key], fhir_server, token, budget), None)
                resource, warnings = client.fetch(fhir_server, query, token, budget)
                return key, resource, warnings, None
            except FetchError as exc:
                return key, None, [], str(exc)

        with ThreadPoolExecutor(max_workers=min(8, len(to_fetch))) as pool:
            for key, resource, warnings, error in pool.map(run, to_fetch.items()):
                result.warnings.extend(f"'{key}': {w}" for w in warnings)
                if error is not None:
                    if on_fetch_error:
                        on_fetch_error(error)
                    if result.sources.get(key) == "prefetch":
                        result.warnings.append(f"prefetch '{key}' could not be paged further: {error}")
                    else:
                        result.missing[key] = f"prefetch '{key}' could not be fetched: {error}"
                        result.failed[key] = error
                    continue
                if resource is not None and _is_outcome(resource):
                    result.missing[key] = f"prefetch '{key}': the FHIR server answered an OperationOutcome"
                    result.failed[key] = "the FHIR server answered an OperationOutcome"
                    continue
                if resource is not None:
                    raw[key] = resource
                    result.sources.setdefault(key, "fetched")
        result.fetch_seconds = budget.spent()

    seen: set[tuple[str, str]] = set()
    for key, value in raw.items():
        append = result.resources.append
        for resource in _flatten(value, key, result.warnings):
            kind, own = resource.get("resourceType"), resource.get("id")
            ident = (kind if kind.__class__ is str else str(kind), own if own.__class__ is str else str(own))
            if own is not None and ident in seen:
                continue
            seen.add(ident)
            append(resource)
    return result


def _why_no_fetch(server: str | None, token: str | None, client: FhirClient | None, open_server: bool) -> str:
    """Why the service cannot fetch, as it really is (the warning names what the request lacked)."""
    if not server:
        return "the request gave no fhirServer to fetch it from"
    if client is None:
        return "this service has no FHIR client"
    if not token and not open_server:
        return "the fhirServer came without fhirAuthorization and is not listed in fhir.open_servers"
    return "the fhirServer can be called"
