"""One hook call, start to end: request → FHIR resources → engine findings → checked cards.

The only seam between the protocol and the rules: `answer_hook` takes plain data and returns plain
data; HTTP, auth and storage stay outside."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import Any

import hooks as hook_registry
from cds_service.fhir import Budget, FhirClient, gather, is_open_server
from cds_service.fhir.validate import Leniency, validate_resources
from cds_service.logs import log_event
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
    #: for the call record (names and codes only, never values): (rule id, finding) of each
    #: finding made, facts unknown because data was unavailable, findings left undecided for it,
    #: the resource types that could not be fetched, and findings hidden by earlier feedback
    rules_fired: list[tuple[str, str]] = field(default_factory=list)
    unknown_facts: list[str] = field(default_factory=list)
    undetermined: list[str] = field(default_factory=list)
    unavailable_types: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    rule_errors: list[str] = field(default_factory=list)
    #: prefetch key -> why it could not be fetched (the message names no patient data)
    unavailable_messages: dict[str, str] = field(default_factory=dict)


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

    412 (CDS Hooks 2.0 §prefetch: required data that cannot be obtained) only when the Patient
    itself is missing (a rule needs age and sex), or, for packs that read no Patient, when every
    key is missing. Any other key that could not be had (no fhirServer to fetch it from, a fetch
    that failed, an OperationOutcome, a template needing context the request lacks) makes its
    resource types unavailable: their rules are evaluated as unknown and the response says so."""
    if not gathered.missing:
        return frozenset()
    reads_patient = any(template_type(t) == PATIENT_TYPE for t in templates.values())
    patient_missing = any(template_type(templates.get(k, "")) == PATIENT_TYPE for k in gathered.missing)
    if patient_missing or (not reads_patient and len(gathered.missing) >= len(templates)):
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


@dataclass
class CheckedEvaluation:
    """What the rules made of one patient's resources, and the resources set aside as invalid."""

    evaluation: Any
    invalid: list[dict[str, Any]]
    validate_seconds: float = 0.0
    lenient: list[Leniency] = field(default_factory=list)


def evaluate_resources(
    resources: list[dict[str, Any]],
    *,
    hook: ModuleType,
    context: dict[str, Any],
    ruleset: Any,
    engine_settings: Any,
    now: datetime,
    suppression: Any = None,
    unavailable: frozenset[str] = frozenset(),
    orders: list[dict[str, Any]] | None = None,
) -> CheckedEvaluation:
    """A patient's FHIR resources → validated resources the rules read → the engine's Evaluation.

    The one path from resources to findings: a hook call (answer_hook) and population screening
    (cds_service.population) both take it, so they cannot disagree."""
    started = time.perf_counter()
    lenient: list[Leniency] = []
    valid, invalid = validate_resources(resources, ruleset.relevant, lenient=lenient)
    drafts = hook.orders(context) if orders is None else orders
    orders, invalid_orders = validate_resources(drafts, lambda _r: True, lenient=lenient)
    invalid.extend(invalid_orders)
    validated = time.perf_counter()
    evaluation = ruleset.evaluate(
        valid, hook=hook.HOOK, context=context, orders=orders, now=now,
        settings=engine_settings, suppress=suppression, unavailable=unavailable,
    )
    return CheckedEvaluation(evaluation, invalid, validated - started, lenient)


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
    fhir_server = body.get("fhirServer")
    gathered = gather(
        body.get("prefetch"),
        templates,
        hook_registry.token_values(hook, context),
        fhir_server,
        authorization.get("access_token"),
        client,
        budget,
        on_fetch_error=on_fetch_error,
        open_server=is_open_server(fhir_server, config["fhir"].get("open_servers") or ()),
    )
    fetched = time.perf_counter()
    # what the FHIR server brought (searches, and further pages of prefetched Bundles) counts too
    fetched_count = max(0, len(gathered.resources) - prefetched)
    check_resource_limit(min(prefetched, len(gathered.resources)), fetched_count, len(draft_orders), limit)
    unavailable = unavailable_types(gathered, templates)

    checked = evaluate_resources(
        gathered.resources, hook=hook, context=context, ruleset=ruleset, engine_settings=engine_settings,
        now=now, suppression=suppression, unavailable=unavailable, orders=draft_orders,
    )
    evaluation, invalid, lenient = checked.evaluation, checked.invalid, checked.lenient
    validated = fetched + checked.validate_seconds
    for note in lenient:
        log_event(logging.WARNING, "resource read leniently", hookInstance=body.get("hookInstance"),
                  resource=note.reference, path=note.path, problem=note.problem)
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
    warnings.extend({"code": "resource-read-leniently", "message": n.message()} for n in lenient)
    if warnings:
        extension[EXT_WARNINGS] = warnings
    if invalid:
        extension[EXT_INVALID] = invalid
    if extension:
        response["extension"] = extension

    outcome = HookOutcome(
        body=response, patient_id=context["patientId"], unavailable=sorted(gathered.missing),
        rules_fired=sorted((f.rule_id, f.code) for f in evaluation.findings),
        unknown_facts=sorted(ruleset.unknown_facts(unavailable)) if unavailable else [],
        undetermined=list(evaluation.undetermined),
        unavailable_types=sorted(unavailable),
        suppressed=list(evaluation.suppressed),
        rule_errors=sorted({e["rule"] for e in evaluation.errors}),
        unavailable_messages=dict(gathered.missing),
    )
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
