"""FHIRPath: a strict load-time guard; a dict-walk fast path for simple paths, else fhirpathpy."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import fhirpathpy
from fhirpathpy.engine import base_invocation_registry
from fhirpathpy.models import models

FUNCTIONS = frozenset(k for k in base_invocation_registry if re.fullmatch(r"[A-Za-z]+", k)) | {
    "ofType",
    "resolve",
    "hasValue",
    "getValue",
    "memberOf",
    "conformsTo",
    "htmlChecks",
    "iif",
}
KEYWORD_OPERATORS = {"and", "or", "xor", "implies", "is", "as", "in", "contains", "div", "mod"}
CALENDAR_UNITS = {
    f"{u}{s}"
    for u in ("year", "month", "week", "day", "hour", "minute", "second", "millisecond")
    for s in ("", "s")
}
_EQUALS = re.compile(
    r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*=\s*'([^'\\]*)'\s*$"
)
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<delimited>`(?:[^`\\]|\\.)*`)
  | (?P<datetime>@[0-9T:\-+.Z]+)
  | (?P<quantity_unit>\d+(?:\.\d+)?\s*'(?:[^'\\]|\\.)*')
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<variable>%[A-Za-z_][A-Za-z0-9_]*|%`[^`]*`|%'[^']*')
  | (?P<ident>\$?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|!~|[-+*/|&=~<>])
  | (?P<punct>[().,\[\]{}])
""",
    re.VERBOSE,
)
R4 = models["r4"]


class FhirPathError(ValueError):
    """An expression that is not valid FHIRPath."""


def check(expression: str, resource_type: str | None = None) -> None:
    """Reject what fhirpathpy would silently accept: bad tokens, unbalanced brackets or quotes,
    adjacent operands (trailing tokens), unknown functions; then compile and smoke-evaluate."""
    tokens = _tokens(expression)
    depth: list[str] = []
    previous = None
    for index, (kind, text) in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else (None, None)
        if text in "([{" and kind == "punct":
            depth.append(text)
        elif text in ")]}" and kind == "punct":
            expected = {")": "(", "]": "[", "}": "{"}[text]
            if not depth or depth.pop() != expected:
                raise FhirPathError(f"unbalanced {text!r} in {expression!r}")
        if kind == "ident" and following[1] == "(" and text not in FUNCTIONS | KEYWORD_OPERATORS:
            raise FhirPathError(f"unknown function {text}() in {expression!r}")
        calendar = (
            kind == "ident"
            and previous is not None
            and previous[0] == "number"
            and text in CALENDAR_UNITS
        )
        if previous is not None and _starts(kind, text) and _ends(*previous) and not calendar:
            raise FhirPathError(f"unexpected {text!r} after {previous[1]!r} in {expression!r}")
        if kind == "op" and (previous is None or previous[0] == "op") and text not in "-+":
            raise FhirPathError(f"operator {text!r} without left operand in {expression!r}")
        previous = (kind, text)
    if depth:
        raise FhirPathError(f"unclosed {depth[-1]!r} in {expression!r}")
    if previous is None or previous[0] == "op" or previous[1] in (".", ","):
        raise FhirPathError(f"expression {expression!r} ends unexpectedly")
    try:
        compiled = fhirpathpy.compile(expression, R4)
        compiled({"resourceType": resource_type or "Resource"})
    except Exception as exc:  # fhirpathpy raises bare Exception subclasses
        raise FhirPathError(f"{expression!r}: {exc}") from exc


def _starts(kind, text) -> bool:
    if kind == "ident":
        return text not in KEYWORD_OPERATORS
    return kind in ("string", "delimited", "datetime", "quantity_unit", "number", "variable")


def _ends(kind, text) -> bool:
    return _starts(kind, text) or text in (")", "]")


def _tokens(expression: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expression):
        match = _TOKEN.match(expression, pos)
        if not match:
            char = expression[pos]
            what = "unterminated quote" if char in "'`" else f"unexpected character {char!r}"
            raise FhirPathError(f"{what} at position {pos + 1} in {expression!r}")
        kind = match.lastgroup
        if kind != "ws":
            out.append((kind, match.group()))
        pos = match.end()
    return out


