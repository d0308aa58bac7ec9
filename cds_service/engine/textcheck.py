"""Load-time text checks: every locale present, template variables defined, short summaries."""

from __future__ import annotations

import re

from .catalog import FINDINGS
from .diagnostics import TEMPLATE_ERROR
from .render_values import format_number
from .templates import VARIABLE, Template, has_unclosed
from .units import display as unit_display

TEXT_KEYS = {
    "title",
    "description",
    "label",
    "label_without_data",
    "summary",
    "detail",
    "display",
    "$text",
    "otherwise",
}
FACT_ATTRS = {None, "value", "unit", "date", "reference", "label"}
PARAM_ATTRS = {None, "value", "unit", "source"}
CONTEXT_ATTRS = {"patientId", "userId", "encounterId"}
FINDING_ATTRS = {"code", "display", "coding"}
SUMMARY_LIMIT = 140
UNBOUNDED = float("inf")
DATE_LENGTH = len("2024-01-31")
# A side without a plausible limit is assumed to need at most 7 integer digits (documented).
ASSUMED_MAGNITUDE = 9_999_999


def check_texts(c) -> None:
    """Every text map has exactly the locales its pack declares."""
    for src in c.sources:
        locales = c.locales(src.data["pack"]["id"])
        for path, text in _texts(src.data, ()):
            missing = [loc for loc in locales if loc not in text]
            if missing:
                c.error(
                    src,
                    path,
                    TEMPLATE_ERROR,
                    f"text lacks locale(s) {', '.join(missing)} declared in pack.locales",
                )


