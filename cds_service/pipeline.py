"""One hook call, start to end: request → FHIR resources → engine findings → checked cards.

The only seam between the protocol and the rules: `answer_hook` takes plain data and returns plain
data; HTTP, auth and storage stay outside."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import Any

import hooks as hook_registry
from cds_service.fhir import Budget, FhirClient, gather
from cds_service.fhir.validate import validate_resources
from cds_service.protocol import ProtocolError, validate_request, validate_response
from cds_service.protocol.errors import Issue
from cds_service.smart.links import trend_link

EXT_WARNINGS = "org.sarcopenia-cds.warnings"
EXT_INVALID = "org.sarcopenia-cds.invalid-resources"
PATIENT_TYPE = "Patient"


@dataclass
class HookOutcome:
    """The response body, and what the audit log and store need to know about it."""

    body: dict[str, Any]
    patient_id: str
    findings: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    fallback: bool = False
    unavailable: list[str] = field(default_factory=list)


def check_request(body: Any, service_id: str, hook: ModuleType) -> None:
    """Raise ProtocolError(400) for every problem of a hook request, including a hook mismatch."""
    validate_request(body, hook.CONTEXT_SCHEMA)
    if body["hook"] != hook.HOOK:
        raise ProtocolError.single(
            400, "value",
            f"$.hook: '{body['hook']}' does not match service '{service_id}', which answers '{hook.HOOK}'",
            "$.hook",
        )
    problems = hook.problems(body["context"])
    if problems:
        raise ProtocolError(400, [Issue("value", message, path) for path, message in problems])


def template_type(template: str) -> str:
    """The resource type a prefetch template reads ('Patient/{{…}}' → Patient, 'Observation?…' → Observation)."""
    return template.split("?", 1)[0].split("/", 1)[0]


def unavailable_types(gathered: Any, templates: dict[str, str]) -> frozenset[str]:
    """The resource types to evaluate as unknown, or ProtocolError 412 when there is nothing to go on.

    412 (CDS Hooks 2.0 §prefetch): a key that could not be fetched at all (no fhirServer with
    fhirAuthorization, a template needing context the request lacks), the Patient itself missing,
    or every key missing. Otherwise keys whose fetch failed (slow, 5xx, HTML, closed, an
    OperationOutcome) make their resource types unavailable and the call goes on."""
    if not gathered.missing:
        return frozenset()
    unfetchable = [k for k in gathered.missing if k not in gathered.failed]
    patient_missing = any(template_type(templates.get(k, "")) == PATIENT_TYPE for k in gathered.missing)
    if unfetchable or patient_missing or len(gathered.missing) >= len(templates):
        raise ProtocolError(412, [
            Issue("incomplete", message, f"$.prefetch.{key}") for key, message in sorted(gathered.missing.items())
        ])
    return frozenset(template_type(templates[k]) for k in gathered.missing)


def count_prefetch_resources(prefetch: dict[str, Any] | None) -> int:
    """How many resources the prefetch holds (Bundles count their entries)."""
    total = 0
    for value in (prefetch or {}).values():
        if isinstance(value, dict):
            total += len(value.get("entry") or []) if value.get("resourceType") == "Bundle" else 1
    return total


def check_resource_limit(prefetched: int, fetched: int, draft_orders: int, limit: int) -> None:
    """ProtocolError 413 when the resources of one request, wherever they came from (the
    prefetch, the FHIR server, the draft orders), are more than ``limits.max_prefetch_resources``."""
    total = prefetched + fetched + draft_orders
    if total > limit:
        raise ProtocolError.single(
            413, "too-costly",
            f"the request brings {total} resources ({prefetched} in the prefetch, {fetched} fetched from "
            f"fhirServer, {draft_orders} draft orders); the limit is {limit} (limits.max_prefetch_resources)",
            "$.prefetch")


def add_trend_link(cards: list[dict[str, Any]], context: dict[str, Any], config: dict[str, Any]) -> None:
    """Link each card to the muscle and weight trend view (SMART launch; a plain link in the demo)."""
    link = trend_link(context, config, config["locale"])
    if link is not None:
        for card in cards:
            card["links"] = [*card.get("links", []), dict(link)]


def answer_hook(
    body: dict[str, Any],
    *,
    service_id: str,
    ruleset: Any,
    engine_settings: Any,
    config: dict[str, Any],
    client: FhirClient | None,
    suppression: Any = None,
    now: datetime,
    on_fetch_error: Any = None,
) -> HookOutcome:
    """Answer one validated hook request with checked cards (or raise ProtocolError)."""
    started = time.perf_counter()
    hook = hook_registry.HOOKS[hook_registry.SERVICES[service_id]]
    context = body["context"]
    limit = config["limits"]["max_prefetch_resources"]
    draft_orders = hook.orders(context)
    prefetched = count_prefetch_resources(body.get("prefetch"))
    check_resource_limit(prefetched, 0, len(draft_orders), limit)

    budget = Budget(float(config["fhir"]["budget_seconds"]))
    authorization = body.get("fhirAuthorization") or {}
    templates = ruleset.prefetch_templates(hook.HOOK)
    gathered = gather(
        body.get("prefetch"),
        templates,
        hook_registry.token_values(hook, context),
        body.get("fhirServer"),
        authorization.get("access_token"),
        client,
        budget,
        on_fetch_error=on_fetch_error,
    )
    fetched = time.perf_counter()
    # what the FHIR server brought (searches, and further pages of prefetched Bundles) counts too
    fetched_count = max(0, len(gathered.resources) - prefetched)
    check_resource_limit(min(prefetched, len(gathered.resources)), fetched_count, len(draft_orders), limit)
    unavailable = unavailable_types(gathered, templates)

    resources, invalid = validate_resources(gathered.resources, ruleset.relevant)
    orders, invalid_orders = validate_resources(draft_orders, lambda _r: True)
    invalid.extend(invalid_orders)
    validated = time.perf_counter()

    evaluation = ruleset.evaluate(
        resources, hook=hook.HOOK, context=context, orders=orders, now=now,
        settings=engine_settings, suppress=suppression, unavailable=unavailable,
    )
    evaluated = time.perf_counter()

    if hook.HOOK == "patient-view":
        add_trend_link(evaluation.cards, context, config)
    response: dict[str, Any] = {"cards": evaluation.cards}
    extension: dict[str, Any] = {}
    warnings = [
        {"code": "fhir-data-unavailable",
         "message": f"{gathered.missing[key]}; rules reading {template_type(templates[key])} were evaluated "
                    "as unknown, so cards may be missing"}
        for key in sorted(gathered.missing)
    ]
    warnings.extend({"code": "fhir-data", "message": w} for w in gathered.warnings)
    if warnings:
        extension[EXT_WARNINGS] = warnings
    if invalid:
        extension[EXT_INVALID] = invalid
    if extension:
        response["extension"] = extension

    outcome = HookOutcome(body=response, patient_id=context["patientId"], unavailable=sorted(gathered.missing))
    problems = validate_response(response)
    if problems:
        outcome.fallback = True
        outcome.body = {"cards": [], "extension": {EXT_WARNINGS: [{
            "code": "internal-response-invalid",
            "message": "The service produced guidance that failed its own response schema; no cards were sent.",
        }]}}
        outcome.timings_ms["response_problems"] = float(len(problems))
    else:
        outcome.findings = sorted({f.code for f in evaluation.findings})
        outcome.sent = list(evaluation.sent)
    outcome.timings_ms.update({
        "fhir": round((fetched - started) * 1000, 3),
        "validate": round((validated - fetched) * 1000, 3),
        "engine": round((evaluated - validated) * 1000, 3),
        "total": round((time.perf_counter() - started) * 1000, 3),
    })
    return outcome