@lru_cache(maxsize=1024)
def accessor(expression: str, resource_type: str | None = None) -> Callable[[dict], list]:
    """A function resource -> list of values; a dict walk for dotted paths (and unions of them),
    fhirpathpy otherwise."""
    branches = [b.strip() for b in expression.split("|")]
    if all(
        _DOTTED.match(b) and not (set(b.split(".")) & (FUNCTIONS | KEYWORD_OPERATORS))
        for b in branches
    ):
        paths = []
        for branch in branches:
            parts = branch.split(".")
            if resource_type and parts[0] == resource_type:
                parts = parts[1:]
            paths.append(parts)
        if len(paths) == 1:
            only = paths[0]
            if len(only) == 1 and only[0] not in CHOICE_ELEMENTS:
                key = only[0]

                def get(resource):
                    value = resource.get(key)
                    if value is None:
                        return []
                    return value if type(value) is list else [value]

                get.single_key = key  # callers may read resource[key] directly
                return get
            if only == ["value"]:

                def get(resource):  # Observation.value: valueQuantity first, then other types
                    value = resource.get("valueQuantity")
                    return [value] if value is not None else walk(resource, only)

                return get

            def get(resource):
                return walk(resource, only)

            return get
        if all(p[0] not in CHOICE_ELEMENTS for p in paths):
            keys = [p[0] if len(p) == 1 else p for p in paths]

            def union_of_keys(resource):  # `a | b.c | d` of plain elements: direct reads
                found = None
                for key in keys:
                    if key.__class__ is str:
                        value = resource.get(key)
                        if value is None:
                            continue
                        values = value if type(value) is list else [value]
                    else:
                        if key[0] not in resource:
                            continue
                        values = walk(resource, key)
                        if not values:
                            continue
                    if found is None:
                        found = values
                    else:
                        found = _union([found, values])
                return found if found is not None else []

            return union_of_keys
        return lambda resource: _union([walk(resource, parts) for parts in paths])
    simple = _simple_boolean(expression, resource_type)
    if simple is not None:
        return simple
    match = _EQUALS.match(expression)
    if match and not (set(match.group(1).split(".")) & (FUNCTIONS | KEYWORD_OPERATORS)):
        parts, literal = match.group(1).split("."), match.group(2)
        if resource_type and parts[0] == resource_type:
            parts = parts[1:]
        return lambda resource: _equals(walk(resource, parts), literal)
    compiled = fhirpathpy.compile(expression, R4)

    def evaluate(resource: dict) -> list:
        try:
            return compiled(resource)
        except Exception:  # a resource the expression cannot read yields nothing
            return []

    return evaluate


_ATOM = re.compile(
    r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r"(?:\.(exists|empty)\(\)(\.not\(\))?|\s*=\s*(?:'([^'\\]*)'|(true|false)))$"
)


def _simple_boolean(expression: str, resource_type: str | None):
    """Fast path for `a or b` / `a and b` over atoms `path.exists()`, `path.empty()`, `….not()`,
    `path = 'text'`, `path = true|false` (no parentheses); None for any other expression."""
    text = expression.strip()
    if "(" in text.replace("exists()", "").replace("empty()", "").replace("not()", ""):
        return None
    for joiner in (" or ", " and "):
        if joiner in text:
            if (" and " if joiner == " or " else " or ") in text:
                return None
            atoms = [_atom(a.strip(), resource_type) for a in text.split(joiner)]
            if any(a is None for a in atoms):
                return None
            combine = _or if joiner == " or " else _and
            return lambda resource: combine([atom(resource) for atom in atoms])
    atom = _atom(text, resource_type)
    return atom if atom is not None and (" " in text or "()" in text) else None


def _atom(text: str, resource_type: str | None):
    match = _ATOM.match(text)
    if not match or set(match.group(1).split(".")) & (FUNCTIONS | KEYWORD_OPERATORS):
        return None
    parts = match.group(1).split(".")
    if resource_type and parts[0] == resource_type:
        parts = parts[1:]
    function, negate, literal, boolean = (
        match.group(2),
        match.group(3),
        match.group(4),
        match.group(5),
    )
    if function:
        want_values = function == "exists"
        flip = bool(negate)
        return lambda r: [(bool(walk(r, parts)) == want_values) != flip]
    expected = literal if literal is not None else (boolean == "true")
    return lambda r: _equals(walk(r, parts), expected)


def _or(results: list[list]) -> list:
    if any(r == [True] for r in results):
        return [True]
    return [False] if all(r == [False] for r in results) else []


def _and(results: list[list]) -> list:
    if any(r == [False] for r in results):
        return [False]
    return [True] if all(r == [True] for r in results) else []


def _equals(values: list, literal) -> list:
    """FHIRPath `path = 'text'` on a singleton: [] if empty, else [True] or [False]."""
    if not values:
        return []
    if len(values) > 1:
        return [False]
    return [values[0] == literal]


def _union(lists: list[list]) -> list:
    """FHIRPath `|`: the values of every branch, duplicates removed, first occurrence kept."""
    out: list = []
    for values in lists:
        for value in values:
            if value not in out:
                out.append(value)
    return out


def walk(resource: dict, parts: list[str]) -> list:
    """Follow a dotted path through dicts and lists; choice types (value → valueQuantity) too."""
    current = [resource]
    for part in parts:
        nxt = []
        for item in current:
            if not isinstance(item, dict):
                continue
            value = item.get(part)
            if value is None:
                value = _choice(item, part)
            if value is None:
                continue
            if isinstance(value, list):
                nxt.extend(value)
            else:
                nxt.append(value)
        current = nxt
        if not current:
            break
    return current


# FHIR R4 choice elements ([x]) read by the fast path: `value` finds valueQuantity, valueString …
CHOICE_ELEMENTS = frozenset(
    {
        "value",
        "effective",
        "onset",
        "abatement",
        "medication",
        "performed",
        "occurrence",
        "deceased",
        "multipleBirth",
        "asNeeded",
        "reported",
        "timing",
        "product",
        "born",
        "age",
        "item",
        "answer",
        "defaultValue",
        "fixed",
        "pattern",
        "serviced",
        "location",
        "subject",
        "diagnosis",
        "procedure",
    }
)


def _choice(item: dict, part: str):
    if part not in CHOICE_ELEMENTS:
        return None
    if part == "value" and "valueQuantity" in item:
        return item["valueQuantity"]
    for key, value in item.items():
        if len(key) > len(part) and key.startswith(part) and key[len(part)].isupper():
            return value
    return None
