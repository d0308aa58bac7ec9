"""The prefetch decision table: use what the EHR sent, fetch what it did not, 412 when neither works.

| prefetch[key]                         | action                                            |
|---------------------------------------|---------------------------------------------------|
| a resource or a Bundle                | use it (a Bundle `next` link is paged through)    |
| null                                  | "no data": used as empty, never re-fetched        |
| absent, or an OperationOutcome        | fetch `{fhirServer}/{template}` with the bearer   |
| fetch impossible or failed            | the key is missing → HTTP 412 naming it           |

A key whose fetch was attempted and failed (timeout, 5xx, HTML, closed connection, an
OperationOutcome answer) is also listed in `failed`, so the caller may answer with what it has.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cds_service.fhir.client import Budget, FetchError, FhirClient
from cds_service.fhir.templates import render_template

ABSENT = object()


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


def _has_next(bundle: dict[str, Any]) -> bool:
    return any(isinstance(l, dict) and l.get("relation") == "next" for l in bundle.get("link") or [])


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
) -> Gathered:
    """Apply the decision table to every prefetch key this service declared."""
    prefetch = prefetch or {}
    result = Gathered()
    raw: dict[str, dict[str, Any]] = {}
    to_fetch: dict[str, str] = {}
    can_fetch = bool(fhir_server and access_token and client)

    for key, template in templates.items():
        value = prefetch.get(key, ABSENT)
        if value is None:
            result.sources[key] = "null"
            continue
        if isinstance(value, dict) and not _is_outcome(value):
            raw[key] = value
            result.sources[key] = "prefetch"
            if value.get("resourceType") == "Bundle" and _has_next(value):
                if can_fetch:
                    to_fetch[key] = "__next__"
                else:
                    result.warnings.append(f"prefetch '{key}' has more pages, but there is no fhirServer to page through")
            continue
        why = "held an OperationOutcome" if _is_outcome(value) else "was not in the prefetch"
        if not can_fetch:
            result.missing[key] = f"prefetch '{key}' {why}, and there is no fhirServer with fhirAuthorization to fetch it"
            continue
        query = render_template(template, tokens)
        if query is None:
            result.missing[key] = f"prefetch '{key}' {why}, and its template needs context the request did not give"
            continue
        to_fetch[key] = query

    if to_fetch:
        assert fhir_server and access_token and client
        def run(item: tuple[str, str]) -> tuple[str, dict[str, Any] | None, list[str], str | None]:
            key, query = item
            try:
                if query == "__next__":
                    return (key, *_page_rest(raw[key], fhir_server, access_token, client, budget), None)
                resource, warnings = client.fetch(fhir_server, query, access_token, budget)
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


def _page_rest(
    bundle: dict[str, Any], server: str, token: str, client: FhirClient, budget: Budget
) -> tuple[dict[str, Any], list[str]]:
    """Follow the next links of a prefetched Bundle, merging its entries."""
    next_url = next(l["url"] for l in bundle.get("link") or [] if isinstance(l, dict) and l.get("relation") == "next")
    rest, warnings = client.fetch(server, next_url, token, budget)
    merged = dict(bundle)
    merged["entry"] = list(bundle.get("entry") or []) + list(rest.get("entry") or [])
    merged.pop("link", None)
    return merged, warnings
