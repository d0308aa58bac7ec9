"""What the trend view reads from the loaded rule set: thresholds for a sex/profile/CT set, value sets,
plausibility limits, labels. Nothing clinical is written here; every number comes from the packs.

The engine has no public accessor for "the value of parameter P for this sex, profile, CT cut-off set
and BMI" yet; `threshold()` uses `RuleSet.parameter_value(...)` when the engine offers it and
otherwise resolves `RuleSet.params[name].spec_for(profile, ct_cutoffs)` itself (same band rule as the
engine: the first band whose `below` is greater than the unrounded fact value)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Threshold:
    """One parameter value as it applies to a patient."""

    name: str
    value: float
    unit: str
    label: str
    source: str | None  # short citation
    band: str | None = None  # e.g. "bmi ≥ 25"
    note: str | None = None  # the pack's note on this value ("grip < 27 / < 16 kg")


def _text(value: Any, locale: str) -> str | None:
    if isinstance(value, dict):
        chosen = value.get(locale) or value.get("en")
        return chosen if isinstance(chosen, str) else (str(chosen) if chosen is not None else None)
    return value if isinstance(value, str) else None


def short_citation(ruleset: Any, ref: str | None) -> str | None:
    if ref is None:
        return None
    if hasattr(ruleset, "short_citation"):
        try:
            return ruleset.short_citation(ref)
        except Exception:  # noqa: BLE001 - a display nicety only
            pass
    entry = (getattr(ruleset, "references", {}) or {}).get(ref) or {}
    return entry.get("short") or ref


def threshold(
    ruleset: Any,
    name: str,
    *,
    sex: str | None,
    profile: str,
    ct_cutoffs: str,
    facts: dict[str, float] | None = None,
    locale: str = "en",
) -> Threshold | None:
    """The value of parameter `name` for this patient, or None when the active set has none."""
    params = getattr(ruleset, "params", None) or getattr(ruleset, "parameters", None) or {}
    param = params.get(name)
    if param is None:
        return None
    label = _text(getattr(param, "label", None), locale) or name.replace("_", " ")
    accessor = getattr(ruleset, "parameter_value", None)
    if callable(accessor):  # the engine's own accessor, when it exists
        found = accessor(name, sex=sex, profile=profile, ct_cutoffs=ct_cutoffs, facts=facts or {})
        if found is None:
            return None
        return Threshold(
            name, float(found.value), found.unit, label, short_citation(ruleset, found.source)
        )
    spec = param.spec_for(profile, ct_cutoffs)
    if spec is None:
        return None
    band = None
    if "value" in spec:
        value = spec["value"]
    else:
        chosen = spec.get(sex) if sex in ("male", "female") else None
        if isinstance(chosen, dict):
            by = chosen["by"]
            fact_value = (facts or {}).get(by)
            if fact_value is None:
                return None
            value = None
            for item in chosen["bands"]:
                if "below" not in item or fact_value < item["below"]:
                    value = item["value"]
                    by_label = short_label(fact_label(ruleset, by, locale) or by)
                    band = (
                        f"{by_label} < {item['below']:g}"
                        if "below" in item
                        else f"{by_label} ≥ {chosen['bands'][-2]['below']:g}"
                    )
                    break
        else:
            value = chosen
    if value is None:
        return None
    return Threshold(
        name,
        float(value),
        param.unit,
        label,
        short_citation(ruleset, spec.get("source")),
        band,
        spec.get("note"),
    )


def short_label(label: str) -> str:
    """A fact label without its explanation in brackets: "BMI (current weight / height²)" → "BMI"."""
    for bracket in (" (", "（"):
        if bracket in label:
            return label.split(bracket, 1)[0]
    return label


def value_set_matches(
    ruleset: Any, name: str, codings: list[tuple[str | None, str | None]]
) -> bool:
    """True if any (system, code) is in the rule set's value set `name` (False if there is no such set)."""
    value_set = (getattr(ruleset, "value_sets", None) or {}).get(name)
    if value_set is None:
        return False
    return any(value_set.matches(system, code) for system, code in codings)


def plausible_limits(ruleset: Any, fact: str) -> dict[str, float]:
    """The fact's plausibility limits ({min,max,above,below}) from the packs, or {}."""
    found = (getattr(ruleset, "facts", None) or {}).get(fact)
    return dict(getattr(found, "plausible", None) or {})


def is_plausible(value: float, limits: dict[str, float]) -> bool:
    if "min" in limits and value < limits["min"]:
        return False
    if "max" in limits and value > limits["max"]:
        return False
    if "above" in limits and value <= limits["above"]:
        return False
    if "below" in limits and value >= limits["below"]:
        return False
    return True


