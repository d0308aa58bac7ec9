"""A readable account of one evaluation: facts, every condition's result, findings and cards."""

from __future__ import annotations


def bundle_resources(data) -> tuple[list[dict], list[dict], dict]:
    """Resources from a FHIR Bundle, a list, or {"resources": [...], "orders": [...], "context": {}}."""
    if isinstance(data, list):
        return [r for r in data if isinstance(r, dict)], [], {}
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        return (
            [e["resource"] for e in data.get("entry") or [] if isinstance(e.get("resource"), dict)],
            [],
            {},
        )
    if isinstance(data, dict) and "resources" in data:
        return (
            list(data["resources"]),
            list(data.get("orders") or []),
            dict(data.get("context") or {}),
        )
    if isinstance(data, dict) and "resourceType" in data:
        return [data], [], {}
    raise ValueError("expected a FHIR Bundle, a list of resources, or {resources, orders, context}")


def explain_text(ruleset, evaluation, hook, settings) -> str:
    lines = [
        f"Rule set {ruleset.version}; hook {hook}; profile {settings.profile}; "
        f"CT cut-offs {settings.ct_cutoffs}; locale {settings.locale}",
        "",
    ]
    lines.append("Rules:")
    current = None
    for step in evaluation.trace or []:
        if "condition" in step:
            if step["rule"] != current:
                current = step["rule"]
                lines.append(f"  {current}:")
            extra = ""
            if "left" in step:
                extra = f"  [{_n(step['left'])} vs {_n(step['right'])}]"
            lines.append(f"      {_mark(step['result'])} {step['condition']}{extra}")
        else:
            why = f" (skipped: {step['skipped']})" if step.get("skipped") else ""
            lines.append(f"  {_mark(step['result'])} rule {step['rule']} → {step['finding']}{why}")
            current = None
    lines.append("")
    lines.append("Findings:" if evaluation.findings else "Findings: none")
    for f in evaluation.findings:
        lines.append(f"  {f.code} ({f.display}) by rule {f.rule_id}")
        for e in f.evidence:
            lines.append("      " + _evidence(e))
    if evaluation.undetermined:
        lines.append("")
        lines.append("Undetermined (data unavailable): " + ", ".join(evaluation.undetermined))
    if evaluation.data_quality:
        lines.append("")
        lines.append("Data quality (excluded values):")
        for d in evaluation.data_quality:
            lines.append(
                f"  {d['fact']}: {d.get('resource')} {d.get('value')} {d.get('unit', '')}"
                f" — {d['reason']}"
            )
    lines.append("")
    lines.append(f"Cards: {len(evaluation.cards)}")
    for card in evaluation.cards:
        lines.append(f"  [{card['indicator']}] {card['summary']}")
        for s in card.get("suggestions", []):
            lines.append(f"      suggestion: {s['label']}")
    return "\n".join(lines) + "\n"


def _mark(result) -> str:
    return {True: "✓", False: "✗", None: "?"}[result]


def _n(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _evidence(e) -> str:
    if "parameter" in e:
        unit, source = e.get("unit", ""), e.get("source", "")
        if e.get("local"):  # an override's own cut-off: say which pack supplied it
            source = f"{source}, local cut-off from pack {e.get('pack')}"
        return f"threshold {e['fact']} {e['comparison']} {unit} ({source}) → {e.get('result')}"
    if "finding" in e:
        return f"finding {e['finding']}"
    if e.get("excluded"):
        return f"excluded {e.get('resource')}: {e.get('reason')}"
    if e.get("unavailable"):
        return f"{e['fact']}: unavailable"
    if e.get("missing"):
        return f"{e['fact']}: missing"
    if "count" in e:
        return f"{e['fact']}: {e['count']} ({', '.join(e.get('resources', []))})"
    value = _n(e.get("value"))
    unit, when, where = e.get("unit", ""), e.get("date", ""), e.get("resource", "")
    return f"{e['fact']}: {value} {unit} {when} {where}".rstrip()
