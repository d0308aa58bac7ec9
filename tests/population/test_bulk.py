"""Bulk client against a local $export server: async kick-off, Retry-After, 429, a manifest with several
files per type, requiresAccessToken, a failure and resume; Backend Services auth checked by the server."""

from __future__ import annotations

import email.utils
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.cli import main
from cds_service.population.backend_auth import AuthError, BackendClient
from cds_service.population.bulk import BulkExport, ExportError, retry_after
from cds_service.population.evaluate import engine_for
from cds_service.population.reader import ReadPlan
from cds_service.population.synth import generate
from tests.conftest import NOW
from tests.population.bulk_server import BulkServer
from tests.population.conftest import OVERRIDES

CLIENT = "screen-test-client"


def _key(algorithm: str, folder: Path):
    key = ec.generate_private_key(ec.SECP384R1()) if algorithm == "ES384" else \
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = folder / f"{algorithm}.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    os.chmod(pem, 0o600)
    return key, pem


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, dict[str, list[Path]]]:
    """A 60-patient synthetic export, each resource type split over two files (as servers do)."""
    whole = tmp_path_factory.mktemp("bulk-whole")
    generate(whole, 60, ruleset=engine_for(OVERRIDES).ruleset, seed=23, as_of=NOW)
    served = tmp_path_factory.mktemp("bulk-served")
    files: dict[str, list[Path]] = {}
    for path in sorted(whole.glob("*.ndjson")):
        kind = path.name.split(".", 1)[0]
        lines = path.read_bytes().splitlines(keepends=True)
        half = (len(lines) + 1) // 2
        for part, chunk in enumerate((lines[:half], lines[half:]), start=1):
            if chunk:
                target = served / f"{kind}-part{part}.ndjson"
                target.write_bytes(b"".join(chunk))
                files.setdefault(kind, []).append(target)
    return whole, files


def _server(files, key, algorithm, polls) -> BulkServer:
    return BulkServer(files, client_id=CLIENT, public_key=key.public_key(), algorithm=algorithm, polls=polls)


@pytest.mark.parametrize("algorithm", ["ES384", "RS384"])
def test_export_waits_as_told_downloads_with_the_token_and_resumes_after_a_failed_download(
        source, tmp_path, algorithm):
    _whole, files = source
    key, pem = _key(algorithm, tmp_path)
    polls = [(202, {"Retry-After": "2", "X-Progress": "40%"}), (429, {"Retry-After": "3"}), (202, {})]
    plan = ReadPlan.of(engine_for(OVERRIDES).ruleset)
    assert len(files["Observation"]) == 2 and len(files["Patient"]) == 2
    with _server(files, key, algorithm, polls) as server:
        server.fail_once = {"Observation-part2.ndjson"}
        auth = BackendClient(CLIENT, pem.read_text(), algorithm, server.token_url)
        waits: list[float] = []
        first = BulkExport(server.base, tmp_path / "export", plan, auth=auth, sleep=waits.append,
                           default_wait=7).run()
        assert waits == [1, 2, 3, 7]  # kick-off 429, then Retry-After 2, 429 with Retry-After 3, no header
        assert not first.resumed and not first.deleted and not server.deleted
        missing = [p for p in first.problems if p["file"] == "Observation.002.ndjson"]
        assert missing and "HTTP 500" in missing[0]["reason"] and "run the same command again" in missing[0]["reason"]
        assert any(p["reason"] == "server reported: Group member Patient/gone was not found" for p in first.problems)

        second = BulkExport(server.base, tmp_path / "export", plan, auth=auth, sleep=waits.append).run()
        assert second.resumed and second.deleted and server.deleted
        kickoffs = [r for r in server.requests if r["path"].endswith("/$export")]
        assert len(kickoffs) == 2  # the 429 and the accepted one; the resume did not export again
        accepted = kickoffs[-1]
        assert accepted["prefer"] == "respond-async"
        assert accepted["query"]["_type"] == [",".join(sorted(plan.types))]
        assert accepted["query"]["_outputFormat"] == ["application/fhir+ndjson"]
        assert any(f.startswith("Observation?code=") for f in accepted["query"]["_typeFilter"])
        downloads = [r for r in server.requests if r["path"].startswith("/fhir/files/")]
        assert all(r["authorized"] for r in downloads)
        once = [r["path"] for r in downloads if r["path"].endswith("Observation-part1.ndjson")]
        assert len(once) == 1  # what the first run brought home is not fetched again
        assert server.refused == [] and len(server.assertions) >= 1
        for claims in server.assertions:
            assert claims["exp"] - claims["iat"] <= 300 and claims["iss"] == claims["sub"] == CLIENT
        assert len({c["jti"] for c in server.assertions}) == len(server.assertions)
    home = tmp_path / "export"
    assert (home / "Observation.002.ndjson").read_bytes() == files["Observation"][1].read_bytes()
    assert (home / "Patient.001.ndjson").read_bytes() == files["Patient"][0].read_bytes()
    assert oct((home / "Patient.001.ndjson").stat().st_mode & 0o777) == "0o600"


