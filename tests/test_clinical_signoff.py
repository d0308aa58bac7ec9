"""docs/clinical-signoff.md is the committed output of `sarcopenia-cds rules docs` for the bundled
packs: clinicians sign off that file, so it must never lag behind the rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIGNOFF = ROOT / "docs" / "clinical-signoff.md"
REFRESH = "sarcopenia-cds rules docs > docs/clinical-signoff.md"


def _generate() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "cds_service.cli_rules", "rules", "docs"],
        cwd=ROOT, capture_output=True, text=True, encoding="utf-8", check=False,
    )
    assert result.returncode == 0, f"`rules docs` failed:\n{result.stderr}"
    return result.stdout


def test_clinical_signoff_is_current():
    assert SIGNOFF.exists(), f"docs/clinical-signoff.md is missing; create it with: {REFRESH}"
    committed = SIGNOFF.read_text(encoding="utf-8")
    generated = _generate()
    if committed != generated:
        old, new = committed.splitlines(), generated.splitlines()
        first = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
        raise AssertionError(
            "docs/clinical-signoff.md is stale: the rule packs changed since it was generated.\n"
            f"Refresh it from the repository root with:\n    {REFRESH}\n"
            "then review the diff with the clinical lead and commit it.\n"
            f"First difference at line {first + 1}:\n"
            f"  committed: {old[first] if first < len(old) else '<end of file>'}\n"
            f"  generated: {new[first] if first < len(new) else '<end of file>'}"
        )
