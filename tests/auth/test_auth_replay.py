"""jti replay protection: in-process store, and Redis shared by two Authenticators (= workers)."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest
from authkit import ENDPOINT, ISS, bearer, claims, jwk_set, sign

from cds_service.auth import AuthError, Authenticator
from cds_service.auth.replay import MemoryReplayStore

REDIS_URL = "redis://127.0.0.1:6379/0"


def _reject(auth, token, path=ENDPOINT) -> str:
    with pytest.raises(AuthError) as info:
        auth.verify(bearer(token), path)
    return info.value.reason


def test_replayed_jti_rejected_in_process(make_auth, keys):
    auth = make_auth()
    token = sign(keys["ES384"], claims())
    assert auth.verify(bearer(token), ENDPOINT)
    assert _reject(auth, token) == "jti replayed"
    # a different, freshly signed token reusing a seen jti is also a replay
    assert auth.verify(bearer(sign(keys["ES384"], claims(jti="fixed"))), ENDPOINT)
    assert _reject(auth, sign(keys["RS384"], claims(jti="fixed"))) == "jti replayed"


def test_same_jti_from_two_issuers_is_not_a_replay(keys):
    auth = Authenticator({"issuers": [{"iss": ISS, "jwks": jwk_set(keys["ES384"])},
                                      {"iss": "https://ehr2.example.org",
                                       "jwks": jwk_set(keys["RS384"])}]},
                         "https://cds.example.org")
    assert auth.verify(bearer(sign(keys["ES384"], claims(jti="j1"))), ENDPOINT)
    second = sign(keys["RS384"], claims(jti="j1", iss="https://ehr2.example.org"))
    assert auth.verify(bearer(second), ENDPOINT)


def test_forged_token_cannot_burn_a_jti(make_auth, keys, other_key):
    """The signature (and every claim) is checked before the jti is recorded."""
    auth = make_auth()
    jti = uuid.uuid4().hex
    assert _reject(auth, sign(other_key, claims(jti=jti), kid=keys["ES384"].kid)) == \
        "signature invalid"
    assert _reject(auth, sign(keys["ES384"], claims(jti=jti)), "/cds-services/other") == \
        "aud does not match this endpoint"
    assert auth.verify(bearer(sign(keys["ES384"], claims(jti=jti))), ENDPOINT)["jti"] == jti


def test_memory_store_forgets_after_ttl():
    now = [0.0]
    store = MemoryReplayStore(clock=lambda: now[0])
    assert store.add("k", 10) is True
    assert store.add("k", 10) is False
    now[0] = 10.5
    assert store.add("k", 10) is True


def test_memory_store_purges_expired_entries():
    now = [0.0]
    store = MemoryReplayStore(clock=lambda: now[0])
    for i in range(MemoryReplayStore.PURGE_EVERY - 1):
        store.add(f"old{i}", 1)
    now[0] = 5
    store.add("new", 1)
    assert len(store._seen) == 1


def test_shared_store_semantics_with_fakeredis(make_auth, keys):
    """Two workers sharing one Redis-protocol store (fakeredis: runs without a server)."""
    fakeredis = pytest.importorskip("fakeredis")
    from cds_service.auth.replay import RedisReplayStore

    server = fakeredis.FakeServer()
    workers = [make_auth(replay_store=RedisReplayStore(None, "p:",
                                                      client=fakeredis.FakeRedis(server=server)))
               for _ in range(2)]
    token = sign(keys["ES384"], claims())
    assert workers[0].verify(bearer(token), ENDPOINT)
    assert _reject(workers[1], token) == "jti replayed"


@pytest.fixture
def redis_prefix():
    """A unique key prefix for this test run; its keys are deleted afterwards."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    prefix = f"test-auth:{uuid.uuid4().hex}:jti:"
    yield client, prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


@pytest.mark.redis
def test_replayed_jti_rejected_across_two_workers_sharing_redis(make_auth, keys, redis_prefix):
    client, prefix = redis_prefix
    worker_a = make_auth(redis_url=REDIS_URL, replay_key_prefix=prefix)
    worker_b = make_auth(redis_url=REDIS_URL, replay_key_prefix=prefix)
    token = sign(keys["ES384"], claims())
    assert worker_a.verify(bearer(token), ENDPOINT)
    assert _reject(worker_b, token) == "jti replayed"
    assert _reject(worker_a, token) == "jti replayed"
    stored = list(client.scan_iter(match=prefix + "*"))
    assert len(stored) == 1
    assert 300 < client.ttl(stored[0]) <= 361  # exp + skew - now


@pytest.mark.redis
def test_concurrent_replay_across_workers_admits_exactly_one(make_auth, keys, redis_prefix):
    _, prefix = redis_prefix
    workers = [make_auth(redis_url=REDIS_URL, replay_key_prefix=prefix) for _ in range(2)]
    token = sign(keys["RS384"], claims())
    results: list[bool] = []
    lock = threading.Lock()

    def attempt(auth):
        try:
            auth.verify(bearer(token), ENDPOINT)
            ok = True
        except AuthError:
            ok = False
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=attempt, args=(workers[i % 2],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1 and len(results) == 16


@pytest.mark.redis
def test_redis_store_is_forgotten_after_exp(make_auth, keys, redis_prefix):
    client, prefix = redis_prefix
    auth = make_auth(redis_url=REDIS_URL, replay_key_prefix=prefix, clock_skew_seconds=0)
    now = int(time.time())
    token = sign(keys["ES384"], claims(iat=now - 10, exp=now + 2))
    assert auth.verify(bearer(token), ENDPOINT)
    (key,) = list(client.scan_iter(match=prefix + "*"))
    assert 0 < client.ttl(key) <= 2


def test_unreachable_redis_fails_closed_and_logs(make_auth, keys, caplog):
    auth = make_auth(redis_url="redis://127.0.0.1:1/0")
    token = sign(keys["ES384"], claims())
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="cds_service.auth"):
        reason = _reject(auth, token)
    assert reason.startswith("replay store unavailable")
    assert time.monotonic() - started < 3
    assert any(r.levelno == logging.ERROR and r.getMessage() == "replay store unavailable"
               for r in caplog.records)
    assert token not in caplog.text
    assert auth.ready() is False


def test_ready_true_for_memory_store(make_auth):
    assert make_auth().ready() is True


@pytest.mark.redis
def test_ready_true_with_redis(make_auth, redis_prefix):
    assert make_auth(redis_url=REDIS_URL, replay_key_prefix=redis_prefix[1]).ready() is True


def _worker_verify(auth, header, results):
    try:
        auth.verify(header, ENDPOINT)
        results.put(True)
    except AuthError:
        results.put(False)


@pytest.mark.redis
def test_forked_workers_share_redis_after_preload(make_auth, keys, redis_prefix):
    """gunicorn --preload: the Authenticator (and its pool) is built before fork."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    auth = make_auth(redis_url=REDIS_URL, replay_key_prefix=redis_prefix[1])
    assert auth.verify(bearer(sign(keys["ES384"], claims())), ENDPOINT)  # parent opens a connection
    header = bearer(sign(keys["ES384"], claims()))
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker_verify, args=(auth, header, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(10)
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    assert outcomes == [False, False, False, True]
