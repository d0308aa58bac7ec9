"""Findings become few CDS Hooks 2.0 cards, as the packs' card groups say; texts are filled here."""

from __future__ import annotations

import os
from itertools import accumulate

from . import provenance
from .catalog import OPEN_ORDER_STATUSES
from .render_values import format_date, format_number, format_quantity
from .templates import Template
from .valuesets import codings

SEVERITY = {"critical": 0, "warning": 1, "info": 2}
CHROME = {
    "en": {
        "measurement": "Measurement",
        "value": "Value",
        "date": "Date",
        "record": "Record",
        "cutoffs": "Cut-offs applied",
        "excluded": "Excluded as implausible or contradictory",
        "missing": "not available",
        "unavailable": "could not be retrieved",
        "pack": "Rule pack",
        "also": "Also",
    },
    "zh-CN": {
        "measurement": "测量",
        "value": "数值",
        "date": "日期",
        "record": "记录",
        "cutoffs": "采用的切点",
        "excluded": "因不合理或相互矛盾而排除",
        "missing": "无数据",
        "unavailable": "无法获取",
        "pack": "规则包",
        "also": "另见",
    },
}


def compose(rs, run, made, suppress):
    """Return (cards, sent) for the findings made, after removing suppressed findings/suggestions."""
    hidden_findings = suppress.findings if suppress else frozenset()
    hidden_suggestions = suppress.suggestions if suppress else frozenset()
    visible = {code: pair for code, pair in made.items() if code not in hidden_findings}
    members_list = []
    placed = set()
    for group in rs.groups:
        if group.hooks is not None and run.hook not in group.hooks:
            continue
        if visible.keys().isdisjoint(group.findings):  # (no member: nothing to place)
            continue
        members = [visible[c] for c in group.findings if c in visible and c not in placed]
        if members:
            placed.update(f.code for f, _ in members)
            members_list.append((members, group.selection_behavior))
    for code, pair in visible.items():
        if code not in placed:
            members_list.append(([pair], "any"))
    members_list.sort(
        key=lambda m: (
            min(SEVERITY[r.card.indicator] for _, r in m[0]),
            -max(r.priority for _, r in m[0]),
            min(r.order for _, r in m[0]),
        )
    )
    used: set[str] = set(hidden_suggestions)
    cards, sent = [], []
    for members, behavior in members_list:
        card, record = _card(rs, run, members, behavior, used)
        cards.append(card)
        sent.append(record)
    return cards, sent


def _card(rs, run, members, behavior, used):
    locale = run.settings.locale
    finding, rule = members[0]
    coding = rs.coding(finding.code, run.settings)
    local = provenance.local_cutoffs(rs, run, members)  # None with the bundled packs alone
    resolve = _resolver(rs, run, finding, coding, local)
    summary = _text(rule.card.summary, locale).render(resolve)
    if len(summary) > 139:
        summary = summary[:138] + "…"
    indicator = min((r.card.indicator for _, r in members), key=SEVERITY.get)
    source = {"label": _text(rule.card.source_label, locale).render(resolve)}
    if local is not None:
        source["label"] = provenance.source_label(rs, source["label"], local, locale)
    url = rule.card.source_url or rs.reference_url(rule.card.source_reference)
    if url:
        source["url"] = url
    if rule.card.source_icon:
        source["icon"] = rule.card.source_icon
    source["topic"] = coding
    card = {
        "uuid": new_uuid(),
        "summary": summary,
        "indicator": indicator,
        "detail": _detail(rs, run, members, locale, local),
        "source": source,
    }
    suggestions, keys = [], {}
    for _, r in members:
        for key in r.suggestions:
            if key in used:
                continue
            s = rs.suggestions[key]
            if s.unless_open_order is not None and _open_order(run, s.unless_open_order):
                continue
            used.add(key)
            rendered = _suggestion(rs, run, s, finding, coding)
            suggestions.append(rendered)
            keys[rendered["uuid"]] = key
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = behavior
    reasons = _unique(k for _, r in members for k in r.override_reasons)
    if reasons:
        card["overrideReasons"] = [_reason(rs.override_reasons[k], locale) for k in reasons]
    links = _unique(k for _, r in members for k in r.links)
    if links:
        card["links"] = [_link(rs.links[k], locale, resolve) for k in links]
    extension = {
        "org.sarcopenia-cds.findings": [
            {"code": rs.coding(f.code, run.settings), "evidence": f.evidence}
            if f.evidence
            else {"code": rs.coding(f.code, run.settings)}
            for f, _ in members
        ],
        "org.sarcopenia-cds.rule-pack": {"version": rs.version},
    }
    record = {
        "uuid": card["uuid"],
        "primary": finding.code,
        "findings": [f.code for f, _ in members],
        "suggestions": keys,
    }
    # suggestions are pruned as they are filled; the rest of the card is pruned here
    for key in list(card):
        if key != "suggestions":
            value = card[key]
            if value.__class__ is not str:
                value = _prune(value)
            if value is None or value == "" or value == [] or value == {}:
                del card[key]
            else:
                card[key] = value
    card["extension"] = extension  # evidence is built without empty values; no need to walk it
    return card, record