def fact_unit(ruleset: Any, fact: str) -> str | None:
    found = (getattr(ruleset, "facts", None) or {}).get(fact)
    return getattr(found, "unit", None)


def fact_label(ruleset: Any, fact: str, locale: str = "en") -> str | None:
    found = (getattr(ruleset, "facts", None) or {}).get(fact)
    return _text(getattr(found, "label", None), locale) if found is not None else None


def title_of(ruleset: Any, kind: str, key: str, locale: str = "en") -> str:
    """The display title of a profile ('profiles') or CT cut-off set ('ct_sets')."""
    method = {"profiles": "profile_title", "ct_sets": "ct_title"}[kind]
    if hasattr(ruleset, method):
        try:
            return getattr(ruleset, method)(key, locale)
        except Exception:  # noqa: BLE001 - display only
            pass
    entry = (getattr(ruleset, kind, None) or {}).get(key) or {}
    return _text(entry.get("title"), locale) or key


#: the packs' comparison operators, as the cut-off labels write them
SYMBOLS = {"lt": "<", "le": "≤", "gt": ">", "ge": "≥"}


def _comparisons_in(node: Any, conditions: dict[str, Any], seen: set[str], found: list[tuple[str, str, str]],
                    profile: str | None = None) -> None:
    """Every (fact, operator, parameter) of a condition tree for this profile, named conditions followed once."""
    if isinstance(node, list):
        for item in node:
            _comparisons_in(item, conditions, seen, found, profile)
        return
    if not isinstance(node, dict):
        return
    fact = node.get("fact")
    for op in SYMBOLS:
        if isinstance(fact, str) and isinstance(node.get(op), str):
            found.append((fact, op, node[op]))
    name = node.get("condition")
    if isinstance(name, str) and name not in seen:
        seen.add(name)
        _comparisons_in(conditions.get(name), conditions, seen, found, profile)
    if profile and isinstance(node.get("all"), list) and any(
            isinstance(item, dict) and isinstance(item.get("profile"), list) and profile not in item["profile"]
            for item in node["all"]):
        return  # a branch of another profile
    for key in ("all", "any", "not"):
        if key in node:
            _comparisons_in(node[key], conditions, seen, found, profile)


def cutoff_meaning(ruleset: Any, parameter: str, locale: str = "en",
                   profile: str | None = None) -> tuple[str | None, str | None]:
    """How the rules use a parameter: (the comparison symbol, the finding's display when one finding
    alone compares against it), from the rule packs' conditions; (None, None) when no rule does."""
    conditions = getattr(ruleset, "_conditions_raw", None) or {}
    symbols: set[str] = set()
    findings: set[str] = set()
    for rule in getattr(ruleset, "rules", ()) or ():
        if profile and getattr(rule, "profiles", None) and profile not in rule.profiles:
            continue
        found: list[tuple[str, str, str]] = []
        _comparisons_in(getattr(rule, "when_raw", None), conditions, set(), found, profile)
        hits = [op for _, op, param in found if param == parameter]
        if hits:
            symbols.update(SYMBOLS[op] for op in hits)
            findings.add(getattr(rule, "finding", None))
    symbol = symbols.pop() if len(symbols) == 1 else None
    finding = None
    if len(findings) == 1:
        code = findings.pop()
        texts = (getattr(ruleset, "finding_texts", None) or {}).get(code)
        finding = _text(texts, locale) if texts else None
    return symbol, finding


def excluded_by_rules(ruleset: Any, resources: list[dict[str, Any]], *, now: Any, profile: str,
                      ct_cutoffs: str, locale: str = "en") -> dict[str, str]:
    """Resource reference → the engine's reason, for every value the rule engine sets aside
    (implausible, or contradicting another value) when it reads the patient's facts: what the
    cards leave out is what the trend marks as excluded."""
    from cds_service.engine import EngineSettings
    from cds_service.engine.facts import Run

    settings = EngineSettings(profile=profile, ct_cutoffs=ct_cutoffs, locale=locale)
    run = Run(ruleset, resources, [], "patient-view", {}, now, settings, False)
    for name in getattr(ruleset, "facts", {}) or {}:
        try:
            run.fact(name)
        except Exception:  # noqa: BLE001 - a fact that needs what a trend page has not (orders)
            continue
    reasons: dict[str, str] = {}
    for entry in run.data_quality:
        if entry.get("resource") and entry.get("reason"):
            reasons.setdefault(entry["resource"], entry["reason"])
    return reasons
