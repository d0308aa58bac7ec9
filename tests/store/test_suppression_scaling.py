"""suppressions() reads a patient's feedback, so its cost does not grow with the cards sent.

A patient whose chart is opened many times a day gets a card row per opening. The read must
start from that patient's feedback and reach cards only by primary key; starting from the
patient's cards made every hook call slower than the one before. Checked through the query
plans of the statements suppressions() actually runs, and on SQLite through the number of
virtual-machine steps it takes, which is deterministic where timing is not.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from .helpers import T0, accepted, card, overridden, record

PATIENT = "Patient/often-seen"


def suppress(store) -> Any:
    return store.suppressions(PATIENT, T0 + timedelta(days=1), {}, 30, 90)


def with_feedback(store) -> None:
    a = card("low-smi", suggestions={"s1": "dietitian-referral"})
    b = card("low-grip-strength")
    record(store, PATIENT, a, b)
    store.record_feedback("sarcopenia-patient-view", [overridden(b["uuid"]), accepted(a["uuid"], "s1")], T0)


def more_cards(store, n: int) -> None:
    for _ in range(n):
        record(store, PATIENT, card("low-smi"), card("low-gait-speed"))


@contextmanager
def captured_selects(store):
    """(statement, parameters) of every SELECT the store sends while the block runs."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)


def plans(store) -> list[str]:
    """The plan of each SELECT of one suppressions() call, one string per statement."""
    with captured_selects(store) as selects:
        suppress(store)
    assert selects, "suppressions() ran no SELECT: nothing to check"
    out = []
    with store.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # tables this small are cheapest to scan whole; ask which index the query can use
            connection.exec_driver_sql("SET enable_seqscan = off")
            explain = "EXPLAIN "
        else:
            explain = "EXPLAIN QUERY PLAN "
        for statement, parameters in selects:
            rows = connection.exec_driver_sql(explain + statement, parameters).all()
            out.append("\n".join(str(row[-1]) for row in rows))
    return out


def test_suppression_reads_feedback_by_patient_and_cards_by_key(store):
    with_feedback(store)
    more_cards(store, 20)
    assert suppress(store).findings == frozenset({"low-grip-strength"})
    for plan in plans(store):
        assert "ix_card_sent_patient_pseudonym" not in plan, plan
        assert "ix_feedback_patient_pseudonym_outcome_outcome_timestamp" in plan, plan
        if store.engine.dialect.name == "sqlite":
            card_steps = [line for line in plan.splitlines() if " card_sent " in line + " "]
            assert card_steps, plan
            assert all("(uuid=?)" in line for line in card_steps), plan


def sqlite_steps(store) -> int:
    """Virtual-machine steps SQLite takes for one suppressions() call."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    def on_checkout(dbapi_connection, _record, _proxy):
        dbapi_connection.set_progress_handler(count, 1)

    sa.event.listen(store.engine, "checkout", on_checkout)
    try:
        suppress(store)
    finally:
        sa.event.remove(store.engine, "checkout", on_checkout)
        with store.engine.connect() as connection:
            connection.connection.driver_connection.set_progress_handler(None, 1)
    return steps


def test_suppression_work_does_not_grow_with_cards_sent(make_store, backend):
    if backend != "sqlite":
        pytest.skip("the step counter is SQLite's; the plan test covers PostgreSQL")
    store = make_store()
    with_feedback(store)
    suppress(store)  # warm: key, statement cache
    few = sqlite_steps(store)
    more_cards(store, 300)
    many = sqlite_steps(store)
    # reaching 600 more cards through the patient would take thousands of steps; a deeper
    # B-tree under the card key may take a few more
    assert many < few * 1.2, (few, many)
