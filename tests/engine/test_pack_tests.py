"""The pack-test runner: compact notation, expectations, and cases that assert nothing fail."""

from pathlib import Path

import pytest

from cds_service.engine.testcases import CaseError, read_cases, run_case

from .helpers import PACKS, core

CASES = PACKS / "core" / "tests" / "cases.yaml"


@pytest.mark.parametrize("case", read_cases(CASES), ids=lambda c: c.name)
def test_fixture_cases_pass(case):
    assert run_case(core(), case) == []


def _case(tmp_path: Path, body: str):
    path = tmp_path / "t.yaml"
    path.write_text(body)
    return read_cases(path)[0]


def test_case_without_expectation_fails(tmp_path):
    case = _case(tmp_path, "cases:\n  - name: nothing\n    now: 2025-06-01T00:00:00Z\n")
    with pytest.raises(CaseError, match="expect"):
        run_case(core(), case)


def test_case_without_findings_expectation_fails(tmp_path):
    case = _case(
        tmp_path,
        "cases:\n  - name: x\n    now: 2025-06-01T00:00:00Z\n    expect: {suggestions: []}\n",
    )
    with pytest.raises(CaseError, match="findings"):
        run_case(core(), case)


def test_wrong_expectation_is_reported(tmp_path):
    case = _case(
        tmp_path,
        """cases:
  - name: wrong
    now: 2025-06-01T00:00:00Z
    patient: {gender: female, age: 60}
    data: [{condition: {code: "icd10:C16.9"}}, {obs: {code: grip-strength, value: 10, unit: kg, days_ago: 1}}]
    settings: {profile: prof-a, ct_cutoffs: set-banded}
    expect: {findings: [sarcopenia], evidence: {grip_max: 11}}
""",
    )
    failures = run_case(core(), case)
    assert any(
        "findings: expected ['sarcopenia'], got ['probable-sarcopenia']" in f for f in failures
    )
    assert any("grip_max expected 11" in f for f in failures)


def test_unknown_code_in_compact_notation(tmp_path):
    case = _case(
        tmp_path,
        "cases:\n  - name: x\n    now: 2025-06-01T00:00:00Z\n    data: [{obs: {code: nope, value: 1}}]\n"
        "    expect: {findings: []}\n",
    )
    with pytest.raises(CaseError, match="nope"):
        run_case(core(), case)


def test_pytest_collects_pack_cases(pytester):
    rules = pytester.mkdir("rules")
    pack = rules / "demo"
    (pack / "tests").mkdir(parents=True)
    source = PACKS / "core"
    (pack / "pack.yaml").write_text((source / "pack.yaml").read_text())
    (pack / "tests" / "cases.yaml").write_text(CASES.read_text())
    (rules / "conftest.py").write_text(
        "from cds_service.engine.pytest_plugin import pytest_collect_file\n"
    )
    result = pytester.runpytest("rules", "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)


def test_case_can_load_an_override_file(tmp_path):
    (tmp_path / "overrides").mkdir()
    (tmp_path / "overrides" / "strict.yaml").write_text(
        "pack: {id: strict-site, version: 1.0.0}\n"
        "references: {site: {citation: 'Site policy used only by this engine test.'}}\n"
        "parameters:\n"
        "  grip_low:\n"
        "    unit: kg\n"
        "    profiles: {prof-a: {male: 40, female: 30, source: site}}\n"
    )
    body = """
defaults: {now: 2025-06-01T12:00:00Z, settings: {profile: prof-a, ct_cutoffs: set-banded}, patient: {gender: male, age: 70}, data: [{condition: {code: "icd10:C16.9"}}]}
cases:
  - name: 35 kg is normal with the bundled cut-off
    data: [{obs: {code: grip-strength, value: 35, unit: kg, days_ago: 3}}]
    expect: {findings: []}
  - name: 35 kg is low with the site's cut-off 40
    overrides: [overrides/strict.yaml]
    data: [{obs: {code: grip-strength, value: 35, unit: kg, days_ago: 3}}]
    expect: {findings: [probable-sarcopenia], summary_contains: ["40 kg"]}
"""
    (tmp_path / "t.yaml").write_text(body)
    for case in read_cases(tmp_path / "t.yaml"):
        assert run_case(core(), case) == [], case.name


def test_missing_override_file_is_a_case_error(tmp_path):
    case = _case(
        tmp_path,
        "cases:\n  - name: x\n    now: 2025-06-01T00:00:00Z\n    overrides: [nope.yaml]\n"
        "    expect: {findings: []}\n",
    )
    with pytest.raises(CaseError, match="not found"):
        run_case(core(), case)


def test_override_folders_are_not_test_files():
    from cds_service.engine.testcases import is_case_file

    assert is_case_file(Path("rules/x/tests/a.yaml"))
    assert not is_case_file(Path("rules/x/tests/overrides/site.yaml"))
