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
