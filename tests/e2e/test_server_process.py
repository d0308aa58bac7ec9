"""End to end against the real server process (the README's command), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import requests

from cds_service.store import Store
from tests.support import tokens
from tests.support.ehr import hook_request, prefetch_for, shift_dates
from tests.support.fhir_server import FhirTestServer
from tests.support.patients import severe_sarcopenia
from tests.support.pg import temporary_database
from tests.support.server import running_service

pytestmark = pytest.mark.slow
TEST_NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def signed(base: str, path: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.token(base + path)}"}


def patient_now():
    """The synthetic patient, dated as if today were the test's reference day."""
    return shift_dates(severe_sarcopenia(), datetime.now(timezone.utc) - TEST_NOW)


def scenario(base: str, database_url: str) -> None:
    discovery = requests.get(base + "/cds-services", headers=signed(base, "/cds-services"), timeout=5)
    assert discovery.status_code == 200
    service = next(s for s in discovery.json()["services"] if s["hook"] == "patient-view")
    path = f"/cds-services/{service['id']}"
    resources = patient_now()

    full = hook_request("patient-view", "sev-1", prefetch_for(resources, service["prefetch"]))
    answer = requests.post(base + path, json=full, headers=signed(base, path), timeout=10)
    assert answer.status_code == 200, answer.text
    cards = answer.json()["cards"]
    assert cards[0]["source"]["topic"]["code"] == "severe-sarcopenia"

    with FhirTestServer(resources, page_size=2) as fhir:
        bare = hook_request("patient-view", "sev-1")
        bare["fhirServer"] = fhir.base
        bare["fhirAuthorization"] = {"access_token": "at-e2e", "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/*.read", "subject": "sarcopenia-cds"}
        fetched = requests.post(base + path, json=bare, headers=signed(base, path), timeout=10)
        assert fetched.status_code == 200, fetched.text
        assert any("_page=" in r["path"] for r in fhir.requests), "searchset paging was followed"
    assert [c["summary"] for c in fetched.json()["cards"]] == [c["summary"] for c in cards]

    card = cards[0]
    feedback = {"feedback": [{"card": card["uuid"], "outcome": "accepted",
                              "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                              # the real server's clock: feedback lies between the card and now
                              "outcomeTimestamp": datetime.now(timezone.utc).isoformat()}]}
    for expected in ({"stored": 1, "duplicates": 0}, {"stored": 0, "duplicates": 1}):
        posted = requests.post(base + path + "/feedback", json=feedback, headers=signed(base, path + "/feedback"), timeout=5)
        assert posted.status_code == 200, posted.text
        assert posted.json() == expected
    store = Store(database_url, "stats-only-no-pseudonyms")  # counts rows; pseudonymises nothing
    try:
        stats = store.stats()
        assert stats["feedback"] == 1
        assert stats["feedback_by_outcome"]["accepted"] == 1
        assert stats["feedback_unknown_card"] == 0
    finally:
        store.dispose()


def test_real_server_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    with running_service(url, tmp_path) as (base, _process):
        scenario(base, url)


@pytest.mark.postgres
def test_real_server_on_postgresql(tmp_path):
    with temporary_database("cds_e2e") as url:
        with running_service(url, tmp_path) as (base, _process):
            scenario(base, url)


def test_stopping_workers_write_every_card_still_in_the_journal(tmp_path):
    """Two workers record cards through the SQLite card journal; when the server stops, each
    worker writes what the journal still holds, so the tables have every card answered."""
    database = tmp_path / "journal.db"
    sent: list[str] = []
    with running_service(f"sqlite:///{database}", tmp_path, workers=2, threads=1) as (base, _process):
        discovery = requests.get(base + "/cds-services", headers=signed(base, "/cds-services"), timeout=5)
        service = next(s for s in discovery.json()["services"] if s["hook"] == "patient-view")
        path = f"/cds-services/{service['id']}"
        body = hook_request("patient-view", "sev-1", prefetch_for(patient_now(), service["prefetch"]))
        for _ in range(20):
            answer = requests.post(base + path, json=body, headers=signed(base, path), timeout=10)
            assert answer.status_code == 200, answer.text
            sent.extend(card["uuid"] for card in answer.json()["cards"])
    assert len(sent) >= 20
    journals = [p for p in tmp_path.glob("journal.db-cards.journal*") if not p.name.endswith("-lock")]
    assert [p.name for p in journals if p.stat().st_size] == []
    import sqlite3  # read the file as it is: a Store would flush a journal first

    with sqlite3.connect(database) as connection:
        stored = {uuid for (uuid,) in connection.execute("SELECT uuid FROM card_sent")}
    assert stored == set(sent)
