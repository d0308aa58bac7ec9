"""Hot reload of rule packs in the real server: SIGHUP and file changes; a broken set is refused."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import requests

from tests.support.server import running_service

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

OVERRIDE = """\
pack: {{id: hospital-test, version: {version}, title: {{en: Test hospital, zh-CN: 测试医院}}, locales: [en, zh-CN]}}
references:
  hospital-test-policy: {{citation: "Test hospital nutrition committee policy, for the reload test."}}
"""


def health(base: str) -> dict:
    return requests.get(base + "/healthz", timeout=5).json()


def wait_for(base: str, predicate, seconds: float = 60.0) -> dict:  # 15 s failed at load 22 on 2 cores
    deadline = time.monotonic() + seconds
    while True:
        body = health(base)
        if predicate(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"/healthz never matched: {body}")
        time.sleep(0.2)


def test_sighup_reloads_packs_and_keeps_the_last_good_set(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules" / "sarcopenia", rules / "sarcopenia", ignore=shutil.ignore_patterns("tests"))
    override = tmp_path / "hospital.yaml"
    override.write_text(OVERRIDE.format(version="1.0.0"), encoding="utf-8")
    env = {"SARCOPENIA_CDS_RULES__PATHS": f'["{rules}", "{override}"]'}
    with running_service(f"sqlite:///{tmp_path / 'cds.db'}", tmp_path, workers=2, extra_env=env) as (base, process):
        assert health(base)["rules"]["version"] == "sarcopenia-core@1.0.0+hospital-test@1.0.0"

        override.write_text(OVERRIDE.format(version="1.1.0") + "value_sets: {grip-strength: [{system: nowhere}]}\n",
                            encoding="utf-8")
        os.kill(process.pid, signal.SIGHUP)
        broken = wait_for(base, lambda b: "last_error" in b["rules"])
        assert broken["rules"]["version"] == "sarcopenia-core@1.0.0+hospital-test@1.0.0"
        assert "hospital.yaml" in broken["rules"]["last_error"]
        assert "rule_schema_error" in broken["rules"]["last_error"]

        override.write_text(OVERRIDE.format(version="1.2.0"), encoding="utf-8")
        os.kill(process.pid, signal.SIGHUP)
        fixed = wait_for(base, lambda b: b["rules"]["version"].endswith("hospital-test@1.2.0") and "last_error" not in b["rules"])
        assert fixed["rules"]["versions"] == {"sarcopenia-core": "1.0.0", "hospital-test": "1.2.0"}
        # every worker reaches the new set (each compiles it on its own; new connections spread
        # the health calls over both workers)
        deadline = time.monotonic() + 60  # a loaded machine (load 22 on 2 cores) compiles slowly
        while (versions := {health(base)["rules"]["version"] for _ in range(20)}) != {
                "sarcopenia-core@1.0.0+hospital-test@1.2.0"}:
            assert time.monotonic() < deadline, f"workers still answer {versions}"
            time.sleep(0.2)
        assert process.poll() is None


def test_file_change_is_picked_up_without_a_signal(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules" / "sarcopenia", rules / "sarcopenia", ignore=shutil.ignore_patterns("tests"))
    override = tmp_path / "hospital.yaml"
    override.write_text(OVERRIDE.format(version="2.0.0"), encoding="utf-8")
    env = {"SARCOPENIA_CDS_RULES__PATHS": f'["{rules}", "{override}"]', "SARCOPENIA_CDS_RULES__WATCH": "true",
           "SARCOPENIA_CDS_RULES__WATCH_INTERVAL_SECONDS": "0.5"}
    with running_service(f"sqlite:///{tmp_path / 'cds.db'}", tmp_path, extra_env=env) as (base, _process):
        override.write_text(OVERRIDE.format(version="2.0.1"), encoding="utf-8")
        wait_for(base, lambda b: b["rules"]["version"].endswith("hospital-test@2.0.1"))


def _workers(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return [int(pid) for pid in children]


def test_a_worker_started_while_the_files_are_broken_serves_the_last_good_set(tmp_path):
    """A worker that dies and is replaced while the pack files are broken must not take the
    service down: it starts from the master's last good set."""
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules" / "sarcopenia", rules / "sarcopenia", ignore=shutil.ignore_patterns("tests"))
    override = tmp_path / "hospital.yaml"
    override.write_text(OVERRIDE.format(version="3.0.0"), encoding="utf-8")
    env = {"SARCOPENIA_CDS_RULES__PATHS": f'["{rules}", "{override}"]'}
    with running_service(f"sqlite:///{tmp_path / 'cds.db'}", tmp_path, workers=2, extra_env=env) as (base, process):
        good = "sarcopenia-core@1.0.0+hospital-test@3.0.0"
        override.write_text(OVERRIDE.format(version="3.1.0") + "value_sets: {grip-strength: [{system: nowhere}]}\n",
                            encoding="utf-8")
        os.kill(process.pid, signal.SIGHUP)  # may also land on a worker still booting
        before = _workers(process.pid)
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while victim in _workers(process.pid) or len(_workers(process.pid)) < 2:
            assert process.poll() is None, "the master stopped"
            assert time.monotonic() < deadline, "no replacement worker"
            time.sleep(0.2)
        replacement = next(pid for pid in _workers(process.pid) if pid != victim and pid not in before)
        time.sleep(5)  # booting (loading and compiling the packs) takes well under that
        assert process.poll() is None, "the master stopped: a worker failed to boot"
        assert replacement in _workers(process.pid), "the replacement worker died while booting"
        deadline = time.monotonic() + 60  # a loaded machine (load 22 on 2 cores) compiles slowly
        while (versions := {health(base)["rules"]["version"] for _ in range(20)}) != {good}:
            assert time.monotonic() < deadline, f"workers answer {versions}"
            time.sleep(0.2)
        assert process.poll() is None
