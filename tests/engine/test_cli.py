"""The `rules` sub-commands, through argparse as the lead wires them."""

import argparse
import io
import json

from cds_service.cli_rules import add_rules_commands, run_rules

from .helpers import PACKS

INVALID = str(PACKS.parent / "invalid_packs" / "rule_schema_error" / "hard-stop-indicator.yaml")
CORE = str(PACKS / "core")


def cli(*argv):
    parser = argparse.ArgumentParser()
    add_rules_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    code = run_rules(args, out, err)
    return code, out.getvalue(), err.getvalue()


def test_validate_ok():
    code, out, _ = cli("rules", "validate", str(PACKS / "core" / "pack.yaml"))
    assert code == 0 and out.startswith("ok: engine-fixture@0.1.0")


def test_validate_errors():
    code, _, err = cli("rules", "validate", INVALID)
    assert code == 1
    assert "hard-stop-indicator.yaml:24:18: rule_schema_error: $.rules[0].card.indicator" in err


def test_test_command():
    code, out, _ = cli("rules", "test", CORE)
    assert code == 0 and "5 passed, 0 failed" in out


def test_test_command_reports_failures(tmp_path):
    cases = tmp_path / "tests"
    cases.mkdir()
    (cases / "bad.yaml").write_text(
        "cases:\n  - name: nothing asserted\n    now: 2025-06-01T00:00:00Z\n"
    )
    code, out, _ = cli(
        "rules", "test", str(cases / "bad.yaml"), "--packs", str(PACKS / "core" / "pack.yaml")
    )
    assert code == 1 and "rule_test_error" in out


def test_explain(tmp_path):
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "id": "p1",
                    "gender": "male",
                    "birthDate": "1950-01-01",
                }
            },
            {
                "resource": {
                    "resourceType": "Condition",
                    "id": "c1",
                    "code": {
                        "coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "C16.9"}]
                    },
                    "clinicalStatus": {"coding": [{"code": "active"}]},
                }
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": "g1",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "83174-3"}]},
                    "effectiveDateTime": "2025-05-30",
                    "valueQuantity": {"value": 55, "code": "[lbf_av]"},
                }
            },
        ],
    }
    path = tmp_path / "patient.json"
    path.write_text(json.dumps(bundle))
    code, out, _ = cli(
        "rules",
        "explain",
        "--hook",
        "patient-view",
        "--bundle",
        str(path),
        "--packs",
        CORE,
        "--profile",
        "prof-a",
        "--ct-cutoffs",
        "set-banded",
        "--now",
        "2025-06-01T00:00:00Z",
    )
    assert code == 0
    assert "✓ grip_max < grip_lo" in out
    assert "probable-sarcopenia (Probable sarcopenia) by rule probable" in out
    assert "grip_max: 24.95 kg 2025-05-30 Observation/g1" in out


def test_docs_is_deterministic():
    first = cli("rules", "docs", "--packs", CORE)
    second = cli("rules", "docs", "--packs", CORE)
    assert first == second and first[0] == 0
    assert "| `grip_low` | prof-a | male | 27 | kg |" in first[1]
    assert "| `smi_low` | set-banded | male | 43 if bmi < 25; 53 otherwise | cm²/m² |" in first[1]


def test_rules_test_runs_without_pytest_installed():
    """Hospital IT runs `rules test` on production installs, which have no pytest."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['pytest'] = None; "
            "from cds_service.cli import main; sys.exit(main(['rules', 'test']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1].endswith("passed, 0 failed")


def test_test_command_takes_relative_pack_paths_from_the_working_directory(tmp_path, monkeypatch):
    """A hospital's copy of the packs, named relative to where IT runs the command; its override
    case loads those packs again, from there (not from the service's own folder)."""
    import shutil

    from cds_service.engine.load import BUNDLED

    shutil.copytree(BUNDLED / "sarcopenia", tmp_path / "hospital")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("rules", "test", "--packs", "hospital", "--", "hospital")
    assert (code, err) == (0, "")
    assert out.endswith(" passed, 0 failed\n")
    assert "No such file" not in out
