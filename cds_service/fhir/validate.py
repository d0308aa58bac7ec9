"""Validate FHIR R4 resources with fhir.resources (R4B models); invalid ones are reported and skipped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError


def _problems(error: ValidationError) -> list[str]:
    """pydantic errors as 'path: message' lines, without echoing the offending values."""
    lines = []
    for item in error.errors()[:10]:
        path = ".".join(str(p) for p in item.get("loc", ()) if p != "__root__") or "(resource)"
        lines.append(f"{path}: {item.get('type', 'invalid')}")
    return lines


def validate_resources(
    resources: list[dict[str, Any]], relevant: Callable[[dict[str, Any]], bool]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(valid resources the rules read, invalid ones as {reference, problems}); others are dropped unread."""
    valid: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    for resource in resources:
        kind = resource.get("resourceType")
        reference = f"{kind}/{resource.get('id', '?')}"
        if not isinstance(kind, str) or not kind:
            invalid.append({"reference": f"(resource)/{resource.get('id', '?')}",
                            "problems": ["resourceType: not a resource type name"]})
            continue
        try:
            wanted = relevant(resource)
        except (TypeError, ValueError, AttributeError, KeyError):
            wanted = True  # malformed where the rules look: the model check below says what is wrong
        if not wanted:
            continue
        try:
            model = get_fhir_model_class(str(kind))
        except (KeyError, ValueError):
            invalid.append({"reference": reference, "problems": [f"unknown resourceType '{kind}'"]})
            continue
        try:
            model.model_validate(resource)
        except ValidationError as error:
            invalid.append({"reference": reference, "problems": _problems(error)})
            continue
        except (TypeError, ValueError) as error:
            invalid.append({"reference": reference, "problems": [type(error).__name__]})
            continue
        valid.append(resource)
    return valid, invalid
