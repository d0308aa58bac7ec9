"""Code tables: a value-set entry naming a CSV file is read as one entry per row, checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.engine import PackErrors, load_ruleset

PACK = """pack: {id: table-test, version: 1.0.0}
value_sets:
  drugs:
    - {system: "http://www.whocc.no/atc", code: L01XX99}
    - {system: "http://www.whocc.no/atc", table: %s}
facts:
  drug:
    label: {en: Drug}
    from: MedicationRequest
    codes: drugs
    select: all
"""


def _pack(tmp_path: Path, table: str, csv_text: str | None) -> Path:
    (tmp_path / "pack.yaml").write_text(PACK % table, encoding="utf-8")
    if csv_text is not None:
        (tmp_path / "drugs.csv").write_text(csv_text, encoding="utf-8")
    return tmp_path / "pack.yaml"


def _errors(path: Path) -> list[str]:
    with pytest.raises(PackErrors) as caught:
        load_ruleset([path])
    return [f"{e.line}:{e.col}: {e.code}: {e.json_path}: {e.message}" for e in caught.value.errors]


def test_every_row_of_the_table_is_a_code_of_the_value_set(tmp_path):
    ruleset = load_ruleset([_pack(tmp_path, "drugs.csv", "code,display\nL01BC06,capecitabine\nL01BC05,gemcitabine\n")])
    drugs = ruleset.value_sets["drugs"]
    assert [drugs.matches("http://www.whocc.no/atc", c) for c in ("L01XX99", "L01BC06", "L01BC05", "L01AA01")] == [
        True, True, True, False]
    assert drugs.named == [("http://www.whocc.no/atc", "L01BC06", "capecitabine"),
                           ("http://www.whocc.no/atc", "L01BC05", "gemcitabine")]


@pytest.mark.parametrize(("table", "csv_text", "message"), [
    ("missing.csv", None, "code table 'missing.csv' not found beside the pack"),
    ("../drugs.csv", None, "code table '../drugs.csv' lies outside the pack's folder"),
    ("drugs.txt", None, "a code table is a .csv file beside the pack (columns code,display)"),
    ("drugs.csv", "atc,name\nL01BC06,capecitabine\n",
     "code table 'drugs.csv': the first line must be 'code,display' (found 'atc,name')"),
    ("drugs.csv", "code,display\nL01BC06,\n",
     "drugs.csv:2: a row is 'code,display', both not empty (found 'L01BC06,')"),
    ("drugs.csv", "code,display\nL01BC06,capecitabine\nL01BC06,capecitabine\n",
     "drugs.csv:3: L01BC06,capecitabine is listed twice"),
])
def test_a_bad_table_is_an_error_at_its_line_in_the_pack(tmp_path, table, csv_text, message):
    errors = _errors(_pack(tmp_path, table, csv_text))
    assert errors == [f"5:7: rule_reference_error: $.value_sets.drugs[1].table: {message}"]
