"""How long the governance report takes on a year of a large hospital's data.

Generates a year (2025) of hook calls, cards and feedback into a fresh database through the
store's own schema, then times the report (SQL aggregation, alarms, rendering) over the year.
Run on demand:

    python bench/bench_report.py                       # 5,000,000 cards on a SQLite file in /tmp
    python bench/bench_report.py --url postgresql+psycopg://postgres@127.0.0.1:5432/bench
    python bench/bench_report.py --cards 200000        # a quick look

Shape of the data (deterministic): per 5 cards, 3 calls: one sent no card, one sent 2, one sent
3; 8 findings, weighted; 2 pack versions (the second from July, under which one finding no
longer fires); 5 % of cards get feedback (accepted with one suggestion, or overridden with one
of four reasons); 2 % of calls hid a finding by earlier feedback, 1 % left one undetermined.
Card uuids are sequential (inserting random uuid4 keys only slows the generation); suggestion
rows exist for the cards with accepted feedback (the join reaches them by card).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from cds_service.governance import build_report, render
from cds_service.store import Store
from cds_service.store.models import call_finding, card_sent, card_suggestion, feedback, hook_call

FINDINGS = ["sarcopenia-screening-due", "probable-sarcopenia", "confirmed-sarcopenia", "severe-sarcopenia",
            "low-skeletal-muscle-index", "sarcopenic-obesity", "cancer-cachexia", "systemic-inflammation"]
WEIGHTS = [30, 20, 12, 6, 14, 5, 9, 4]
REASONS = ["patient-declined", "already-under-care", "palliative-focus", "measurement-doubtful"]
YEAR = datetime(2025, 1, 1, tzinfo=UTC)
SECONDS = 365 * 24 * 3600
BATCH = 50_000


def _weighted() -> list[str]:
    return [f for f, w in zip(FINDINGS, WEIGHTS, strict=True) for _ in range(w)]


def generate(store: Store, cards_wanted: int) -> dict[str, int]:
    """Insert the year; the number of rows per table."""
    pool = _weighted()
    calls_total = cards_wanted * 3 // 5
    counts = dict.fromkeys(["hook_call", "card_sent", "feedback", "card_suggestion", "call_finding"], 0)
    calls, cards, notes, suggestions, states = [], [], [], [], []

    def flush() -> None:
        with store.engine.begin() as connection:
            for table, rows in ((hook_call, calls), (card_sent, cards), (card_suggestion, suggestions),
                                (feedback, notes), (call_finding, states)):
                if rows:
                    connection.execute(table.insert(), rows)
                    counts[table.name] += len(rows)
                    rows.clear()

    card_number = 0
    for i in range(calls_total):
        at = YEAR + timedelta(seconds=SECONDS * i // calls_total)
        pack = "sarcopenia-core@1.0.0" if at.month < 7 else "sarcopenia-core@1.1.0"
        call_id = f"c{i:010d}"
        n_cards = (0, 2, 3)[i % 3]
        patient = f"{i % 400_000:064x}"
        calls.append({"id": call_id, "hook_instance": f"h{i:010d}", "called_at": at,
                      "service_id": "sarcopenia-patient-view", "hook": "patient-view", "issuer": "https://ehr",
                      "tenant": "", "patient_pseudonym": patient, "pack_version": pack,
                      "status": 500 if i % 5000 == 0 else 200, "duration_ms": 2.0 + (i * 7919 % 1000) / 100,
                      "cards": n_cards, "detail": {}, "month": at.strftime("%Y-%m")})
        calls[-1]["duration_tenths"] = int(calls[-1]["duration_ms"] * 10)
        if i % 50 == 7:
            states.append({"call_id": call_id, "finding": pool[i % len(pool)], "state": "suppressed", "missing": None})
        if i % 100 == 11:
            states.append({"call_id": call_id, "finding": "cancer-cachexia", "state": "undetermined",
                           "missing": "Observation"})
        for j in range(n_cards):
            finding = pool[(i * 3 + j * 17) % len(pool)]
            if pack.endswith("1.1.0") and finding == "systemic-inflammation":
                finding = "cancer-cachexia"  # stopped firing after the pack change
            uuid = f"k{card_number:012d}"
            card_number += 1
            cards.append({"uuid": uuid, "hook_instance": f"h{i:010d}", "service_id": "sarcopenia-patient-view",
                          "hook": "patient-view", "patient_pseudonym": patient, "pack_version": pack,
                          "primary_finding": finding, "findings": [finding], "sent_at": at, "call_id": call_id,
                          "issuer": "https://ehr", "tenant": "", "month": at.strftime("%Y-%m")})
            if card_number % 20 == 0:
                accepted = card_number % 40 == 0
                suggestion = f"s{card_number:012d}"
                if accepted:
                    suggestions.append({"uuid": suggestion, "card_uuid": uuid, "key": "dietitian-referral"})
                notes.append({"card_uuid": uuid, "card_sent_uuid": uuid, "patient_pseudonym": patient,
                              "outcome": "accepted" if accepted else "overridden",
                              "outcome_timestamp": at + timedelta(minutes=2),
                              "override_reason_system": None if accepted else "https://sarcopenia-cds.org/CodeSystem/override-reason",
                              "override_reason_code": None if accepted else REASONS[card_number // 20 % 4],
                              "override_reason_display": None, "user_comment": None,
                              "accepted_suggestions": [suggestion] if accepted else [],
                              "service_id": "sarcopenia-patient-view", "received_at": at + timedelta(minutes=2),
                              "issuer": "https://ehr", "tenant": "", "lift_id": None})
        if len(cards) >= BATCH:
            flush()
    flush()
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="database URL (default: a new SQLite file in /tmp)")
    parser.add_argument("--cards", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = None
    url = args.url
    if url is None:
        folder = tempfile.mkdtemp(prefix="bench-report-")
        url = f"sqlite:///{os.path.join(folder, 'report.db')}"
    store = Store(url, "bench-key")
    store.migrate()
    started = time.perf_counter()
    counts = generate(store, args.cards)
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    else:
        with store.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    generated = time.perf_counter() - started
    print(json.dumps({"database": store.engine.dialect.name, "rows": counts, "generate_s": round(generated, 1)}))
    timings = []
    for _ in range(args.repeat):
        started, cpu = time.perf_counter(), time.process_time()
        report = build_report(store, YEAR, YEAR + timedelta(days=365))
        built, built_cpu = time.perf_counter(), time.process_time()
        html = render(report, "html")
        done = time.perf_counter()
        # CPU time of this process: on SQLite the queries run here, so it is the work itself,
        # whatever else the machine runs (on PostgreSQL the server's CPU is not in it)
        timings.append((built - started, done - built, built_cpu - cpu))
    build = statistics.median(t[0] for t in timings)
    draw = statistics.median(t[1] for t in timings)
    print(json.dumps({
        "report_rows": len(report.rows), "alarms": [(a.finding, a.kind) for a in report.alarms],
        "html_bytes": len(html), "build_s_median": round(build, 2), "render_html_s_median": round(draw, 3),
        "build_s_all": [round(t[0], 2) for t in timings],
        "build_cpu_s_median": round(statistics.median(t[2] for t in timings), 2),
        "load_average": os.getloadavg(),
    }))
    store.dispose()
    if folder is not None:
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
