"""A broken pack saved while the real service runs: the reload is refused and operations see it
(ERROR log with every diagnostic, /healthz "degraded", a metric), and the old rules keep answering."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from tests.support import tokens
from tests.support.ehr import hook_request, prefetch_for, shift_dates
from tests.support.patients import severe_sarcopenia
from tests.support.server import running_service

pytestmark = pytest.mark.slow
TEST_NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)

# The hospital's own grip cut-off for women: < 18 kg instead of EWGSOP2's < 16 kg.
GOOD = """\
pack: {id: hospital-test, version: 1.0.0, title: {en: Test hospital, zh-CN: 测试医院}, locales: [en, zh-CN]}
references:
  hospital-test-nc12: {citation: "Test hospital nutrition committee policy NC-12 (reload test).", short: Test hospital NC-12}
parameters:
  grip_low:
    unit: kg
    profiles:
      ewgsop2: {male: 30, female: 18, source: hospital-test-nc12}
      awgs2019: {male: 28, female: 18, source: chen-2020}
"""
# Saved over it: a non-UCUM unit and a misspelled parameter name (two diagnostics).
BROKEN = GOOD.replace("version: 1.0.0", "version: 1.1.0").replace("unit: kg", "unit: lb") + (
    "  ct_window_day: {unit: d, value: 60, source: hospital-test-nc12}\n"
)


#: /metrics answers only with its bearer token (metrics.token)
METRICS_TOKEN = "reload-test-metrics-token"

def health(base: str) -> dict:
    return requests.get(base + "/healthz", timeout=5).json()


def wait_for(base: str, predicate, seconds: float = 20.0) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        body = health(base)
        if predicate(body):
            return body
        assert time.monotonic() < deadline, f"/healthz never matched: {body}"
        time.sleep(0.2)


def severe_card_summary(base: str) -> str:
    discovery = requests.get(base + "/cds-services", timeout=5,
                             headers={"Authorization": f"Bearer {tokens.token(base + '/cds-services')}"})
    service = next(s for s in discovery.json()["services"] if s["hook"] == "patient-view")
    path = f"/cds-services/{service['id']}"
    resources = shift_dates(severe_sarcopenia(), datetime.now(timezone.utc) - TEST_NOW)
    body = hook_request("patient-view", "sev-1", prefetch_for(resources, service["prefetch"]))
    answer = requests.post(base + path, json=body, timeout=10,
                           headers={"Authorization": f"Bearer {tokens.token(base + path)}"})
    assert answer.status_code == 200, answer.text
    card = answer.json()["cards"][0]
    assert card["source"]["topic"]["code"] == "severe-sarcopenia"
    return card["summary"]


def test_a_broken_pack_saved_while_serving_is_refused_visibly_and_the_old_rules_answer(tmp_path):
    override = tmp_path / "hospital.yaml"
    override.write_text(GOOD, encoding="utf-8")
    # the override alone: the bundled packs come first implicitly (from the installed package)
    env = {"SARCOPENIA_CDS_RULES__PATHS": f'["{override}"]', "SARCOPENIA_CDS_RULES__WATCH": "true",
           "SARCOPENIA_CDS_METRICS__TOKEN": METRICS_TOKEN,
           "SARCOPENIA_CDS_RULES__WATCH_INTERVAL_SECONDS": "0.3", "SARCOPENIA_CDS_LOGGING__FORMAT": "json"}
    with running_service(f"sqlite:///{tmp_path / 'cds.db'}", tmp_path, extra_env=env) as (base, process):
        good = "sarcopenia-core@1.0.0+hospital-test@1.0.0"
        first = health(base)
        assert first["status"] == "ok" and first["rules"]["version"] == good
        before = severe_card_summary(base)
        assert "grip 14.0 kg (< 18 kg)" in before  # the hospital's cut-off is in force

        override.write_text(BROKEN, encoding="utf-8")
        degraded = wait_for(base, lambda b: b["status"] == "degraded")
        diagnostics = [
            f"{override}:6:11: rule_unit_error: $.parameters.grip_low.unit: 'lb' is not a UCUM unit; "
            "did you mean '[lb_av]'?",
            f"{override}:10:3: rule_reference_error: $.parameters.ct_window_day: unknown parameter "
            "'ct_window_day'; did you mean 'ct_window_days'? (no pack that 'hospital-test' builds on "
            "defines 'ct_window_day', and nothing reads it)",
        ]
        assert degraded["rules"]["version"] == good  # the last good set serves
        assert degraded["rules"]["errors"][:1] == diagnostics[:1] and diagnostics[1] in degraded["rules"]["errors"]
        assert degraded["error"].startswith(f"rule pack reload refused ({len(degraded['rules']['errors'])} error(s)); "
                                            f"the last good set {good} keeps serving: ")
        assert severe_card_summary(base) == before  # the old rules keep answering

        metrics = requests.get(base + "/metrics", timeout=5, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
        assert 'cds_rule_reloads_refused_total{trigger="watch"} 1.0' in metrics

        log = next(tmp_path.glob("server-*.log")).read_text(encoding="utf-8")
        refused = [json.loads(line) for line in log.splitlines()
                   if line.startswith("{") and '"rule pack reload refused"' in line]
        assert len(refused) == 1, log[-3000:]
        (entry,) = refused
        assert entry["level"] == "ERROR" and entry["trigger"] == "watch" and entry["pack_version"] == good
        assert entry["diagnostics"] == degraded["rules"]["errors"]
        assert set(diagnostics) <= set(entry["diagnostics"])

        override.write_text(GOOD.replace("version: 1.0.0", "version: 1.2.0"), encoding="utf-8")
        fixed = wait_for(base, lambda b: b["status"] == "ok")
        assert fixed["rules"]["version"] == "sarcopenia-core@1.0.0+hospital-test@1.2.0"
        assert "last_error" not in fixed["rules"] and "error" not in fixed
        assert process.poll() is None


def test_the_service_starts_from_an_empty_folder_with_the_override_alone(tmp_path):
    """No rules/ folder beside the working directory: `rules.paths` names `bundled` and a file."""
    override = tmp_path / "hospital.yaml"
    override.write_text(GOOD, encoding="utf-8")
    env = {"SARCOPENIA_CDS_RULES__PATHS": f'["bundled", "{override}"]'}
    assert not (tmp_path / "rules").exists()
    with running_service(f"sqlite:///{tmp_path / 'cds.db'}", tmp_path, extra_env=env) as (base, _process):
        assert health(base)["rules"]["version"] == "sarcopenia-core@1.0.0+hospital-test@1.0.0"
        assert Path(tmp_path).is_dir()
