"""Overrides cannot fail silently: a name an override pack adds must be read by something."""

from __future__ import annotations

import re
from .diagnostics import REFERENCE_ERROR, UNUSED_ERROR, close_names

# sections where a new name that nothing reads does nothing at all (a typo of an existing name,
# most likely). References, code systems, profiles, CT sets and finding texts are exempt: an
# unused one changes nothing, and a misspelled *use* of one is already an unknown-name error.
CHECKED = {
    "value_sets": "value set",
    "parameters": "parameter",
    "suggestions": "suggestion",
    "links": "link",
    "override_reasons": "override reason",
    "facts": "fact",
    "conditions": "condition",
}
_SECTIONS = set(CHECKED) | {
    "references", "code_systems", "profiles", "ct_cutoff_sets", "findings",
}
_VARIABLE = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_override_names(c) -> None:
    """Every name first defined by an override pack (one loaded after the pack it builds on) in
    a CHECKED section must be read somewhere in the loaded packs; otherwise it is reported with
    the nearest existing names ('did you mean'), as a reference error when one is close."""
    if not c.new_in_override:
        return
    reads = names_read(c.sources)
    for (section, name), d in sorted(c.new_in_override.items(), key=lambda kv: kv[0]):
        what = CHECKED.get(section)
        if what is None or name in reads:
            continue
        if section == "value_sets":
            existing = [n for n, defs in c.value_set_defs.items() if any(x.pack != d.pack for x in defs)]
        else:
            existing = [n for n, x in c.defs[section].items() if x.pack != d.pack]
            existing += [k for (s, k), x in c.replaced.items() if s == section]
        close = close_names(name, existing)
        if close:
            message = (
                f"unknown {what} {name!r}; did you mean "
                + " or ".join(repr(n) for n in close)
                + f"? (no pack that {d.pack!r} builds on defines {name!r}, and nothing reads it)"
            )
            c.out.add(d.src, d.path, REFERENCE_ERROR, message, value=False)
        else:
            message = (
                f"{what} {name!r} is new in pack {d.pack!r} and nothing reads it: no rule, fact, "
                "condition, suggestion or text uses it, so it would change nothing"
            )
            c.out.add(d.src, d.path, UNUSED_ERROR, message, value=False)


def names_read(sources) -> set[str]:
    """Every name that the loaded files could refer to: string values and mapping keys (outside
    the definitions' own names), template variables and identifiers in expressions."""
    out: set[str] = set()
    for src in sources:
        for key, value in (src.data or {}).items():
            if key == "pack":
                continue
            if key in _SECTIONS and isinstance(value, dict):
                for entry in value.values():  # the entry's own name is not a use of it
                    _walk(entry, out)
            else:
                _walk(value, out)
    return out


def _walk(node, out: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            out.add(str(key))
            _walk(value, out)
    elif isinstance(node, list):
        for value in node:
            _walk(value, out)
    elif isinstance(node, str):
        out.add(node)
        for var in _VARIABLE.findall(node):
            out.add(var.split(".")[0].strip())
        if any(ch in node for ch in "()+-*/<>=") or " " not in node:
            out.update(_IDENTIFIER.findall(node))
