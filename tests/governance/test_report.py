"""The governance report's exact figures, alarm, CSV and JSON, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime

import pytest

from cds_service.governance import build_report, render

from . import history
from .history import NEW, OLD

SINCE, UNTIL = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
NOW = datetime(2026, 4, 2, tzinfo=UTC)


@pytest.fixture
def report(store):
    history.build(store)
    return build_report(store, SINCE, UNTIL, retention_days=None, now=NOW)


def row(report, month, finding):
    [found] = [r for r in report.rows if r["month"] == month and r["finding"] == finding]
    return found


def test_calls_errors_and_response_times_per_month_and_pack(report):
    assert report.calls == [
        # nearest rank: the 50th and 99th of 1..100 ms
        {"month": "2026-01", "pack_version": OLD, "calls": 100, "errors": 1, "p50_ms": 50.0, "p99_ms": 99.0},
        {"month": "2026-02", "pack_version": OLD, "calls": 100, "errors": 0, "p50_ms": 10.0, "p99_ms": 10.0},
        {"month": "2026-03", "pack_version": NEW, "calls": 100, "errors": 0, "p50_ms": 5.0, "p99_ms": 5.0},
    ]


def test_january_low_smi(report):
    assert row(report, "2026-01", "low-smi") == {
        "month": "2026-01", "pack_version": OLD, "finding": "low-smi", "calls": 100, "cards": 20,
        "rate_per_1000": 200.0, "accepted": 5,
        "accepted_by_suggestion": {"dietitian-referral": 3, "pt-referral": 2},
        "overridden": 4, "overridden_by_reason": {"measurement-doubtful": 1, "patient-declined": 3},
        "no_feedback": 11, "suppressed": 3, "undetermined": 0, "undetermined_by_missing": {},
        "p50_ms": 50.0, "p99_ms": 99.0, "errors": 1,
    }


def test_january_cachexia(report):
    got = row(report, "2026-01", "cachexia")
    assert (got["cards"], got["rate_per_1000"], got["accepted"], got["overridden"]) == (30, 300.0, 0, 2)
    assert got["overridden_by_reason"] == {"already-under-care": 2}
    assert (got["no_feedback"], got["suppressed"], got["undetermined"]) == (28, 0, 2)
    assert got["undetermined_by_missing"] == {"Observation": 2}


def test_the_finding_that_stopped_shows_zero_and_raises_the_alarm(report):
    march = row(report, "2026-03", "cachexia")
    assert (march["pack_version"], march["calls"], march["cards"], march["rate_per_1000"]) == (NEW, 100, 0, 0.0)
    assert [(a.finding, a.kind) for a in report.alarms] == [("cachexia", "stopped-after-pack-change")]
    [alarm] = report.alarms
    assert alarm.before == {"pack_version": OLD, "cards": 60, "calls": 200}
    assert alarm.after == {"pack_version": NEW, "cards": 0, "calls": 100}
    # given 60 cards in all, each falls in the new pack's 100 of 300 calls with p = 1/3: P(none) = (2/3)^60
    assert alarm.p_value == pytest.approx((2 / 3) ** 60, rel=1e-9)
    assert alarm.message.startswith(
        f"cachexia: 60 cards in 200 calls (300.0 per 1,000) under {OLD}, none in 100 calls under {NEW}")


def test_an_unchanged_rate_raises_no_alarm(report):
    assert [r["rate_per_1000"] for r in report.rows if r["finding"] == "low-smi"] == [200.0, 200.0, 200.0]
    assert all(a.finding != "low-smi" for a in report.alarms)


def test_period_is_stated(report):
    assert report.period["since"] == "2026-01-01T00:00:00Z" and report.period["until"] == "2026-04-01T00:00:00Z"
    assert report.period["data_from"] == "2026-01-05T00:00:00Z"
    assert report.period["data_to"] == "2026-03-05T16:30:00Z"
    assert report.period["note"] == "nothing is purged (retention.days unset)"


def test_csv_contents(report):
    lines = list(csv.reader(io.StringIO(render(report, "csv"))))
    assert lines[0][:6] == ["month", "pack_version", "finding", "calls", "cards", "rate_per_1000"]
    assert len(lines) == 1 + 3 * 2  # a row per month and finding, zeros included
    assert ["2026-01", OLD, "low-smi", "100", "20", "200.0", "5", "dietitian-referral=3;pt-referral=2", "4",
            "measurement-doubtful=1;patient-declined=3", "11", "3", "0", "", "50.0", "99.0", "1"] in lines
    assert ["2026-03", NEW, "cachexia", "100", "0", "0.0", "0", "", "0", "", "0", "0", "0", "", "5.0", "5.0",
            "0"] in lines


def test_json_contents(report):
    data = json.loads(render(report, "json"))
    assert set(data) == {"period", "method", "calls", "findings", "alarms"}
    assert data["findings"] == report.rows and data["calls"] == report.calls
    assert [(a["finding"], a["kind"]) for a in data["alarms"]] == [("cachexia", "stopped-after-pack-change")]
    assert "Przyborowski" in data["method"]


def test_html_has_the_plots_inline_and_no_external_resource(report):
    page = render(report, "html")
    assert page.count("<figure class='plot'>") == 2 and page.count("<svg") == 2
    assert re.findall(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", page) == []  # nothing fetched from anywhere
    assert "<script" not in page and "<link" not in page and "<metadata>" not in page
    assert "stopped-after-pack-change" in page


def test_a_period_excludes_what_lies_outside_it(store):
    history.build(store)
    february = build_report(store, datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC), now=NOW)
    assert [c["month"] for c in february.calls] == ["2026-02"]
    assert february.alarms == []
