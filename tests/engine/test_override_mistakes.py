"""Mistakes a hospital makes in an override file: each is refused at load, with its exact message
at its file:line, and 'did you mean' where an existing name is close (issue 13, item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.engine import PackErrors, load_ruleset
from tests.support.hospital import HOSPITAL_X

# The worked example's override (docs/writing-and-testing-a-rule.md), which loads cleanly.
GOOD = HOSPITAL_X

RULE = """\
rules:
  - id: {rule_id}
    override: true
    finding: sarcopenia-screening-due
    hooks: [patient-view]
    when: {{condition: active_cancer}}
    card:
      indicator: info
      summary: {{en: "Sarcopenia screening due (Hospital X)"}}
      source: {{label: {{en: Hospital X NC-12}}, reference: hospital-x-nc12}}
"""


def edit(old: str, new: str, text: str = GOOD) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


F = "hospital-x.yaml"
MISTAKES = [
    (
        "parameter name typo",
        edit("  grip_low:\n", "  grip_lo:\n"),
        [f"{F}:12:3: rule_reference_error: $.parameters.grip_lo: unknown parameter 'grip_lo'; did you "
         "mean 'grip_low'? (no pack that 'hospital-x' builds on defines 'grip_lo', and nothing reads it)"],
    ),
    (
        "value set name typo",
        edit("  grip-strength:\n", "  grip-strenght:\n"),
        [f"{F}:9:3: rule_reference_error: $.value_sets.grip-strenght: unknown value set 'grip-strenght'; "
         "did you mean 'grip-strength'? (no pack that 'hospital-x' builds on defines 'grip-strenght', "
         "and nothing reads it)"],
    ),
    (
        "suggestion name typo",
        GOOD + "suggestions:\n  dietitian-referal:\n    label: {en: Refer to the Hospital X dietitian}\n",
        [f"{F}:18:3: rule_reference_error: $.suggestions.dietitian-referal: unknown suggestion "
         "'dietitian-referal'; did you mean 'dietitian-referral'? (no pack that 'hospital-x' builds on "
         "defines 'dietitian-referal', and nothing reads it)"],
    ),
    (
        "link name typo",
        GOOD + "links:\n  ewgsop2-guidline: {label: {en: EWGSOP2 at Hospital X}, url: "
        "'https://intranet.hospital-x.example/ewgsop2', type: absolute}\n",
        [f"{F}:18:3: rule_reference_error: $.links.ewgsop2-guidline: unknown link 'ewgsop2-guidline'; "
         "did you mean 'ewgsop2-guideline'? (no pack that 'hospital-x' builds on defines "
         "'ewgsop2-guidline', and nothing reads it)"],
    ),
    (
        "override reason name typo",
        GOOD + "override_reasons:\n  patient-decline: {code: patient-declined, display: {en: Declined}}\n",
        [f"{F}:18:3: rule_reference_error: $.override_reasons.patient-decline: unknown override reason "
         "'patient-decline'; did you mean 'patient-declined'? (no pack that 'hospital-x' builds on "
         "defines 'patient-decline', and nothing reads it)"],
    ),
    (
        "fact name typo",
        edit("locales: [en]}", "locales: [en], extends: [sarcopenia-core]}")
        + "facts:\n  grip_maxx: {from: Observation, codes: grip-strength, unit: kg, within_days: 180}\n",
        [f"{F}:18:3: rule_reference_error: $.facts.grip_maxx: unknown fact 'grip_maxx'; did you mean "
         "'grip_max'? (no pack that 'hospital-x' builds on defines 'grip_maxx', and nothing reads it)"],
    ),
    (
        "named condition typo",
        GOOD + "conditions:\n  activ_cancer: {profile: [ewgsop2]}\n",
        [f"{F}:18:3: rule_reference_error: $.conditions.activ_cancer: unknown condition 'activ_cancer'; "
         "did you mean 'active_cancer'? (no pack that 'hospital-x' builds on defines 'activ_cancer', "
         "and nothing reads it)"],
    ),
    (
        "finding code typo in a display",
        GOOD + "findings:\n  probable-sarcopnia: {display: {en: Probable sarcopenia (Hospital X)}}\n",
        [f"{F}:18:3: rule_reference_error: $.findings.probable-sarcopnia: finding 'probable-sarcopnia' "
         "is not in findings.md; did you mean 'probable-sarcopenia'?"],
    ),
    (
        "reference name typo in a source",
        edit("source: hospital-x-nc12}", "source: hospital-x-nc21}"),
        [f"{F}:15:47: rule_reference_error: $.parameters.grip_low.profiles.ewgsop2.source: unknown "
         "reference 'hospital-x-nc21'; did you mean 'hospital-x-nc12'?"],
    ),
    (
        "profile name typo",
        edit("      ewgsop2: {male: 30", "      ewgsop: {male: 30"),
        [f"{F}:15:7: rule_reference_error: $.parameters.grip_low.profiles.ewgsop: unknown profile "
         "'ewgsop'; did you mean 'ewgsop2'?"],
    ),
    (
        "code system alias typo",
        edit("{system: hx-lab, code", "{system: hx-lb, code"),
        [f"{F}:10:16: rule_reference_error: $.value_sets.grip-strength[0].system: unknown code system "
         "'hx-lb'; did you mean 'hx-lab'? (not an alias in code_systems, not a URI)"],
    ),
    (
        "unit lb, not UCUM",
        edit("    unit: kg\n", "    unit: lb\n"),
        [f"{F}:13:11: rule_unit_error: $.parameters.grip_low.unit: 'lb' is not a UCUM unit; did you "
         "mean '[lb_av]'?"],
    ),
    (
        "unit kilograms, not UCUM",
        edit("    unit: kg\n", "    unit: kilograms\n"),
        [f"{F}:13:11: rule_unit_error: $.parameters.grip_low.unit: 'kilograms' is not a UCUM unit; did "
         "you mean 'kg'?"],
    ),
    (
        "threshold written as text",
        edit("{male: 30, female: 18, source: hospital-x-nc12}", '{male: "30 kg", female: 18, source: hospital-x-nc12}'),
        [f"{F}:15:23: rule_schema_error: $.parameters.grip_low.profiles.ewgsop2.male: '30 kg' is text, "
         "but a number is expected here: write the number alone (the unit goes in `unit`)"],
    ),
    (
        "tab indentation",
        edit("    unit: kg\n", "\tunit: kg\n"),
        [f"{F}:13:1: rule_yaml_error: $: tabs are not allowed for indentation in YAML; use spaces"],
    ),
    (
        "wrong indentation",
        edit("      awgs2019:", "     awgs2019:"),
        [f"{F}:16:6: rule_yaml_error: $: wrong indentation: this line is indented 5 spaces, which lines "
         "up with nothing above it (lines above are indented 6 (line 15), 4 (line 14), 2 (line 12)); "
         "keys of one mapping and items of one list must start in the same column"],
    ),
    (
        "unused value set",
        edit(
            "    - {system: hx-lab, code: GRIPMAX}\n",
            "    - {system: hx-lab, code: GRIPMAX}\n  hx-ward-dynamometers:\n    - {system: hx-lab, code: JAMAR}\n",
        ),
        [f"{F}:11:3: rule_unused_error: $.value_sets.hx-ward-dynamometers: value set "
         "'hx-ward-dynamometers' is new in pack 'hospital-x' and nothing reads it: no rule, fact, "
         "condition, suggestion or text uses it, so it would change nothing"],
    ),
    (
        "unused parameter",
        GOOD + "  hx_audit_interval: {unit: d, value: 365, source: hospital-x-nc12}\n",
        [f"{F}:17:3: rule_unused_error: $.parameters.hx_audit_interval: parameter "
         "'hx_audit_interval' is new in pack 'hospital-x' and nothing reads it: no rule, fact, "
         "condition, suggestion or text uses it, so it would change nothing"],
    ),
    (
        "override of a missing rule",
        GOOD + RULE.format(rule_id="screening-dues"),
        [f"{F}:18:9: rule_reference_error: $.rules[0].id: unknown rule 'screening-dues'; did you mean "
         "'screening-due'?: `override: true` replaces a rule of the packs this one builds on"],
    ),
    (
        "extends a pack that is not loaded",
        edit("locales: [en]}", "locales: [en], extends: [sarcopenia-cor]}"),
        [f"{F}:1:108: rule_reference_error: $.pack.extends[0]: unknown pack 'sarcopenia-cor'; did you "
         "mean 'sarcopenia-core'? (packs loaded before this file: sarcopenia-core)"],
    ),
]


def test_the_good_override_loads_on_top_of_the_bundled_packs(tmp_path):
    (tmp_path / F).write_text(GOOD, encoding="utf-8")
    rs = load_ruleset([tmp_path / F])  # the bundled packs come first, implicitly
    assert rs.version == "sarcopenia-core@1.0.0+hospital-x@2026.1.0"
    assert rs.params["grip_low"].spec["profiles"]["ewgsop2"]["male"] == 30


@pytest.mark.parametrize("text, expected", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_an_override_mistake_is_refused_with_its_message_and_location(tmp_path, text, expected):
    path = tmp_path / F
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PackErrors) as info:
        load_ruleset([path])
    got = [str(e).replace(str(tmp_path) + "/", "") for e in info.value.errors]
    assert got == expected


def test_all_mistakes_of_one_file_are_reported_at_once_sorted_by_line(tmp_path):
    text = edit("  grip_low:\n", "  grip_lo:\n")
    text = edit("  grip-strength:\n", "  grip-strenght:\n", text)
    text += RULE.format(rule_id="screening-dues")
    path = tmp_path / F
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PackErrors) as info:
        load_ruleset([path])
    assert [(Path(e.file).name, e.line, e.code) for e in info.value.errors] == [
        (F, 9, "rule_reference_error"),
        (F, 12, "rule_reference_error"),
        (F, 18, "rule_reference_error"),
    ]


def test_a_rule_override_replaces_the_bundled_rule_in_place(tmp_path):
    path = tmp_path / F
    path.write_text(GOOD + RULE.format(rule_id="screening-due"), encoding="utf-8")
    rs = load_ruleset([path])
    rule = next(r for r in rs.rules if r.id == "screening-due")
    assert rule.pack == "hospital-x"
    assert [r.id for r in rs.rules].count("screening-due") == 1


def test_the_same_rule_id_without_override_says_how_to_replace_it(tmp_path):
    path = tmp_path / F
    text = GOOD + RULE.format(rule_id="screening-due").replace("    override: true\n", "")
    # a file with rules of its own says which packs it builds on
    path.write_text(edit("locales: [en]}", "locales: [en], extends: [sarcopenia-core]}", text), encoding="utf-8")
    with pytest.raises(PackErrors) as info:
        load_ruleset([path])
    (error,) = info.value.errors
    assert error.code == "rule_duplicate_error" and error.line == 18
    assert error.message.endswith("(to replace it from an override pack, add `override: true` to this rule)")
