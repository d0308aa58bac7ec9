"""Validate FHIR R4 resources with fhir.resources (R4B models); invalid ones are reported and skipped."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from cds_service.protocol import ProtocolError

#: how many resource verdicts one process remembers (a digest and a few short strings each)
VERDICTS_KEPT = 4096


def _problems(error: ValidationError) -> list[str]:
    """pydantic errors as 'path: message' lines, without echoing the offending values."""
    lines = []
    for item in error.errors()[:10]:
        path = ".".join(str(p) for p in item.get("loc", ()) if p != "__root__") or "(resource)"
        lines.append(f"{path}: {item.get('type', 'invalid')}")
    return lines


class Verdicts:
    """The problems found in resources seen before, by a digest of their canonical JSON.

    The EHR sends the same resources again and again (each chart opening fires patient-view,
    each change to an order order-select), and checking one against its model costs 50–500 µs.
    Only a digest is kept, never the resource, and the problem lines never echo values."""

    def __init__(self, size: int = VERDICTS_KEPT) -> None:
        self._size = size
        self._known: OrderedDict[bytes, list[str]] = OrderedDict()
        self._lock = threading.Lock()

    def problems(self, resource: dict[str, Any], check: Callable[[], list[str]]) -> list[str]:
        """check()'s answer for this resource, from memory when the same content was checked before."""
        try:
            digest = hashlib.blake2b(orjson.dumps(resource, option=orjson.OPT_SORT_KEYS), digest_size=20).digest()
        except (orjson.JSONEncodeError, TypeError):
            return check()  # not JSON orjson can write (an integer beyond 64 bits): check every time
        with self._lock:
            known = self._known.get(digest)
            if known is not None:
                self._known.move_to_end(digest)
                return known
        found = check()
        with self._lock:
            self._known[digest] = found
            if len(self._known) > self._size:
                self._known.popitem(last=False)
        return found


VERDICTS = Verdicts()


def model_problems(kind: str, resource: dict[str, Any]) -> list[str]:
    """What is wrong with resource as a FHIR R4 `kind` (empty when it is valid)."""
    try:
        model = get_fhir_model_class(kind)
    except (KeyError, ValueError):
        return [f"unknown resourceType '{kind}'"]
    try:
        model.model_validate(resource)
    except ValidationError as error:
        return _problems(error)
    except (TypeError, ValueError) as error:
        return [type(error).__name__]
    return []


def validate_resources(
    resources: list[dict[str, Any]], relevant: Callable[[dict[str, Any]], bool], verdicts: Verdicts | None = None,
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
            problems = (verdicts or VERDICTS).problems(resource, lambda: model_problems(kind, resource))
        except RecursionError:  # the models recurse once per level: 150 nested extensions are too many
            raise ProtocolError.single(
                400, "too-costly", f"{reference[:120]} is nested too deeply to be checked (elements or "
                "extensions more than about 100 levels down); the request was not processed") from None
        if problems:
            invalid.append({"reference": reference, "problems": list(problems)})
        else:
            valid.append(resource)
    return valid, invalid
