"""The card journal: cards recorded by appending to a file beside a SQLite database, written into
the tables in batches, never lost and never written twice."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from cds_service.store import Store
from cds_service.store.models import card_sent, card_suggestion, feedback, hook_call

from .helpers import T0, card, count, overridden, record


def journal_files(tmp_path: Path) -> list[str]:
    """The journal and the files flushes took aside, with content (lock files excepted)."""
    return sorted(p.name for p in tmp_path.glob("*-cards.journal*")
                  if not p.name.endswith("-lock") and p.stat().st_size > 0)


def rows(store: Store) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Cards, suggestions and calls; a call's id (random) is left out, the number of calls and
    cards it links is kept."""
    card_columns = [c for c in card_sent.c if c.name != "call_id"]
    call_columns = [c for c in hook_call.c if c.name != "id"]
    with store.engine.connect() as connection:
        cards = connection.execute(sa.select(*card_columns).order_by(card_sent.c.uuid)).all()
        suggestions = connection.execute(sa.select(card_suggestion).order_by(card_suggestion.c.uuid)).all()
        calls = connection.execute(sa.select(*call_columns).order_by(hook_call.c.hook_instance)).all()
        unlinked = connection.execute(
            sa.select(sa.func.count()).select_from(card_sent)
            .where(card_sent.c.call_id.not_in(sa.select(hook_call.c.id)))
        ).scalar_one()
    assert unlinked == 0
    return [tuple(r) for r in cards], [tuple(r) for r in suggestions], [tuple(r) for r in calls]


@pytest.fixture
def journaled(monkeypatch, tmp_path: Path):
    """A journaled store whose cards move only when the test flushes. These tests read and write
    the journal file between two calls; the process's background thread, flushing every 0.2 s,
    would rename it aside in between (under load it did: FileNotFoundError on j.db-cards.journal),
    which is the journal's design, not a lost file. test_the_background_thread_flushes_the_journal
    covers that thread."""
    from cds_service.store import journal as journal_module

    monkeypatch.setattr(journal_module, "register", lambda _store: None)
    store = Store(f"sqlite:///{tmp_path / 'j.db'}", "k" * 32, card_journal=True)
    store.migrate()
    yield store
    store.dispose()


def test_the_background_thread_flushes_the_journal(tmp_path):
    import time

    from cds_service.store import journal as journal_module

    store = Store(f"sqlite:///{tmp_path / 'bg.db'}", "k" * 32, card_journal=True)
    try:
        store.migrate()
        record(store, "p1", card(card_uuid="card-bg"))
        assert store in set(journal_module._loop.members)
        deadline = time.monotonic() + 30  # bounded; the thread runs every 0.2 s
        while journal_files(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert journal_files(tmp_path) == []
        with store.engine.connect() as connection:
            assert connection.execute(sa.select(card_sent.c.uuid)).scalars().all() == ["card-bg"]
    finally:
        store.dispose()


def test_journaled_cards_reach_the_tables_exactly_as_direct_ones(tmp_path, journaled):
    direct = Store(f"sqlite:///{tmp_path / 'direct.db'}", "k" * 32)
    direct.migrate()
    sent_at = datetime(2026, 3, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))
    a = card("low-grip-strength", ["low-grip-strength", "slow-gait"], {"s-a1": "pt-referral"})
    b = card("cachexia", [], {"s-b1": "dietitian-referral", "s-b2": "oral-nutrition"})
    try:
        for store in (direct, journaled):
            record(store, "p1", a, b, sent_at=sent_at, hook_instance="hi-1")
            record(store, "p2", card("sarcopenia-screening-due", card_uuid="c-2"), hook_instance="hi-2")
        assert count(journaled, "card_sent") == 0  # still in the journal: one line per response
        assert (tmp_path / "j.db-cards.journal").read_bytes().count(b"\n") == 2
        assert journaled.flush_journal() == 2
        assert journal_files(tmp_path) == []
        assert count(journaled, "card_sent") == 3 and count(journaled, "card_suggestion") == 3
        assert rows(journaled) == rows(direct)
        with journaled.engine.connect() as connection:
            sent = connection.execute(sa.select(card_sent.c.sent_at).where(card_sent.c.uuid == a["uuid"])).scalar_one()
        assert sent == datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
        assert journaled.flush_journal() == 0
    finally:
        direct.dispose()


