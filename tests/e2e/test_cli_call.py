"""`sarcopenia-cds call` against the real server process: signs the JWT (iss, sub, aud, exp, iat, jti,
kid), fills prefetch from discovery, prints the cards; `dev-key` prints an issuer entry that works."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from cds_service.cli_call import sign
from tests.support import tokens
from tests.support.ehr import shift_dates
from tests.support.fhir_server import FhirTestServer
from tests.support.server import command, running_service

pytestmark = pytest.mark.slow

PATIENTS = Path(__file__).resolve().parents[1] / "patients"
REFERENCE_NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)  # tests/patients/expected.yaml
PATIENT_01 = "01-pancreatic-severe-sarcopenia-cachexia-f"


def _patient_file(tmp_path: Path, name: str) -> tuple[Path, list[dict]]:
    """A patient bundle with its dates moved so that its record ends today, as the e2e tests do."""
    bundle = json.loads((PATIENTS / f"{name}.json").read_text(encoding="utf-8"))
    resources = shift_dates([e["resource"] for e in bundle["entry"]], datetime.now(timezone.utc) - REFERENCE_NOW)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                "entry": [{"resource": r} for r in resources]}), encoding="utf-8")
    return path, resources


def _test_key(tmp_path: Path) -> Path:
    path = tmp_path / "ehr-key.pem"
    path.write_bytes(tokens.es384_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    return path


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SARCOPENIA_CDS_")}
    return subprocess.run([*command(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def _codes(answer: dict) -> set[str]:
    found = set()
    for card in answer["cards"]:
        found.add(card["source"]["topic"]["code"])
        found.update(f["code"]["code"] for f in card["extension"]["org.sarcopenia-cds.findings"])
    return found


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("call")
    with running_service(f"sqlite:///{workdir / 'cds.db'}", workdir) as (base, _process):
        yield base, workdir


def test_call_prints_the_cards_of_the_running_service(service, tmp_path):
    base, _ = service
    patient, _ = _patient_file(tmp_path, PATIENT_01)
    key = _test_key(tmp_path)
    common = ["--patient", str(patient), "--url", base, "--key", str(key), "--iss", tokens.ISSUER, "--kid", "ehr-es384"]

    as_json = _run("call", "patient-view", *common, "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    # tests/patients/expected.yaml, 01 pv-ewgsop2 (worked out by hand there)
    assert _codes(answer) == {"severe-sarcopenia", "low-skeletal-muscle-index", "cancer-cachexia"}

    shown = _run("call", "patient-view", *common, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"sarcopenia-patient-view (patient-view): {len(answer['cards'])} card")
    for card in answer["cards"]:
        assert card["summary"][:40] in " ".join(shown.stdout.split())
        for suggestion in card.get("suggestions", []):
            assert f"suggestion: {suggestion['label']}"[:50] in " ".join(shown.stdout.split())


def test_call_with_fhir_server_lets_the_service_fetch(service, tmp_path):
    base, _ = service
    _, resources = _patient_file(tmp_path, PATIENT_01)
    key = _test_key(tmp_path)
    with FhirTestServer(resources, page_size=50) as fhir:
        result = _run("call", "patient-view", "--fhir-server", fhir.base, "--patient-id", "syn-01", "--fhir-token", "at",
                      "--url", base, "--key", str(key), "--iss", tokens.ISSUER, "--kid", "ehr-es384", "--json",
                      cwd=tmp_path)
        assert fhir.requests, "the service fetched nothing"
    assert result.returncode == 0, result.stderr
    assert _codes(json.loads(result.stdout)) == {"severe-sarcopenia", "low-skeletal-muscle-index", "cancer-cachexia"}


def test_call_order_select_with_draft_orders(service, tmp_path):
    base, _ = service
    patient, _ = _patient_file(tmp_path, PATIENT_01)
    orders = PATIENTS / "orders" / f"{PATIENT_01}-gemcitabine-rxnorm.json"
    result = _run("call", "order-select", "--patient", str(patient), "--orders", str(orders), "--url", base,
                  "--key", str(_test_key(tmp_path)), "--iss", tokens.ISSUER, "--kid", "ehr-es384", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "chemotherapy-toxicity-risk" in _codes(json.loads(result.stdout))  # expected.yaml, 01 osel


def test_call_without_a_key_says_what_to_do_in_one_line(service, tmp_path):
    base, _ = service
    patient, _ = _patient_file(tmp_path, PATIENT_01)
    result = _run("call", "patient-view", "--patient", str(patient), "--url", base, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == ("sarcopenia-cds call: GET /cds-services answered HTTP 401: Unauthorized (give --key and "
                             "--iss of an issuer registered in the service's auth.issuers; `sarcopenia-cds dev-key` "
                             "makes one)\n")


def test_call_to_a_service_that_is_not_there(tmp_path):
    from tests.support.server import free_port

    patient, _ = _patient_file(tmp_path, PATIENT_01)
    result = _run("call", "patient-view", "--patient", str(patient), "--url", f"http://127.0.0.1:{free_port()}",
                  cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("sarcopenia-cds call: cannot reach http://127.0.0.1:")
    assert len(result.stderr.splitlines()) == 1


def test_dev_key_entry_is_trusted_by_a_service_that_pastes_it(tmp_path):
    result = _run("dev-key", "--out", str(tmp_path / "keys"), "--iss", "https://ehr.example.org/dev", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    key = tmp_path / "keys" / "cds-client-key.pem"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    entry = yaml.safe_load(result.stdout)
    (issuer,) = entry["auth"]["issuers"]
    assert issuer["iss"] == "https://ehr.example.org/dev" and issuer["algorithms"] == ["ES384"]
    assert [k["kty"] for k in issuer["jwks"]["keys"]] == ["EC"]
    again = _run("dev-key", "--out", str(tmp_path / "keys"), cwd=tmp_path)
    assert again.returncode == 2 and "not overwritten" in again.stderr

    patient, _ = _patient_file(tmp_path, PATIENT_01)
    workdir = tmp_path / "svc"
    workdir.mkdir()
    with running_service(f"sqlite:///{workdir / 'cds.db'}", workdir,
                         extra_env={"SARCOPENIA_CDS_AUTH__ISSUERS": json.dumps(entry["auth"]["issuers"])}) as (base, _):
        result = _run("call", "patient-view", "--patient", str(patient), "--url", base, "--key", str(key),
                      "--iss", "https://ehr.example.org/dev", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _codes(json.loads(result.stdout)) == {"severe-sarcopenia", "low-skeletal-muscle-index", "cancer-cachexia"}


def test_the_jwt_carries_what_cds_hooks_requires():
    token = sign(tokens.es384_key(), iss="https://ehr.test/fhir", aud="http://cds.test/cds-services/x",
                 jku="https://ehr.test/jwks.json")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES384" and header["typ"] == "JWT" and header["jku"] == "https://ehr.test/jwks.json"
    assert header["kid"]  # the RFC 7638 thumbprint dev-key also prints
    claims = jwt.decode(token, tokens.es384_key().public_key(), algorithms=["ES384"], audience="http://cds.test/cds-services/x")
    assert claims["iss"] == claims["sub"] == "https://ehr.test/fhir"
    assert claims["exp"] - claims["iat"] == 300 and len(claims["jti"]) == 36
