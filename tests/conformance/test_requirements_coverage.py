"""Every SHALL / SHALL NOT service requirement is verified by a test or listed with a reason."""

from __future__ import annotations

import ast
import csv
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CSV = ROOT / "docs" / "cds-hooks-2.0-service-requirements.csv"
EXEMPTIONS = ROOT / "docs" / "conformance.md"


def shall_requirements() -> set[int]:
    with CSV.open(encoding="utf-8") as handle:
        return {int(row["id"]) for row in csv.DictReader(handle) if row["conformance"] in ("SHALL", "SHALL NOT")}


def verified_requirements() -> set[int]:
    """IDs named in @pytest.mark.req(...) anywhere under tests/."""
    found: set[int] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "req"
                    and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "mark"):
                found.update(int(a.value) for a in node.args if isinstance(a, ast.Constant))
    return found


def exempted_requirements() -> set[int]:
    rows = re.findall(r"^\|\s*(\d+)\s*\|[^|]+\|\s*(\S[^|]*)\|", EXEMPTIONS.read_text(encoding="utf-8"), re.M)
    return {int(ident) for ident, reason in rows if reason.strip()}


def test_every_shall_requirement_is_verified_or_exempted_with_a_reason():
    uncovered = shall_requirements() - verified_requirements() - exempted_requirements()
    assert not uncovered, f"SHALL requirements neither tested (@pytest.mark.req) nor listed in docs/conformance.md: {sorted(uncovered)}"


def test_exemptions_are_not_also_claimed_as_tested():
    """An exemption for a requirement a test verifies is stale: keep the list honest."""
    assert exempted_requirements() & verified_requirements() == set()


def test_marks_name_real_requirement_ids():
    with CSV.open(encoding="utf-8") as handle:
        known = {int(row["id"]) for row in csv.DictReader(handle)}
    assert verified_requirements() - known == set()
