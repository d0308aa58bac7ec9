"""Validate FHIR R4 resources with fhir.resources (R4B models); invalid ones are reported and skipped.

Lenient reading (docs/lenient-reading.md): a resource that fails only because an element that FHIR
makes a list came as one object (`category: {...}`), or because a required element is missing
(`intent` on a draft order), is read for what it carries: the object as a one-element list, the
missing element as absent. Each such repair is a `Leniency` note (reference and JSON path, never a
value). Any other problem (a wrong type, a bad date or code) still skips the resource."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from cds_service.protocol import ProtocolError

#: how many resource verdicts one process remembers at least (a digest and a few short strings each)
VERDICTS_KEPT = 4096
#: and at most, however large the requests (about 200 bytes each: 13 MB)
VERDICTS_MOST = 65536


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
    Only a digest is kept, never the resource, and the problem lines never echo values.

    The memory grows with the requests (`fit`): it holds twice the largest request seen, so a
    request larger than the memory does not push out its own verdicts before it comes again
    (with 4,096 verdicts and 4,347 resources every call checked every resource again)."""

    def __init__(self, size: int = VERDICTS_KEPT, most: int = VERDICTS_MOST) -> None:
        self._size = size
        self._most = max(size, most)
        self._known: OrderedDict[bytes, list[str]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """How many verdicts are kept at most, now."""
        return self._size

    def fit(self, count: int) -> None:
        """Make room for the verdicts of two requests of `count` resources (up to the most kept)."""
        if 2 * count > self._size:
            self._size = min(self._most, 2 * count)

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


#: pydantic error types a lenient read repairs: an object where a list belongs, a missing element
LIST_EXPECTED = "list_type"
MISSING = ("missing", "model_field_validation.missing")
LENIENT_ROUNDS = 3


@dataclass(frozen=True)
class Leniency:
    """One repair of a lenient read: which resource, where, and what was done (no values)."""

    reference: str
    path: str
    problem: str

    def message(self) -> str:
        return f"{self.reference}: {self.path} {self.problem}"


def _split(line: str) -> tuple[tuple[str, ...], str]:
    """A problem line 'a.0.b: type' as (('a', '0', 'b'), 'type')."""
    where, _, kind = line.rpartition(": ")
    return (tuple(where.split(".")) if where and where != "(resource)" else ()), kind


def json_path(parts: tuple[str, ...]) -> str:
    """('dosageInstruction', '0', 'timing') as '$.dosageInstruction[0].timing'."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


def _wrap(resource: dict[str, Any], parts: tuple[str, ...]) -> bool:
    """Replace the object at `parts` by a one-element list holding it; False when it is not one."""
    node: Any = resource
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    last = parts[-1] if parts else None
    if not isinstance(node, dict) or last not in node or not isinstance(node[last], dict):
        return False
    node[last] = [node[last]]
    return True


def lenient_read(kind: str, resource: dict[str, Any], problems: list[str],
                 reference: str) -> tuple[dict[str, Any] | None, list[Leniency]]:
    """A repaired copy of `resource` and what was repaired, or (None, []) when it cannot be read."""
    copy: dict[str, Any] | None = None
    notes: list[Leniency] = []
    noted: set[tuple[str, ...]] = set()
    for _ in range(LENIENT_ROUNDS):
        pending = [_split(line) for line in problems]
        if any(kind_ not in MISSING and kind_ != LIST_EXPECTED for _, kind_ in pending):
            return None, []
        wraps = [parts for parts, kind_ in pending if kind_ == LIST_EXPECTED]
        for parts, kind_ in pending:
            if kind_ in MISSING and parts not in noted:
                noted.add(parts)
                notes.append(Leniency(reference, json_path(parts),
                                      "is required by FHIR R4 and missing; read without it"))
        if not wraps:
            return (copy if copy is not None else resource), notes
        if copy is None:
            copy = orjson.loads(orjson.dumps(resource))
        for parts in wraps:
            if not _wrap(copy, parts):
                return None, []
            notes.append(Leniency(reference, json_path(parts),
                                  "is an object where FHIR R4 has a list; read as a one-element list"))
        problems = model_problems(kind, copy)
    return None, []


def validate_resources(
    resources: list[dict[str, Any]], relevant: Callable[[dict[str, Any]], bool], verdicts: Verdicts | None = None,
    lenient: list[Leniency] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(valid resources the rules read, invalid ones as {reference, problems}); others are dropped unread.

    With a `lenient` list, a resource whose only problems a lenient read repairs is read (its
    repaired copy is among the valid ones) and each repair is appended to `lenient`."""
    valid: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    verdicts = verdicts or VERDICTS
    verdicts.fit(len(resources))
    for resource in resources:
        kind = resource.get("resourceType")
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
        reference = f"{kind}/{resource.get('id', '?')}"
        try:
            problems = verdicts.problems(resource, lambda: model_problems(kind, resource))
        except RecursionError:  # the models recurse once per level: 150 nested extensions are too many
            raise ProtocolError.single(
                400, "too-costly", f"{reference[:120]} is nested too deeply to be checked (elements or "
                "extensions more than about 100 levels down); the request was not processed") from None
        if problems and lenient is not None:
            repaired, notes = lenient_read(kind, resource, list(problems), reference)
            if repaired is not None:
                lenient.extend(notes)
                valid.append(repaired)
                continue
        if problems:
            invalid.append({"reference": reference, "problems": list(problems)})
        else:
            valid.append(resource)
    return valid, invalid