def _texts(data, path):
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "resource" and isinstance(value, dict):
                yield from _resource_texts(value, path + (key,))
            elif (
                key in TEXT_KEYS
                and isinstance(value, dict)
                and all(isinstance(v, str) for v in value.values())
            ):
                yield path + (key,), value
            else:
                yield from _texts(value, path + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _texts(value, path + (i,))


def _resource_texts(data, path):
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("$text", "otherwise") and isinstance(value, dict):
                yield path + (key,), value
            else:
                yield from _resource_texts(value, path + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _resource_texts(value, path + (i,))


def check_templates(c, rules, suggestions, links) -> None:
    """Template variables exist; each summary, filled with its longest values, stays < 140
    (for a rule with fragments: with each combination of its fragments' options)."""
    for src in c.sources:
        for path, text in _strings(src.data, ()):
            if has_unclosed(text):
                c.error(src, path, TEMPLATE_ERROR, f"malformed '{{{{ }}}}' in {text!r}")
            fragments = _fragments_in_scope(c, src.data, path)
            for var in VARIABLE.findall(text):
                problem = _variable_problem(c, var, fragments)
                if problem:
                    c.error(src, path, TEMPLATE_ERROR, problem)
        for i, rule in enumerate(src.data.get("rules") or []):
            fragments = _resolved(c, rule)
            for name in fragments:
                used = any(
                    re.search(r"\{\{\s*" + name + r"(\.detail)?\s*\}\}", t)
                    for part in ("summary", "detail")
                    for t in (rule["card"].get(part) or {}).values()
                )
                if not used:
                    c.error(
                        src,
                        ("rules", i, "fragments", name),
                        TEMPLATE_ERROR,
                        f"fragment {name!r} is not used in the card: write {{{{{name}}}}} in its "
                        "summary or detail, or remove it",
                        value=False,
                    )
            for locale, text in rule["card"]["summary"].items():
                path = ("rules", i, "card", "summary", locale)
                if any(_variable_problem(c, v, fragments) for v in VARIABLE.findall(text)):
                    continue
                if any(options is None for options in fragments.values()):
                    continue
                filled = [
                    _fill_with(text, locale, fragments, combo) for combo in _combos(fragments)
                ]
                if any(_variable_problem(c, v) for t in filled for v in VARIABLE.findall(t)):
                    continue  # reported at the fragment's text
                longest, template = max(
                    (
                        (
                            Template(t).longest(lambda v, loc=locale: _longest(c, v, loc)),
                            Template(t),
                        )
                        for t in filled
                    ),
                    key=lambda pair: pair[0],
                )
                if longest >= UNBOUNDED:
                    bad = [v for v in template.variables if _longest(c, v, locale) >= UNBOUNDED]
                    c.error(
                        src,
                        path,
                        TEMPLATE_ERROR,
                        f"summary length cannot be bounded: {', '.join(bad)} is free text "
                        "or a reference; "
                        f"summaries must stay under {SUMMARY_LIMIT} characters",
                    )
                elif longest >= SUMMARY_LIMIT:
                    c.error(
                        src,
                        path,
                        TEMPLATE_ERROR,
                        f"summary can reach {longest} characters with its longest values "
                        f"(limit {SUMMARY_LIMIT - 1})",
                    )


def _fragments_in_scope(c, data, path) -> dict:
    """The fragments a text at `path` may use: its rule's, in the rule's card (a fragment's own
    texts and other places cannot use fragments)."""
    if len(path) > 3 and path[0] == "rules" and path[2] == "card":
        return _resolved(c, data["rules"][path[1]])
    return {}


def _resolved(c, rule) -> dict:
    """A rule's fragments, name -> options (shared options looked up)."""
    out = {}
    for name, options in (rule.get("fragments") or {}).items():
        if isinstance(options, str):
            shared = c.defs["fragments"].get(options)
            options = None if shared is None else shared.data  # None: reported by the compiler
        out[name] = options
    return out


def _combos(fragments: dict) -> list[dict]:
    """Every choice of one option per fragment."""
    out: list[dict] = [{}]
    for name, options in fragments.items():
        out = [dict(c, **{name: o}) for c in out for o in options]
    return out


def _fill_with(text, locale, fragments, combo) -> str:
    def one(m):
        base, _, attr = m.group(1).partition(".")
        if base not in fragments:
            return m.group(0)
        part = combo[base].get("detail" if attr == "detail" else "text") or {}
        return part.get(locale, part.get("en", ""))

    return VARIABLE.sub(one, text)


def _strings(data, path):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(value, path + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _strings(value, path + (i,))
    elif isinstance(data, str) and ("{{" in data or "}}" in data):
        if path and path[0] in (
            "rules",
            "suggestions",
            "links",
            "suggestion_policies",
            "fragments",
        ):
            yield path, data


def _split(var):
    base, _, attr = var.partition(".")
    return base, attr or None


def _variable_problem(c, var, fragments=None) -> str | None:
    base, attr = _split(var)
    if fragments and base in fragments:
        if attr is None or fragments[base] is None:
            return None
        if attr == "detail":
            lacking = [i + 1 for i, o in enumerate(fragments[base]) if "detail" not in o]
            if not lacking:
                return None
            return (
                f"{{{{{var}}}}}: option(s) {', '.join(map(str, lacking))} of fragment "
                f"{base!r} have no 'detail'"
            )
        return f"fragment {base!r} has no attribute {attr!r} in {{{{{var}}}}} (text or detail)"
    if base in c.facts:
        return (
            None
            if attr in FACT_ATTRS
            else f"fact {base!r} has no attribute {attr!r} in {{{{{var}}}}}"
        )
    if base in c.params:
        return (
            None
            if attr in PARAM_ATTRS
            else f"parameter {base!r} has no attribute {attr!r} in {{{{{var}}}}}"
        )
    if base in ("profile", "ct_cutoffs") and attr is None:
        return None
    if base == "context" and attr in CONTEXT_ATTRS:
        return None
    if base == "finding" and attr in FINDING_ATTRS:
        return None
    return f"undefined template variable {{{{{var}}}}}"


def _longest(c, var, locale) -> float:
    base, attr = _split(var)
    if base in c.facts:
        fact = c.facts[base]
        if attr == "date":
            return DATE_LENGTH
        if attr == "unit":
            return len(unit_display(fact.unit))
        if attr == "label":
            return len(fact.label.get(locale, base))
        if fact.type == "date":
            return DATE_LENGTH
        if fact.type != "quantity" or attr == "reference":
            return UNBOUNDED
        lower = [
            x for x in (fact.plausible.get("min"), fact.plausible.get("above")) if x is not None
        ]
        upper = [
            x for x in (fact.plausible.get("max"), fact.plausible.get("below")) if x is not None
        ]
        limits = (lower or [-ASSUMED_MAGNITUDE]) + (upper or [ASSUMED_MAGNITUDE])
        number = max(len(format_number(x, fact.precision)) for x in limits)
        return number + (0 if attr == "value" else _unit_len(fact.unit))
    if base in c.params:
        param = c.params[base]
        if attr == "source":
            refs = [
                c.defs["references"][s].data for s in _sources(param) if s in c.defs["references"]
            ]
            return max((len(r.get("short") or r["citation"]) for r in refs), default=0)
        if attr == "unit":
            return len(unit_display(param.unit))
        number = max((len(format_number(v, None)) for v in param.all_values()), default=0)
        return number + (0 if attr == "value" else _unit_len(param.unit))
    if base in ("profile", "ct_cutoffs"):
        section = "profiles" if base == "profile" else "ct_cutoff_sets"
        return max(
            (len(d.data["title"].get(locale, "")) for d in c.defs[section].values()), default=0
        )
    if base == "finding":
        if attr == "display":
            return max(len(v) for v in FINDINGS.values())
        return max(len(k) for k in FINDINGS)
    return UNBOUNDED


def _unit_len(unit) -> int:
    shown = unit_display(unit)
    return len(shown) + 1 if shown else 0


def _sources(param):
    specs = [param.spec] if param.selector is None else list(param.spec[param.selector].values())
    return [s["source"] for s in specs if "source" in s]
