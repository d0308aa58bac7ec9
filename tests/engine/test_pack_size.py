"""The bundled pack stays readable: small, without repeated blocks, one rule per decision.

Targets of issue 13 (the pack was 7,133 lines, 96 near-identical rule copies): at most 2,500
non-blank lines in all, no file of 40 lines or more below 50 % distinct lines, and no two rules
whose `when` and card differ only by the name of a criterion (write a fragment instead).
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import yaml

from cds_service.engine.load import BUNDLED, pack_files

MAX_LINES = 2500
MIN_DISTINCT = 0.5
DISTINCT_FROM = 40  # files shorter than this are not measured
NAME_KEYS = ("condition", "fact", "exists", "missing", "finding", "parameter")
COMPARISONS = ("lt", "le", "gt", "ge", "eq", "ne")


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _masked(cond):
    """A condition with every name (condition, fact, parameter, finding) replaced by `_`."""
    if isinstance(cond, dict):
        out = {}
        for key, value in cond.items():
            if key in NAME_KEYS + COMPARISONS and isinstance(value, str):
                out[key] = "_"
            else:
                out[key] = _masked(value)
        return out
    if isinstance(cond, list):
        return [_masked(c) for c in cond]
    return cond


def _signature(rule: dict) -> str:
    """What two copies of one decision share: the finding, the `when` with names masked, and
    everything the card and its suggestions say except the summary (where the criterion is
    named)."""
    card = {k: v for k, v in rule["card"].items() if k != "summary"}
    keep = {
        k: rule.get(k)
        for k in ("finding", "hooks", "profiles", "ct_cutoffs", "priority", "fragments")
        + ("suggestions", "suggestion_policy", "links", "override_reasons", "evidence")
    }
    return json.dumps([keep, _masked(rule["when"]), card], sort_keys=True, ensure_ascii=False)


def copies(rules: list[dict]) -> list[tuple[str, str]]:
    """Pairs of rule ids whose `when` and card differ only by a criterion name."""
    by_sig: dict[str, list[str]] = {}
    for rule in rules:
        by_sig.setdefault(_signature(rule), []).append(rule["id"])
    return [pair for ids in by_sig.values() for pair in itertools.combinations(ids, 2)]


def _bundled_files() -> list[Path]:
    return pack_files([BUNDLED])


def _bundled_rules() -> list[dict]:
    rules = []
    for path in _bundled_files():
        rules.extend(yaml.safe_load(path.read_text(encoding="utf-8")).get("rules") or [])
    return rules


def test_the_bundled_pack_has_at_most_2500_lines():
    counts = {p.name: len(_lines(p)) for p in _bundled_files()}
    assert sum(counts.values()) <= MAX_LINES, counts


def test_no_bundled_file_is_mostly_repeated_lines():
    low = {}
    for path in _bundled_files():
        lines = _lines(path)
        if len(lines) >= DISTINCT_FROM and len(set(lines)) / len(lines) < MIN_DISTINCT:
            low[path.name] = round(len(set(lines)) / len(lines), 3)
    assert low == {}


def test_no_two_bundled_rules_differ_only_by_a_criterion_name():
    assert copies(_bundled_rules()) == []


def test_the_copy_check_finds_a_rule_copied_for_another_criterion():
    """The check above can fail: a rule copied with its strength test renamed is found."""
    rule = next(r for r in _bundled_rules() if r["id"] == "ewgsop2-severe-sarcopenia")
    copy_of = copy.deepcopy(rule)
    copy_of["id"] = "ewgsop2-severe-sarcopenia-chair-stand"
    copy_of["when"]["all"][1] = {"condition": "slow_chair_stand"}
    copy_of["card"]["summary"] = {"en": "Severe sarcopenia: chair stand {{chair_stand}}"}
    assert copies([rule, copy_of]) == [(rule["id"], copy_of["id"])]
    other = copy.deepcopy(copy_of)
    other["card"]["indicator"] = "info"  # a different decision: not a copy
    assert copies([rule, other]) == []


def test_the_old_pack_layout_would_fail_these_targets():
    """The measure itself: 96 variants such as the old ones are copies, and repeated lines."""
    rule = next(r for r in _bundled_rules() if r["id"] == "awgs2019-severe-sarcopenia")
    variants = []
    for n, name in enumerate(("low_grip", "slow_chair_stand")):
        v = copy.deepcopy(rule)
        v.pop("fragments")
        v["id"] = f"awgs2019-severe-sarcopenia-{n}"
        v["when"] = {"all": [*rule["when"]["all"], {"condition": name}]}
        variants.append(v)
    assert len(copies(variants)) == 1
    text = yaml.safe_dump({"rules": [copy.deepcopy(v) for v in variants * 5]}, allow_unicode=True)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert len(set(lines)) / len(lines) < MIN_DISTINCT
