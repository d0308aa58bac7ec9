"""Shared fixtures: one synthetic export of 1,000 patients, screened once, dated at the test clock."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from cds_service.population.evaluate import engine_for
from cds_service.population.run import RunOptions, run
from cds_service.population.synth import generate
from tests.conftest import NOW

#: the settings a test app runs with (tests/conftest.service_config): no file watching, bundled packs
OVERRIDES = {"rules": {"watch": False}}


def read_export(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Every resource of an export, by patient id (read with plain Python, not with the code under test)."""
    by_patient: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(folder.glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            resource = orjson.loads(line)
            if resource["resourceType"] == "Patient":
                by_patient[resource["id"]].append(resource)
            else:
                ref = (resource.get("subject") or {}).get("reference", "")
                by_patient[ref.split("Patient/", 1)[1]].append(resource)
    return dict(by_patient)


def worklist_rows(out: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(out / "worklist.parquet").to_pylist()


@pytest.fixture(scope="session")
def export_1000(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export-1000")
    generate(folder, 1000, ruleset=engine_for(OVERRIDES).ruleset, settings=engine_for(OVERRIDES).settings,
             seed=17, as_of=NOW)
    return folder


@pytest.fixture(scope="session")
def screened_1000(export_1000, tmp_path_factory):
    out = tmp_path_factory.mktemp("screen-1000")
    report = run(RunOptions(export_1000, out, now=NOW, overrides=OVERRIDES, progress="none", buckets=8, tasks=True))
    return out, report