def new_uuid() -> str:
    """str(uuid.uuid4()) without building a UUID object: random bits, version 4, RFC 4122
    variant, written in groups of hex digits."""
    value = int.from_bytes(os.urandom(UUID_BITS // 8), "big")
    value = value & ~(0xC000 << 48) | 0x8000 << 48  # variant (as uuid.UUID does)
    value = value & ~(0xF000 << 64) | 4 << 76  # version 4
    text = f"{value:032x}"
    return "-".join([text[cut] for cut in UUID_CUTS])


UUID_BITS = 128
UUID_CUTS = tuple(  # a written UUID: its 32 hex digits in groups of 8-4-4-4-12
    slice(start, start + width)
    for start, width in zip(accumulate((0, 8, 4, 4, 4)), (8, 4, 4, 4, 12), strict=True)
)


def _unique(keys):
    seen, out = set(), []
    for k in keys:
        if k not in seen:
            seen.add(k)
            out.append(k)
    return out


def _text(text, locale) -> Template:
    return text.get(locale) or text.get("en") or next(iter(text.values()))


def _resolver(rs, run, finding, coding, local=None):
    locale = run.settings.locale

    def resolve(var: str) -> str:
        base, _, attr = var.partition(".")
        if base in rs.facts:
            return _fact_text(rs, run, base, attr, locale)
        if base in rs.params:
            p = run.param(base)
            if p is None:
                return CHROME.get(locale, CHROME["en"])["missing"]
            if attr == "value":
                return format_number(p.value, None)
            if attr == "unit":
                from .units import display

                return display(p.unit, locale)
            if attr == "source":
                return rs.short_citation(p.source, locale) or ""
            return format_quantity(p.value, p.unit, None, locale)
        if base == "profile":
            title = rs.profile_title(run.settings.profile, locale)
            return provenance.profile_title(title, locale) if local and local.profiles else title
        if base == "ct_cutoffs":
            title = rs.ct_title(run.ct_cutoffs, locale)
            return provenance.profile_title(title, locale) if local and local.ct_cutoffs else title
        if base == "context":
            return str(run.context.get(attr, ""))
        if base == "finding":
            if attr == "code":
                return finding.code
            return finding.display
        return ""

    return resolve


def _fact_text(rs, run, name, attr, locale) -> str:
    fact = rs.facts[name]
    fv = run.fact(name)
    if attr == "label":
        return fact.label.get(locale) or fact.label.get("en") or name
    if attr == "unit":
        from .units import display

        return display(fact.unit, locale)
    if fv is None or fv.item is None:
        return CHROME.get(locale, CHROME["en"])["missing"]
    item = fv.item
    if attr == "date":
        return format_date(item.date) if item.date else ""
    if attr == "reference":
        return item.reference or ""
    if fact.type == "quantity":
        if attr == "value":
            return format_number(item.value, fact.precision)
        return format_quantity(item.value, fact.unit, fact.precision, locale)
    if fact.type == "date":
        return format_date(item.value)
    return str(item.value)


def _detail(rs, run, members, locale, local=None) -> str:
    chrome = CHROME.get(locale, CHROME["en"])
    parts = []
    for index, (finding, rule) in enumerate(members):
        resolve = _resolver(rs, run, finding, None, local)
        text = _text(rule.card.detail, locale).render(resolve) if rule.card.detail else ""
        if index == 0:
            if text:
                parts.append(text)
        else:
            parts.append(f"**{finding.display}**" + (f": {text}" if text else ""))
    rows, cutoffs, excluded = [], [], []
    seen, seen_lines = set(), set()
    for finding, _ in members:
        for entry in finding.evidence:
            if "parameter" in entry:
                if "result" not in entry:  # the value it would apply to is missing
                    continue
                label = _fact_label(rs, entry["fact"], locale)
                cite = entry.get("source") and rs.short_citation(entry["source"], locale)
                if entry.get("local"):
                    cite = ", ".join(x for x in (cite, provenance.words(locale)["local"]) if x)
                line = f"{label} {entry['comparison']} {_unit(entry['unit'], locale)}".rstrip()
                line += f" ({cite})" if cite else ""
                if line not in seen_lines:
                    seen_lines.add(line)
                    cutoffs.append(line)
            elif entry.get("excluded"):
                line = f"{entry.get('resource', '')}: {entry.get('value', '')} {entry.get('unit', '')} — {entry['reason']}"
                if line not in seen_lines:
                    seen_lines.add(line)
                    excluded.append(line)
            elif "fact" in entry and entry["fact"] not in seen:
                seen.add(entry["fact"])
                rows.append(_row(rs, run, entry, locale, chrome))
    if rows:
        table = [
            f"| {chrome['measurement']} | {chrome['value']} | {chrome['date']} | {chrome['record']} |",
            "|---|---|---|---|",
        ] + rows
        parts.append("\n".join(table))
    if cutoffs:
        parts.append(f"{chrome['cutoffs']}: " + "; ".join(cutoffs) + ".")
    if excluded:
        parts.append(f"{chrome['excluded']}:\n" + "\n".join(f"- {e}" for e in excluded))
    parts.append(f"{chrome['pack']}: {rs.version}")
    return "\n\n".join(p for p in parts if p)


def _row(rs, run, entry, locale, chrome) -> str:
    label = _fact_label(rs, entry["fact"], locale)
    if entry.get("missing") or entry.get("unavailable"):
        value = chrome["unavailable" if entry.get("unavailable") else "missing"]
    elif "count" in entry:
        value = str(entry["count"])
    else:
        value = _fact_text(rs, run, entry["fact"], "", locale)
    record = entry.get("resource") or ", ".join(entry.get("resources", [])[:3])
    return f"| {_cell(label)} | {_cell(value)} | {entry.get('date', '')} | {_cell(record)} |"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fact_label(rs, name, locale) -> str:
    label = rs.facts[name].label
    return label.get(locale) or label.get("en") or name


def _unit(unit, locale="en") -> str:
    from .units import display

    return display(unit, locale)


def _open_order(run, valueset) -> bool:
    for resource in run.of_type("record", "ServiceRequest"):
        if resource.get("status") in OPEN_ORDER_STATUSES:
            if any(
                valueset.matches(s, c)
                for s, c in codings([resource.get("code")] if resource.get("code") else [])
            ):
                return True
    return False


def _suggestion(rs, run, s, finding, coding):
    locale = run.settings.locale
    resolve = _resolver(rs, run, finding, coding)
    label = s.label
    if s.label_without_data is not None and not all(run.has(n) for n in s.needs):
        label = s.label_without_data
    out = {"label": _text(label, locale).render(resolve), "uuid": new_uuid()}
    if s.is_recommended is not None:
        out["isRecommended"] = s.is_recommended
    actions = []
    for action in s.actions:
        rendered = {
            "type": action["type"],
            "description": _text(action["description"], locale).render(resolve),
        }
        if action["resource"] is not None:
            filler = action.get("fill") or compile_fill(action["resource"])
            resource = filler(resolve, locale, coding, _shows_missing(rs, run))
            if resource is _DROP:
                resource = {}
            if resource.get("resourceType") == "ServiceRequest":
                patient = run.context.get("patientId")
                if patient and "subject" not in resource:
                    resource["subject"] = {"reference": f"Patient/{patient}"}
                if "reasonCode" not in resource:
                    resource["reasonCode"] = [{"coding": [coding], "text": finding.display}]
            rendered["resource"] = resource
        if action.get("resource_id"):
            rendered["resourceId"] = Template(action["resource_id"]).render(resolve)
        actions.append(rendered)
    if actions:
        out["actions"] = [
            {k: v for k, v in a.items() if not (v is None or v == "" or v == {})} for a in actions
        ]
    return {k: v for k, v in out.items() if not (v is None or v == "")}


def _shows_missing(rs, run):
    """A test: does a template show the value of a fact that has none?"""

    def missing(template) -> bool:
        for var in template.variables:
            base, _, attr = var.partition(".")
            if base in rs.facts and attr not in ("label", "unit") and not run.has(base):
                return True
        return False

    return missing


_DROP = object()


def compile_fill(tree):
    """A resource template compiled to fn(resolve, locale, coding, missing) -> filled copy.

    Same result as _fill: fresh dicts and lists, empty values dropped, a fragment showing a
    missing value replaced by its `otherwise` or dropped; strings without variables are shared."""
    if isinstance(tree, Template):
        if not tree.variables:
            text = tree.text
            return (lambda resolve, locale, coding, missing: text) if text else _dropped
        if tree.text.strip() == "{{finding.coding}}":
            return lambda resolve, locale, coding, missing: dict(coding)

        def render(resolve, locale, coding, missing):
            if missing(tree):
                return _DROP
            return tree.render(resolve) or _DROP

        return render
    if isinstance(tree, tuple) and tree and tree[0] == "$text":
        texts, otherwise = tree[1], tree[2]

        def text(resolve, locale, coding, missing):
            template = _text(texts, locale)
            if missing(template):
                if otherwise is None:
                    return _DROP
                return _text(otherwise, locale).render(resolve) or _DROP
            return template.render(resolve) or _DROP

        return text
    if isinstance(tree, dict):
        parts = [(k, compile_fill(v)) for k, v in tree.items()]

        def fill_dict(resolve, locale, coding, missing):
            out = {}
            for k, fn in parts:
                v = fn(resolve, locale, coding, missing)
                if v is not _DROP:
                    out[k] = v
            return out or _DROP

        return fill_dict
    if isinstance(tree, list):
        parts = [compile_fill(v) for v in tree]

        def fill_list(resolve, locale, coding, missing):
            out = []
            for fn in parts:
                v = fn(resolve, locale, coding, missing)
                if v is not _DROP:
                    out.append(v)
            return out or _DROP

        return fill_list
    if tree is None:
        return _dropped
    return lambda resolve, locale, coding, missing: tree


def _dropped(resolve, locale, coding, missing):
    return _DROP


def _reason(reason, locale):
    display = (
        reason.display.get(locale)
        or reason.display.get("en")
        or next(iter(reason.display.values()))
    )
    return {"code": reason.code, "system": reason.system, "display": display}


def _link(link, locale, resolve):
    out = {
        "label": _text(link.label, locale).render(resolve),
        "url": link.url.render(resolve),
        "type": link.type,
    }
    if link.app_context is not None:
        out["appContext"] = link.app_context.render(resolve)
    return out


def _prune(value):
    """Drop None, empty strings, lists and objects anywhere (CDS Hooks forbids null/empty values)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            kind = v.__class__
            if kind is str:  # (the usual cases first, each without a call or a comparison)
                if v:
                    out[k] = v
                continue
            if kind is dict or kind is list:
                v = _prune(v)
                if v:
                    out[k] = v
                continue
            v = _prune(v)
            if not (v is None or v == "" or v == [] or v == {}):
                out[k] = v
        return out
    if isinstance(value, list):
        kept = []
        for v in value:
            kind = v.__class__
            if kind is str:
                if v:
                    kept.append(v)
                continue
            if kind is dict or kind is list:
                v = _prune(v)
                if v:
                    kept.append(v)
                continue
            v = _prune(v)
            if not (v is None or v == "" or v == [] or v == {}):
                kept.append(v)
        return kept
    return value
