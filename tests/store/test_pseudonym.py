"""Pseudonyms: keyed, stable across restarts and workers, and raw ids stored nowhere."""

from __future__ import annotations

import hashlib
import hmac
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from .helpers import accepted, all_text, card, count, overridden, record

RAW = "Patient/mrn-00123456"


def test_stable_and_never_the_raw_id(store):
    first = store.pseudonymise(RAW)
    assert first == store.pseudonymise(RAW)
    assert first != RAW and RAW not in first
    assert len(first) == 64 and int(first, 16) >= 0
    assert store.pseudonymise("Patient/other") != first


def test_configured_key_is_hmac_sha256(make_store):
    store = make_store("a-configured-secret")
    expected = hmac.new(b"a-configured-secret", RAW.encode(), hashlib.sha256).hexdigest()
    assert store.pseudonymise(RAW) == expected
    assert make_store("another-secret").pseudonymise(RAW) != expected
    # a configured key is not written to the database
    assert count(store, "service_secret") == 0


def _key_file(store) -> Path:
    return Path(store._key_file)


def test_generated_key_persists_across_restarts_in_a_0600_file_outside_the_database(make_store):
    first = make_store()
    pseudonym = first.pseudonymise(RAW)
    first.dispose()
    restarted = make_store()
    assert restarted.pseudonymise(RAW) == pseudonym
    assert count(restarted, "service_secret") == 0  # a dump of the database holds no key
    key_file = _key_file(restarted)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = bytes.fromhex(key_file.read_text().strip())
    assert pseudonym == hmac.new(key, RAW.encode(), hashlib.sha256).hexdigest()
    # generated, not a fixed fallback: not the HMAC under an empty or trivial key
    for weak in (b"", b"0" * 32, b"\0" * 32):
        assert pseudonym != hmac.new(weak, RAW.encode(), hashlib.sha256).hexdigest()


def test_generated_key_race_on_first_use(make_store):
    workers = [make_store() for _ in range(8)]
    barrier = threading.Barrier(len(workers))
    results: list[str] = []
    errors: list[BaseException] = []

    def first_request(store) -> None:
        barrier.wait()
        try:
            results.append(store.pseudonymise(RAW))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=first_request, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 8 and len(set(results)) == 1
    assert count(workers[0], "service_secret") == 0
    assert [p.name for p in _key_file(workers[0]).parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_key_an_older_version_kept_in_the_database_moves_to_the_key_file(make_store):
    """Upgrading keeps every stored pseudonym (and so every suppression) valid."""
    import sqlalchemy as sa

    from cds_service.store.models import service_secret

    legacy = bytes(range(32))
    setup = make_store("setup-only")
    with setup.engine.begin() as connection:
        connection.execute(sa.insert(service_secret).values(name="pseudonym_key", value=legacy.hex(),
                                                            created_at=datetime.now(UTC)))
    upgraded = make_store()
    assert upgraded.pseudonymise(RAW) == hmac.new(legacy, RAW.encode(), hashlib.sha256).hexdigest()
    assert bytes.fromhex(_key_file(upgraded).read_text().strip()) == legacy
    assert count(upgraded, "service_secret") == 0


def test_postgresql_without_a_configured_key_refuses_to_start():
    from cds_service.store import Store

    with pytest.raises(ValueError, match=r"^privacy.pseudonym_key or privacy.pseudonym_key_file is required with "
                                         r"postgresql: the key must not live in the database it protects$"):
        Store("postgresql+psycopg://cds@127.0.0.1:1/cds")


def test_raw_patient_id_absent_from_every_table(store):
    c = card("low-smi", ["low-smi", "low-grip-strength"], {"sugg-1": "dietitian-referral"})
    record(store, RAW, c)
    store.record_feedback(
        "sarcopenia-patient-view",
        [overridden(c["uuid"], comment="clinician note"), accepted(c["uuid"], "sugg-1")],
        datetime.now(UTC),
    )
    store.suppressions(RAW, datetime.now(UTC), {"patient-declined": 90}, 30, 90)
    values = all_text(store)
    assert values, "the scan found nothing: it would prove nothing"
    tables = {t for t, _, _ in values}
    assert {"card_sent", "card_suggestion", "feedback"} <= tables
    for needle in (RAW, "mrn-00123456"):
        leaks = [(t, col) for t, col, v in values if needle in v]
        assert leaks == []
    assert any(v == store.pseudonymise(RAW) for _, col, v in values if col == "patient_pseudonym")
