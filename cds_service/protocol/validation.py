"""Validate requests, feedback and responses against the project's CDS Hooks 2.0 JSON Schemas."""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

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
def validator(name: str) -> jsonschema.Draft202012Validator:
    """The compiled validator for schemas/<name>.schema.json (references inlined)."""
    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(inline_refs(schema, schema.get("$defs", {})))


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
    issues: list[Issue] = []
    seen: set[tuple[str, str]] = set()
    for error in validator(name).iter_errors(document):
        for leaf in _leaf_errors(error):
            path = root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in leaf.absolute_path)
            key = (path, leaf.message)
            if key not in seen:
                seen.add(key)
                issues.append(Issue("structure" if leaf.validator in {"type", "required"} else "value",
                                    f"{path}: {_short(leaf.message)}", path))
    return sorted(issues, key=lambda i: (i.expression or "", i.diagnostics))


def _short(message: str, limit: int = 300) -> str:
    """Schema messages echo the offending value; keep them short (and free of long patient text)."""
    return message if len(message) <= limit else message[: limit - 1] + "…"


def validate_request(body: Any, context_schema: dict[str, Any] | None = None) -> None:
    """Raise ProtocolError(400) listing every problem of a hook request (and its context)."""
    issues = schema_problems("request", body)
    if context_schema is not None and isinstance(body, dict) and isinstance(body.get("context"), dict):
        for error in jsonschema.Draft202012Validator(context_schema).iter_errors(body["context"]):
            for leaf in _leaf_errors(error):
                path = "$.context" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in leaf.absolute_path)
                issues.append(Issue("structure" if leaf.validator in {"type", "required"} else "value",
                                    f"{path}: {_short(leaf.message)}", path))
    if issues:
        raise ProtocolError(400, sorted(issues, key=lambda i: (i.expression or "", i.diagnostics)))


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
    try:
        datetime.fromisoformat(stamp[:-1] + "+00:00" if stamp.endswith(("Z", "z")) else stamp)
    except ValueError:
        path = f"$.feedback[{index}].outcomeTimestamp"
        return Issue("value", f"{path}: {_short(repr(stamp))} is not a valid date and time", path)
    return None


def validate_response(body: Any) -> list[Issue]:
    """The problems of a response we are about to send (empty when it is valid)."""
    return schema_problems("response", body)


def validate_discovery(body: Any) -> list[Issue]:
    """The problems of a discovery response (empty when it is valid)."""
    return schema_problems("discovery", body)
