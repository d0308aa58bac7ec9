"""Validate requests, feedback and responses against the project's CDS Hooks 2.0 JSON Schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs

from cds_service.protocol.errors import Issue, ProtocolError

SCHEMA_DIR = Path(__file__).with_name("schemas")


def inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with every local `#/$defs/x` reference replaced by its target.

    The schemas have no recursive definitions, and jsonschema's reference lookups cost about
    half of the validation time of a response, which every response pays."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
            rest = {k: inline_refs(v, defs) for k, v in node.items() if k != "$ref"}
            return {**target, **rest}
        return {k: inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [inline_refs(item, defs) for item in node]
    return node


@cache
def schema(name: str) -> dict[str, Any]:
    """schemas/<name>.schema.json with its references inlined."""
    raw = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    return inline_refs(raw, raw.get("$defs", {}))


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    """The validator that explains violations of schemas/<name>.schema.json, path by path."""
    return jsonschema.Draft202012Validator(schema(name))


class FastCheck:
    """A yes/no check of one schema by jsonschema-rs (Rust), in microseconds where the
    explaining validator (jsonschema) takes milliseconds for a response with cards.

    Every document the fast check passes is accepted; any other is handed to the explaining
    validator, which lists the violations (and has the last word when it finds none).
    tests/fuzz/test_fast_check.py checks that both agree on generated documents."""

    def __init__(self, document_schema: dict[str, Any]) -> None:
        self._validator = jsonschema_rs.Draft202012Validator(document_schema)

    def passes(self, document: Any) -> bool:
        """True when the document certainly meets the schema."""
        try:
            return bool(self._validator.is_valid(document))
        except (ValueError, TypeError, OverflowError, RecursionError):
            return False  # something it cannot represent (a non-string key…): look closer


@cache
def fast_check(name: str) -> FastCheck:
    """The fast yes/no check for schemas/<name>.schema.json."""
    return FastCheck(schema(name))


def _leaf_errors(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The most specific errors under an anyOf/oneOf/if-then, so messages name the real field."""
    if error.context:
        leaves: list[jsonschema.ValidationError] = []
        for sub in error.context:
            leaves.extend(_leaf_errors(sub))
        return leaves
    return [error]


def schema_problems(name: str, document: Any, root: str = "$") -> list[Issue]:
    """Every schema violation of document, each with its JSON path, sorted by path."""
    if fast_check(name).passes(document):
        return []
    return explained_problems(validator(name), document, root)


def explained_problems(explainer: jsonschema.Draft202012Validator, document: Any, root: str) -> list[Issue]:
    """The explaining validator's violations of document, each with its JSON path, sorted by path."""
    issues: list[Issue] = []
    seen: set[tuple[str, str]] = set()
    for error in explainer.iter_errors(document):
        for leaf in _leaf_errors(error):
            path = root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in leaf.absolute_path)
            key = (path, leaf.message)
            if key not in seen:
                seen.add(key)
                issues.append(Issue("structure" if leaf.validator in {"type", "required"} else "value",
                                    f"{path}: {_short(_message(leaf))}", path))
    return sorted(issues, key=lambda i: (i.expression or "", i.diagnostics))


def _message(error: jsonschema.ValidationError) -> str:
    """The validator's message, or for a ``not`` whose schema describes itself, that description
    ("'..' should not be valid under {'pattern': …}" says little to an EHR developer)."""
    if error.validator == "not" and isinstance(error.validator_value, dict) and "description" in error.validator_value:
        return f"{error.instance!r} is not allowed: {error.validator_value['description']}"
    return error.message


def _short(message: str, limit: int = 300) -> str:
    """Schema messages echo the offending value; keep them short (and free of long patient text)."""
    return message if len(message) <= limit else message[: limit - 1] + "…"


def validate_request(body: Any, context_schema: dict[str, Any] | None = None) -> None:
    """Raise ProtocolError(400) listing every problem of a hook request (and its context)."""
    issues = schema_problems("request", body)
    if context_schema is not None and isinstance(body, dict) and isinstance(body.get("context"), dict):
        fast, explainer = _context_checks(context_schema)
        if not fast.passes(body["context"]):
            issues.extend(explained_problems(explainer, body["context"], "$.context"))
    if issues:
        raise ProtocolError(400, sorted(issues, key=lambda i: (i.expression or "", i.diagnostics)))


_CONTEXT_CHECKS: dict[int, tuple[dict[str, Any], FastCheck, jsonschema.Draft202012Validator]] = {}


def _context_checks(context_schema: dict[str, Any]) -> tuple[FastCheck, jsonschema.Draft202012Validator]:
    """The fast check and the explaining validator of a hook's context schema, built once per schema."""
    entry = _CONTEXT_CHECKS.get(id(context_schema))
    if entry is None or entry[0] is not context_schema:
        entry = (context_schema, FastCheck(context_schema), jsonschema.Draft202012Validator(context_schema))
        _CONTEXT_CHECKS[id(context_schema)] = entry
    return entry[1], entry[2]


def validate_feedback(body: Any) -> None:
    """Raise ProtocolError(400) listing every problem of a feedback request, including an
    outcomeTimestamp that has the RFC 3339 shape but is no real instant (month 13, hour 25)."""
    issues = schema_problems("feedback", body)
    if not issues:
        issues = [_impossible_timestamp(i, e["outcomeTimestamp"]) for i, e in enumerate(body["feedback"])]
        issues = [issue for issue in issues if issue is not None]
    if issues:
        raise ProtocolError(400, issues)


def _impossible_timestamp(index: int, stamp: str) -> Issue | None:
    path = f"$.feedback[{index}].outcomeTimestamp"
    try:
        parsed = datetime.fromisoformat(stamp[:-1] + "+00:00" if stamp.endswith(("Z", "z")) else stamp)
    except ValueError:
        return Issue("value", f"{path}: {_short(repr(stamp))} is not a valid date and time", path)
    try:  # an offset can carry a valid local time out of the years 1-9999 once it is in UTC
        parsed.astimezone(UTC)
    except OverflowError:
        return Issue("value", f"{path}: {_short(repr(stamp))} lies outside the years 0001-9999 in UTC", path)
    return None


def validate_response(body: Any) -> list[Issue]:
    """The problems of a response we are about to send (empty when it is valid)."""
    return schema_problems("response", body)


def validate_discovery(body: Any) -> list[Issue]:
    """The problems of a discovery response (empty when it is valid)."""
    return schema_problems("discovery", body)
