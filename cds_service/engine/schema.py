"""Validate a pack file against rules/schema/rule-pack.schema.json, reporting every violation."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import jsonschema
from jsonschema.exceptions import best_match

from .diagnostics import SCHEMA_ERROR, Collector, Source

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "rules" / "schema" / "rule-pack.schema.json"
_UNEXPECTED = re.compile(r"\('([^']+)' was unexpected\)|'([^']+)' was unexpected")


@lru_cache(maxsize=1)
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def check_schema(src: Source, out: Collector) -> bool:
    """Add one rule_schema_error per violation (the most specific one for oneOf); True if valid."""
    ok = True
    for error in validator().iter_errors(src.data):
        ok = False
        error = _deepest(error)
        path = tuple(error.absolute_path)
        value_pos = True
        if error.validator == "additionalProperties":
            match = _UNEXPECTED.search(error.message)
            if match:
                path = path + (match.group(1) or match.group(2),)
                value_pos = False
        out.add(src, path, SCHEMA_ERROR, _message(error), value=value_pos)
    return ok


def _deepest(error):
    """For oneOf/anyOf failures pick the sub-error jsonschema ranks best, recursively."""
    while error.context:
        candidate = best_match(error.context)
        if candidate is None or candidate is error:
            break
        error = candidate
    return error


def _message(error) -> str:
    if (
        error.validator == "type"
        and isinstance(error.instance, str)
        and "number" in ([error.validator_value] if isinstance(error.validator_value, str) else error.validator_value)
    ):
        return (
            f"{error.instance!r} is text, but a number is expected here: write the number alone "
            "(the unit goes in `unit`)"
        )
    msg = error.message
    return msg if len(msg) < 300 else msg[:297] + "..."
