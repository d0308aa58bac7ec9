"""Every diagnostic code is produced by the real loader for at least one invalid pack, at the right line."""

import re
from pathlib import Path

import pytest

from cds_service.engine import CODES, PackErrors, load_ruleset

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "invalid_packs"
CASES = sorted(ROOT.glob("*/*.yaml"))
HEADER = re.compile(r"# expect: (\w+) line (\d+)")


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_invalid_pack_is_rejected_with_its_code_at_its_line(path):
    code, line = HEADER.match(path.read_text().splitlines()[0]).groups()
    assert path.parent.name == code
    with pytest.raises(PackErrors) as info:
        load_ruleset([path])
    errors = info.value.errors
    assert {e.code for e in errors} == {code}, [str(e) for e in errors]
    assert any(e.line == int(line) and e.file.endswith(path.name) for e in errors), [
        str(e) for e in errors
    ]


def test_every_load_code_has_an_invalid_fixture():
    covered = {p.parent.name for p in CASES}
    assert set(CODES) - {"rule_test_error"} <= covered


def test_errors_print_as_file_line_col_code_path_message():
    path = ROOT / "rule_schema_error" / "hard-stop-indicator.yaml"
    with pytest.raises(PackErrors) as info:
        load_ruleset([path])
    assert str(info.value.errors[0]) == (
        "tests/fixtures/invalid_packs/rule_schema_error/hard-stop-indicator.yaml:24:18: rule_schema_error: "
        "$.rules[0].card.indicator: 'hard-stop' is not one of ['info', 'warning', 'critical']"
    )


def test_all_errors_are_reported_together_and_sorted(tmp_path):
    text = (ROOT / "rule_reference_error" / "unknown-fact.yaml").read_text()
    text = text.replace("finding: probable-sarcopenia", "finding: frailty")
    text = text.replace("codes: grip-strength", "codes: grip")
    bad = tmp_path / "many.yaml"
    bad.write_text(text)
    with pytest.raises(PackErrors) as info:
        load_ruleset([bad])
    errors = info.value.errors
    assert len(errors) == 3
    assert [e.line for e in errors] == sorted(e.line for e in errors)


def test_errors_across_files_are_all_reported(tmp_path):
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(
            (ROOT / "rule_schema_error" / "hard-stop-indicator.yaml").read_text()
        )
    with pytest.raises(PackErrors) as info:
        load_ruleset([tmp_path])
    assert sorted({Path(e.file).name for e in info.value.errors}) == ["a.yaml", "b.yaml"]