def test_a_client_signing_with_another_key_is_refused_by_the_server(source, tmp_path):
    _whole, files = source
    key, _pem = _key("ES384", tmp_path)
    _other, other_pem = _key("RS384", tmp_path)
    with _server(files, key, "ES384", []) as server:
        auth = BackendClient(CLIENT, other_pem.read_text(), "RS384", server.token_url)
        with pytest.raises(AuthError, match="HTTP 400: invalid_client invalid assertion"):
            BulkExport(server.base, tmp_path / "export", ReadPlan.of(engine_for(OVERRIDES).ruleset), auth=auth,
                       sleep=lambda _s: None).run()
        assert server.refused and not any(r["path"].endswith("/$export") and r["authorized"]
                                          for r in server.requests)


def test_an_export_that_fails_on_the_server_is_reported_and_the_next_run_starts_anew(source, tmp_path):
    _whole, files = source
    key, pem = _key("ES384", tmp_path)
    with _server(files, key, "ES384", [(500, {})]) as server:
        server.polls = [(500, {})] * 4
        auth = BackendClient(CLIENT, pem.read_text(), "ES384", server.token_url)
        with pytest.raises(ExportError, match="export failed on the server: HTTP 500: export job crashed"):
            BulkExport(server.base, tmp_path / "export", ReadPlan.of(engine_for(OVERRIDES).ruleset), auth=auth,
                       sleep=lambda _s: None).run()
        assert len([r for r in server.requests if r["path"] == "/fhir/status/job-1"]) == 1  # an outcome: no retry
    assert not (tmp_path / "export" / ".export-state.json").exists()


def test_screen_export_runs_a_group_export_with_configured_backend_auth_and_screens_it(source, tmp_path,
                                                                                       monkeypatch, capsys):
    whole, files = source
    key, pem = _key("RS384", tmp_path)
    monkeypatch.setenv("SARCOPENIA_CDS_BULK__CLIENT_ID", CLIENT)
    monkeypatch.setenv("SARCOPENIA_CDS_BULK__PRIVATE_KEY_FILE", str(pem))
    monkeypatch.setenv("SARCOPENIA_CDS_BULK__ALGORITHM", "RS384")
    monkeypatch.setenv("SARCOPENIA_CDS_RULES__WATCH", "false")
    with _server(files, key, "RS384", [(202, {"Retry-After": "1"})]) as server:
        server.kickoff_429 = False
        code = main(["screen", "--export", server.base, "--group", "oncology", "--out", str(tmp_path / "run"),
                     "--now", NOW.isoformat(), "--progress", "none"])
        assert code == 0, capsys.readouterr().err
        assert server.deleted and server.refused == []
        assert any(r["path"] == "/fhir/Group/oncology/$export" for r in server.requests)
    direct = tmp_path / "direct"
    assert main(["screen", str(whole), "--out", str(direct), "--now", NOW.isoformat(), "--progress", "none"]) == 0
    assert (tmp_path / "run" / "worklist.csv").read_bytes() == (direct / "worklist.csv").read_bytes()
    problems = (tmp_path / "run" / "problems.csv").read_text()
    assert "server reported: Group member Patient/gone was not found" in problems


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after("12", 5) == 12
    assert retry_after(None, 5) == 5
    assert retry_after("soon", 5) == 5
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after(later, 5) <= 30
