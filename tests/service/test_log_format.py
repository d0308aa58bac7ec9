"""The JSON log line: one object, extras included, nothing lost to values orjson cannot write."""

from __future__ import annotations

import json
import logging

from cds_service.logs import JsonFormatter


def _record(**extra) -> logging.LogRecord:
    record = logging.LogRecord("cds_service", logging.INFO, __file__, 1, "hook answered", (), None)
    record.created, record.msecs = 1_795_000_000.25, 250.0
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_one_json_object_with_time_level_event_and_extras():
    line = JsonFormatter().format(_record(service="sarcopenia-patient-view", findings=["low-smi"], cards=2))
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2026-11-18T11:06:40.250Z", "level": "INFO", "logger": "cds_service", "event": "hook answered",
        "service": "sarcopenia-patient-view", "findings": ["low-smi"], "cards": 2,
    }


def test_values_orjson_cannot_write_are_still_logged():
    entry = json.loads(JsonFormatter().format(_record(big=2**70, keyed={1: "ä"}, thing=ValueError("x"))))
    assert entry["big"] == 2**70
    assert entry["keyed"] == {"1": "ä"}
    assert entry["thing"] == "x"