def test_feedback_links_to_a_card_still_in_the_journal_and_suppresses_it(journaled):
    a = card("low-grip-strength", suggestions={"s1": "pt-referral"}, card_uuid="card-in-journal")
    record(journaled, "p1", a)
    result = journaled.record_feedback("sarcopenia-patient-view", [overridden("card-in-journal")], T0)
    assert (result.stored, result.duplicates, result.unknown_cards) == (1, 0, [])
    with journaled.engine.connect() as connection:
        linked, patient = connection.execute(
            sa.select(feedback.c.card_sent_uuid, feedback.c.patient_pseudonym)).one()
    assert linked == "card-in-journal" and patient == journaled.pseudonymise("p1")
    hidden = journaled.suppressions("p1", T0 + timedelta(days=1), {"patient-declined": 90}, 30, 90)
    assert hidden.findings == frozenset({"low-grip-strength"})


def test_stats_count_the_cards_still_in_the_journal(journaled):
    record(journaled, "p1", card(), card())
    assert journaled.stats()["cards"] == 2


# a process that records cards through the journal and dies without flushing
DYING_WORKER = textwrap.dedent(
    """
    import os, sys
    from datetime import UTC, datetime
    from cds_service.store import Store

    store = Store(sys.argv[1], "k" * 32, card_journal=True)
    for n in range(3):
        store.record_cards(hook_instance=f"hi-{n}", service_id="sarcopenia-patient-view",
                           hook="patient-view", patient_id="p1", pack_version="sarcopenia@1.0.0",
                           cards=[{"uuid": f"card-{n}", "primary": "cachexia", "findings": ["cachexia"],
                                   "suggestions": {f"s-{n}": "dietitian-referral"}}],
                           sent_at=datetime.now(UTC))
    os._exit(0)
    """
)


def test_a_journal_left_by_a_process_that_died_is_written_at_the_next_start(tmp_path):
    url = f"sqlite:///{tmp_path / 'j.db'}"
    Store(url).migrate()
    subprocess.run([sys.executable, "-c", DYING_WORKER, url], check=True, timeout=60)
    assert journal_files(tmp_path) == ["j.db-cards.journal"]
    store = Store(url, "k" * 32)  # a store that does not append still writes what it finds
    try:
        store.migrate()
        assert journal_files(tmp_path) == []
        assert count(store, "card_sent") == 3 and count(store, "card_suggestion") == 3
    finally:
        store.dispose()


def test_a_flush_cut_short_after_its_commit_writes_nothing_twice(tmp_path, journaled):
    first, second = card(card_uuid="card-1"), card(card_uuid="card-2")
    record(journaled, "p1", first)
    line = (tmp_path / "j.db-cards.journal").read_bytes()
    journaled.flush_journal()
    # as if a flush had committed card-1 and died before removing its file: the file comes back,
    # with a later response in it
    record(journaled, "p1", second)
    taken = tmp_path / "j.db-cards.journal.00000000000000000001.1.flushing"
    taken.write_bytes(line + (tmp_path / "j.db-cards.journal").read_bytes())
    (tmp_path / "j.db-cards.journal").unlink()
    assert journaled.flush_journal() == 2
    assert journal_files(tmp_path) == []
    assert sorted(r[0] for r in rows(journaled)[0]) == ["card-1", "card-2"]


def test_a_flush_that_fails_keeps_the_journal_for_the_next_one(monkeypatch, tmp_path, journaled):
    record(journaled, "p1", card(card_uuid="card-1"))
    write = journaled._write_cards

    def broken(*_args):
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(journaled, "_write_cards", broken)
    with pytest.raises(sa.exc.OperationalError):
        journaled.flush_journal()
    assert count(journaled, "card_sent") == 0
    assert len(journal_files(tmp_path)) == 1 and journal_files(tmp_path)[0].endswith(".flushing")
    record(journaled, "p1", card(card_uuid="card-2"))  # appended meanwhile: a new journal
    monkeypatch.setattr(journaled, "_write_cards", write)
    assert journaled.flush_journal() == 2
    assert journal_files(tmp_path) == []
    assert sorted(r[0] for r in rows(journaled)[0]) == ["card-1", "card-2"]


def test_a_line_that_is_not_a_json_object_is_skipped_and_named(caplog, tmp_path, journaled):
    record(journaled, "p1", card(card_uuid="card-1"))
    with (tmp_path / "j.db-cards.journal").open("ab") as journal:
        journal.write(b'{"cards": [{"uuid": "cut-sh\n[1, 2]\n')
    record(journaled, "p1", card(card_uuid="card-2"))
    with caplog.at_level(logging.ERROR, logger="cds_service.store"):
        assert journaled.flush_journal() == 2
    skipped = [r for r in caplog.records if r.getMessage() == "card journal line skipped"]
    assert [(r.line, r.file.endswith(".flushing")) for r in skipped] == [(2, True), (3, True)]
    assert sorted(r[0] for r in rows(journaled)[0]) == ["card-1", "card-2"]


