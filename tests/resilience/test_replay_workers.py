"""A replayed JWT is refused across two gunicorn workers sharing Redis (the real `sarcopenia-cds serve`).

The same token goes out many times at once, each on its own connection, so both worker processes receive
copies: exactly one is answered 200, every other one 401. /proc/<worker>/io shows that both workers read
requests during the burst, so the one-success result is not an accident of one worker seeing them all.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from tests.conftest import NOW
from tests.resilience.helpers import PV
from tests.support import tokens
from tests.support.ehr import hook_request, prefetch_for, shift_dates
from tests.support.patients import severe_sarcopenia
from tests.support.server import running_service

pytestmark = [pytest.mark.slow, pytest.mark.redis]
REDIS_URL = "redis://127.0.0.1:6379/0"
COPIES = 40


@pytest.fixture()
def redis_prefix():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    prefix = f"test-replay-workers:{uuid.uuid4().hex}:jti:"
    yield prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def booted_workers(master: int, database: Path, count: int, seconds: float = 30.0) -> list[int]:
    """The master's ``count`` workers once each has loaded the app (it then holds the database
    open); /healthz answers as soon as the first one has, while the next may still be booting."""
    deadline = time.monotonic() + seconds
    while True:
        pids = worker_pids(master)
        if len(pids) == count and all(_has_open(pid, database) for pid in pids):
            return pids
        if time.monotonic() > deadline:
            return pids
        time.sleep(0.1)


def _has_open(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # the process or one of its descriptors went away meanwhile
        return False


def bytes_read(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def test_the_same_jwt_succeeds_once_across_two_workers(tmp_path, redis_prefix):
    url = f"sqlite:///{tmp_path / 'replay.db'}"
    env = {"SARCOPENIA_CDS_REDIS__URL": REDIS_URL, "SARCOPENIA_CDS_AUTH__REPLAY_KEY_PREFIX": redis_prefix}
    with running_service(url, tmp_path, workers=2, extra_env=env) as (base, process):
        discovery = requests.get(base + "/cds-services",
                                 headers={"Authorization": f"Bearer {tokens.token(base + '/cds-services')}"},
                                 timeout=5).json()
        templates = next(s for s in discovery["services"] if s["id"] == PV.rsplit("/", 1)[1])["prefetch"]
        resources = shift_dates(severe_sarcopenia(), datetime.now(UTC) - NOW)
        body = hook_request("patient-view", "sev-1", prefetch_for(resources, templates))
        headers = {"Authorization": f"Bearer {tokens.token(base + PV)}"}
        pids = booted_workers(process.pid, tmp_path / "replay.db", 2)
        assert len(pids) == 2, pids
        before = {pid: bytes_read(pid) for pid in pids}

        statuses: list[int] = []
        lock = threading.Lock()
        start = threading.Barrier(COPIES)

        def send() -> None:
            start.wait()
            with requests.Session() as session:  # a connection of its own
                status = session.post(base + PV, json=body, headers=headers, timeout=15).status_code
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=send) for _ in range(COPIES)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for _ in range(5):  # later, one at a time: still refused
            statuses.append(requests.post(base + PV, json=body, headers=headers, timeout=15).status_code)

        read = {pid: bytes_read(pid) - before[pid] for pid in pids}
        assert sorted(statuses) == [200] + [401] * (COPIES + 4), statuses
        assert all(delta > len(str(body)) for delta in read.values()), f"both workers got copies: {read}"
        fresh = requests.post(base + PV, json=body, headers={"Authorization": f"Bearer {tokens.token(base + PV)}"},
                              timeout=15)
        assert fresh.status_code == 200, "a new token still works"
