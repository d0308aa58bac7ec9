"""Hospital IT outside a source checkout: `rules validate|test|diff` on an override alone, from an
empty working directory, take the bundled packs implicitly (issue 13, item 4)."""

from __future__ import annotations

import argparse
import io

import pytest

from cds_service.cli_rules import add_rules_commands, run_rules
from tests.support.hospital import HOSPITAL_X

HOSPITAL = "# Hospital X overrides of the bundled sarcopenia-core pack.\n" + HOSPITAL_X
CASES = """\
defaults:
  hook: patient-view
  now: 2026-06-01T12:00:00Z
  settings: {profile: ewgsop2, ct_cutoffs: martin2013, locale: en}
  patient: {gender: female, age: 66}
  data:
    - condition: {code: "icd10:C18.7"}
cases:
  - name: 17 kg in a woman is low under the local cut-off
    data: [{obs: {code: grip-strength, value: 17, unit: kg, days_ago: 5}}]
    expect: {findings: [probable-sarcopenia], evidence: {grip_max: 17}}
  - name: 18 kg in a woman is not low ('< 18')
    data: [{obs: {code: grip-strength, value: 18, unit: kg, days_ago: 5}}]
    expect: {findings: []}
"""


def cli(*argv):
    parser = argparse.ArgumentParser()
    add_rules_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    code = run_rules(args, out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def hospital(tmp_path, monkeypatch):
    """An empty folder holding only the hospital's folder (no rules/ beside it)."""
    folder = tmp_path / "hospital-x"
    (folder / "tests").mkdir(parents=True)
    (folder / "hospital-x.yaml").write_text(HOSPITAL, encoding="utf-8")
    (folder / "tests" / "grip.yaml").write_text(CASES, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return folder


def test_validate_an_override_alone(hospital):
    code, out, err = cli("rules", "validate", "hospital-x/hospital-x.yaml")
    assert (code, err) == (0, "")
    assert out.startswith("ok: sarcopenia-core@1.0.0+hospital-x@2026.1.0 — ")


def test_bundled_may_be_named(hospital):
    code, out, _ = cli("rules", "validate", "bundled", "hospital-x/hospital-x.yaml")
    assert code == 0 and out.startswith("ok: sarcopenia-core@1.0.0+hospital-x@2026.1.0 — ")


def test_a_missing_rules_folder_says_to_name_bundled(hospital):
    code, _, err = cli("rules", "validate", "rules/", "hospital-x/hospital-x.yaml")
    assert code == 1
    assert err.splitlines()[0] == "rules:1:1: rule_yaml_error: $: no such file or folder (name the bundled packs `bundled`)"


def test_test_an_override_folder(hospital):
    code, out, _ = cli("rules", "test", "hospital-x/")
    assert (code, out) == (0, "2 passed, 0 failed\n")


def test_diff_lists_every_change_with_old_and_new_sources(hospital):
    code, out, _ = cli("rules", "diff", "hospital-x/hospital-x.yaml")
    assert code == 0
    # EWGSOP2 (KB §1.2): grip < 27 kg men, < 16 kg women; the hospital's 30 / 18; AWGS restated
    assert out == (
        "Rule set sarcopenia-core@1.0.0 → sarcopenia-core@1.0.0+hospital-x@2026.1.0\n"
        "\n"
        "Thresholds (parameters)\n"
        "  grip_low [kg]  (hospital-x, hospital-x/hospital-x.yaml:13)\n"
        "    profile ewgsop2, male: 27 → 30\n"
        "      source: cruz-jentoft-2019 (EWGSOP2 2019) → hospital-x-nc12 (Hospital X NC-12)\n"
        "    profile ewgsop2, female: 16 → 18\n"
        "      source: cruz-jentoft-2019 (EWGSOP2 2019) → hospital-x-nc12 (Hospital X NC-12)\n"
        "    unchanged: profile awgs2019, male; profile awgs2019, female\n"
        "\n"
        "Codes (value sets and code systems)\n"
        "  code system hx-lab: urn:oid:1.2.826.0.1.999.42  (hospital-x, hospital-x/hospital-x.yaml:8)\n"
        "  value set grip-strength (extended by hospital-x, hospital-x/hospital-x.yaml:10):\n"
        "    + urn:oid:1.2.826.0.1.999.42 GRIPMAX\n"
        "\n"
        "References\n"
        "  hospital-x-nc12 (new in hospital-x): Hospital X nutrition committee, policy NC-12 (2026): "
        "grip cut-offs for our dynamometer.\n"
    )


def test_diff_shows_suggestion_texts(hospital):
    extra = (
        "suggestions:\n"
        "  muscle-assessment:\n"
        "    label: {en: Book grip strength and BIA at the Hospital X muscle clinic}\n"
    )
    (hospital / "hospital-x.yaml").write_text(HOSPITAL + extra, encoding="utf-8")
    code, out, _ = cli("rules", "diff", "hospital-x/hospital-x.yaml")
    assert code == 0
    section = out[out.index("Suggestions\n"):out.index("References\n")]
    assert section.splitlines()[1] == "  muscle-assessment (replaced by hospital-x, hospital-x/hospital-x.yaml:19)"
    assert '    label.en: "' in section and '→ "Book grip strength and BIA at the Hospital X muscle clinic"' in section


def test_diff_refuses_an_override_that_does_not_load(hospital):
    (hospital / "hospital-x.yaml").write_text(HOSPITAL.replace("unit: kg", "unit: lb"), encoding="utf-8")
    code, out, err = cli("rules", "diff", "hospital-x/hospital-x.yaml")
    assert (code, out) == (1, "")
    assert "'lb' is not a UCUM unit; did you mean '[lb_av]'?" in err