def test_only_sqlite_files_have_a_journal(make_store, backend):
    store = make_store(card_journal=True)
    record(store, "p1", card())
    assert count(store, "card_sent") == (0 if backend == "sqlite" else 1)
    memory = Store("sqlite://", card_journal=True)
    try:
        memory.migrate()
        record(memory, "p1", card())
        assert count(memory, "card_sent") == 1
    finally:
        memory.dispose()


# each worker: record RESPONSES responses of one card and one suggestion through the journal,
# flushing now and then as feedback would, while the background thread flushes too
APPENDING_WORKER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from cds_service.store import Store

    url, worker, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = Store(url, "k" * 32, card_journal=True)
    store.migrate()
    for i in range(n):
        store.record_cards(hook_instance=f"hi-{worker}-{i}", service_id="sarcopenia-patient-view",
                           hook="patient-view", patient_id=f"p-{i % 7}", pack_version="sarcopenia@1.0.0",
                           cards=[{"uuid": f"card-{worker}-{i}", "primary": "cachexia", "findings": ["cachexia"],
                                   "suggestions": {f"s-{worker}-{i}": "dietitian-referral"}}],
                           sent_at=datetime.now(UTC))
        if i % 50 == 25:
            store.flush_journal(wait=i % 100 == 25)
    store.dispose()
    """
)


@pytest.mark.slow
def test_processes_appending_while_others_flush_lose_and_repeat_nothing(tmp_path):
    url, workers, responses = f"sqlite:///{tmp_path / 'j.db'}", 3, 400
    Store(url).migrate()
    processes = [subprocess.Popen([sys.executable, "-c", APPENDING_WORKER, url, str(w), str(responses)],
                                  stderr=subprocess.PIPE, text=True) for w in range(workers)]
    for process in processes:
        _, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors
    assert journal_files(tmp_path) == []
    store = Store(url)
    try:
        cards, suggestions, calls = rows(store)
        assert sorted(r[0] for r in cards) == sorted(f"card-{w}-{i}" for w in range(workers) for i in range(responses))
        assert len(suggestions) == len(calls) == workers * responses
    finally:
        store.dispose()


def test_the_journal_line_holds_no_raw_patient_id(tmp_path, journaled):
    record(journaled, "Patient/raw-id-123", card())
    line = json.loads((tmp_path / "j.db-cards.journal").read_bytes())
    assert "raw-id-123" not in json.dumps(line)
    assert line["cards"][0]["patient_pseudonym"] == journaled.pseudonymise("Patient/raw-id-123")


def test_threads_appending_while_another_flushes_lose_nothing(monkeypatch, tmp_path, journaled):
    """gthread workers append from several threads while the background thread flushes: the
    rename of a flush waits for an append that has opened the journal and not yet written."""
    import os
    import threading
    import time

    from cds_service.store import journal as journal_module

    class SlowWrites:  # the journal module's os, with a pause between open and write
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def write(fd, data):
            time.sleep(0.002)
            return os.write(fd, data)

    monkeypatch.setattr(journal_module, "os", SlowWrites())
    threads, each = 4, 40
    done = threading.Event()

    def append(t: int) -> None:
        for i in range(each):
            record(journaled, "p1", card(card_uuid=f"card-{t}-{i:03d}"))

    def flush() -> None:
        while not done.is_set():
            journaled.flush_journal()

    appenders = [threading.Thread(target=append, args=(t,)) for t in range(threads)]
    flusher = threading.Thread(target=flush)
    flusher.start()
    for thread in appenders:
        thread.start()
    for thread in appenders:
        thread.join()
    done.set()
    flusher.join()
    journaled.flush_journal()
    assert sorted(r[0] for r in rows(journaled)[0]) == sorted(
        f"card-{t}-{i:03d}" for t in range(threads) for i in range(each))


def test_a_record_of_another_version_is_set_aside_and_the_rest_written(caplog, tmp_path, journaled):
    record(journaled, "p1", card(card_uuid="card-1"))
    with (tmp_path / "j.db-cards.journal").open("ab") as journal:
        journal.write(b'{"v": 3, "cards": [], "suggestions": []}\n')
        journal.write(b'{"v": 1, "cards": [{"uuid": "card-x"}], "suggestions": []}\n')
    record(journaled, "p1", card(card_uuid="card-2"))
    with caplog.at_level(logging.ERROR, logger="cds_service.store"):
        assert journaled.flush_journal() == 4
    assert sorted(r[0] for r in rows(journaled)[0]) == ["card-1", "card-2"]
    rejected = (tmp_path / "j.db-cards.journal.rejected").read_bytes().splitlines()
    assert [json.loads(line) for line in rejected] == [
        {"v": 3, "cards": [], "suggestions": []},
        {"v": 1, "cards": [{"uuid": "card-x"}], "suggestions": []},
    ]
    [logged] = [r for r in caplog.records if r.getMessage() == "card journal records set aside"]
    assert (logged.records, logged.reason) == (2, "not a card record of versions (1, 2)")
    assert journal_files(tmp_path) == ["j.db-cards.journal.rejected"]


def test_feedback_is_stored_when_the_journal_cannot_be_written_and_linked_later(monkeypatch, journaled):
    record(journaled, "p1", card("cachexia", card_uuid="card-1"))
    write = journaled._write_cards

    def broken(*_args):
        raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(journaled, "_write_cards", broken)
    result = journaled.record_feedback("sarcopenia-patient-view", [overridden("card-1")], T0)
    assert (result.stored, result.unknown_cards) == (1, ["card-1"])
    monkeypatch.setattr(journaled, "_write_cards", write)
    journaled.flush_journal()
    hidden = journaled.suppressions("p1", T0 + timedelta(days=1), {"patient-declined": 90}, 30, 90)
    assert hidden.findings == frozenset({"cachexia"})


def test_a_failing_background_flush_is_logged_when_it_starts_and_when_it_ends(monkeypatch, caplog):
    from cds_service.store import journal as journal_module

    class Flaky:
        failing = True

        def flush_journal(self, *, wait):
            if self.failing:
                raise OSError("database is locked")
            return 0

    store, failing_since, clock = Flaky(), {}, [1000.0]
    monkeypatch.setattr(journal_module.time, "monotonic", lambda: clock[0])
    with caplog.at_level(logging.INFO, logger="cds_service.store"):
        for step in (0.0, 0.2, 29.0, 30.5):  # seconds since the first failure
            clock[0] = 1000.0 + step
            journal_module.flush_round([store], failing_since)
        store.failing = False
        journal_module.flush_round([store], failing_since)
        journal_module.flush_round([store], failing_since)
    assert [r.getMessage() for r in caplog.records] == [
        "card journal flush failed; kept on disk and tried again",
        "card journal flush failed; kept on disk and tried again",
        "card journal written again",
    ]


def test_a_line_cut_short_by_a_full_disk_loses_only_itself(caplog, tmp_path, journaled):
    """A write cut short leaves a piece without its newline: the next record, appended after
    it on the same line, is still written."""
    record(journaled, "p1", card(card_uuid="card-1"))
    with (tmp_path / "j.db-cards.journal").open("ab") as journal:
        journal.write(b'{"v":1,"cards":[{"uuid":"card-cut","hook_inst')  # no newline
    record(journaled, "p1", card(card_uuid="card-2"))
    with caplog.at_level(logging.ERROR, logger="cds_service.store"):
        assert journaled.flush_journal() == 2
    assert sorted(r[0] for r in rows(journaled)[0]) == ["card-1", "card-2"]
    assert [(r.getMessage(), r.line) for r in caplog.records] == [("card journal piece skipped", 2)]


def test_a_version_1_line_left_by_the_old_release_is_written_with_the_call_its_cards_imply(tmp_path, journaled):
    """A journal written before 0004 (cards only, "v": 1) is still read after the upgrade."""
    line = {
        "v": 1,
        "cards": [{
            "uuid": "old-card", "hook_instance": "hi-old", "service_id": "sarcopenia-patient-view",
            "hook": "patient-view", "patient_pseudonym": "p" * 64, "pack_version": "sarcopenia@0.9.0",
            "primary_finding": "cachexia", "findings": ["cachexia"], "sent_at": "2026-01-15T09:30:00+00:00",
        }],
        "suggestions": [{"uuid": "old-s", "card_uuid": "old-card", "key": "dietitian-referral"}],
    }
    (tmp_path / "j.db-cards.journal").write_bytes(json.dumps(line).encode() + b"\n")
    assert journaled.flush_journal() == 1
    with journaled.engine.connect() as connection:
        call = connection.execute(sa.select(hook_call)).one()
        linked = connection.execute(sa.select(card_sent.c.call_id, card_sent.c.issuer)).one()
    assert (call.id, call.hook_instance, call.pack_version, call.status, call.cards, call.duration_ms) == (
        "legacy:sarcopenia-patient-view:hi-old", "hi-old", "sarcopenia@0.9.0", 200, 1, None)
    assert tuple(linked) == ("legacy:sarcopenia-patient-view:hi-old", None)
    assert journal_files(tmp_path) == []
