"""`rules docs`: a deterministic Markdown catalogue of rules, thresholds, units and sources."""

from __future__ import annotations

from .conditions import describe
from .units import display


def rules_markdown(ruleset, locale: str = "en") -> str:
    out = [f"# Rule catalogue — {ruleset.version}", ""]
    out += [
        "## Rules",
        "",
        "| rule | finding | hooks | profiles | condition | source |",
        "|---|---|---|---|---|---|",
    ]
    for rule in sorted(ruleset.rules, key=lambda r: r.id):
        profiles = ", ".join(sorted(rule.profiles or [])) or "all"
        if rule.ct_cutoffs:
            profiles += "; CT: " + ", ".join(sorted(rule.ct_cutoffs))
        source = ruleset.short_citation(rule.card.source_reference) or _t(
            rule.card.source_label, locale
        )
        out.append(
            f"| `{rule.id}` | {rule.finding} | {', '.join(sorted(rule.hooks))} | {profiles} | "
            f"{_cell(describe(rule.when_raw))} | {_cell(source)} |"
        )
    out += [
        "",
        "## Thresholds",
        "",
        "| parameter | profile / CT set | sex | value | unit | source |",
        "|---|---|---|---|---|---|",
    ]
    for name in sorted(ruleset.params):
        p = ruleset.params[name]
        specs = [("—", p.spec)] if p.selector is None else sorted(p.spec[p.selector].items())
        for key, spec in specs:
            cite = ruleset.citation(spec.get("source")) or spec.get("source", "")
            for sex, value in _values(spec):
                out.append(
                    f"| `{name}` | {key} | {sex} | {value} | {display(p.unit) or p.unit} | {_cell(cite)} |"
                )
    out += [
        "",
        "## Facts",
        "",
        "| fact | from | codes | select | window (days) | unit | plausible |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sorted(ruleset.facts):
        f = ruleset.facts[name]
        if f.kind == "derived":
            out.append(
                f"| `{name}` | = `{f.derive_text}` | | | | {display(f.unit)} | {_limits(f.plausible)} |"
            )
        else:
            codes = f.valueset.name if f.valueset else ""
            window = "" if f.within is None else f.within
            out.append(
                f"| `{name}` | {f.resource_type} ({f.source}) | {codes} | {f.select} | {window} | "
                f"{display(f.unit)} | {_limits(f.plausible)} |"
            )
    out += ["", "## References", ""]
    for ref in sorted(ruleset.references):
        out.append(f"- **{ref}**: {ruleset.references[ref]['citation']}")
    return "\n".join(out) + "\n"


def _values(spec):
    if "value" in spec:
        yield "any", f"{spec['value']:g}"
        return
    for sex in ("male", "female"):
        value = spec[sex]
        if isinstance(value, dict):
            bands = []
            for band in value["bands"]:
                bands.append(
                    f"{band['value']:g} if {value['by']} < {band['below']:g}"
                    if "below" in band
                    else f"{band['value']:g} otherwise"
                )
            yield sex, "; ".join(bands)
        else:
            yield sex, f"{value:g}"


def _limits(limits) -> str:
    parts = []
    for key, symbol in (("above", ">"), ("min", "≥"), ("below", "<"), ("max", "≤")):
        if key in limits:
            parts.append(f"{symbol} {limits[key]:g}")
    return ", ".join(parts)


def _t(text, locale) -> str:
    template = text.get(locale) or text.get("en")
    return template.text if template is not None else ""


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
