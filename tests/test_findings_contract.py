"""The engine's finding catalogue is exactly the contract in docs/findings.md."""

from __future__ import annotations

import re
from pathlib import Path

from cds_service.engine.catalog import FINDINGS

CONTRACT = Path(__file__).resolve().parents[1] / "docs" / "findings.md"


def test_finding_codes_and_displays_match_the_contract():
    text = CONTRACT.read_text(encoding="utf-8")
    section = text[text.index("## Findings"):text.index("## Suggestions")]
    table = re.findall(r"^\| `([a-z-]+)` \| ([^|]+?) \|", section, re.M)
    assert dict(table) == FINDINGS
