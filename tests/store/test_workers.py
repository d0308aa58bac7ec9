"""Several worker processes (as under gunicorn) on one SQLite file or PostgreSQL schema."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from .helpers import count

WORKERS = 4
ENTRIES = 200

# each worker: its own Store, migrate at start (like the app), then post every entry, in its
# own order, five to a post; prints what record_feedback reported
WORKER = textwrap.dedent(
    """
    import json, random, sys
    from datetime import UTC, datetime
    from cds_service.store import Store

    url, seed, n, key_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    store = Store(url, pseudonym_key_file=None if url.startswith("sqlite") else key_file)
    store.migrate()
    store.pseudonymise("Patient/worker-start")
    entries = [
        {"card": f"card-{i:04d}", "outcome": "overridden",
         "overrideReason": {"reason": {"code": "patient-declined"}},
         "outcomeTimestamp": f"2026-01-15T09:{i // 60:02d}:{i % 60:02d}Z"}
        for i in range(n)
    ]
    random.Random(seed).shuffle(entries)
    stored = duplicates = 0
    for start in range(0, n, 5):
        result = store.record_feedback("sarcopenia-patient-view", entries[start:start + 5], datetime.now(UTC))
        stored += result.stored
        duplicates += result.duplicates
    print(json.dumps({"stored": stored, "duplicates": duplicates,
                      "pseudonym": store.pseudonymise("Patient/x")}))
    store.dispose()
    """
)


@pytest.mark.slow
def test_worker_processes_store_each_entry_once(make_store, database_url, tmp_path):
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, database_url, str(seed), str(ENTRIES), str(tmp_path / "pg-pseudonym.key")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(WORKERS)
    ]
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-2000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(r["stored"] for r in reports) == ENTRIES
    assert sum(r["duplicates"] for r in reports) == ENTRIES * (WORKERS - 1)
    assert len({r["pseudonym"] for r in reports}) == 1  # one generated key for all workers
    store = make_store(migrate=False)
    assert count(store, "feedback") == ENTRIES
    assert count(store, "service_secret") == 0  # the generated key is in a file, not the database
    assert store.pseudonymise("Patient/x") == reports[0]["pseudonym"]
