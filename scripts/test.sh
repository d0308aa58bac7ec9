#!/usr/bin/env bash
# The whole test suite on a fresh machine: a virtualenv, the project with its dev extras,
# the services the tests talk to (PostgreSQL, Redis), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

step() { printf '==> %s\n' "$*" >&2; }

start_postgres() {
  if command -v pg_isready >/dev/null && pg_isready -h 127.0.0.1 -p 5432 -q; then return; fi
  if [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && return; sleep 1; done
  fi
  echo "warning: PostgreSQL is not running on 127.0.0.1:5432; PostgreSQL tests will fail" >&2
}

start_redis() {
  if command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return; fi
  if command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /tmp --logfile /tmp/redis-ci.log || true
    for _ in $(seq 1 20); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return; sleep 0.5; done
  fi
  echo "warning: Redis is not running on 127.0.0.1:6379; Redis tests will fail" >&2
}

step "PostgreSQL on 127.0.0.1:5432"
start_postgres
step "Redis on 127.0.0.1:6379"
start_redis
step "docker-compose for the deployment-kit test (validates deploy/docker-compose.yml, no engine needed)"
command -v docker-compose >/dev/null || (docker compose version >/dev/null 2>&1) || { apt-get update -qq && apt-get install -y -qq docker-compose; } >/dev/null 2>&1 || echo "warning: could not install Debian docker-compose; the deployment-kit test skips locally and fails under CI=true" >&2
step "Chromium and a CJK font for the browser tests (the zh-CN screenshots)"
{ command -v fc-list >/dev/null && fc-list :lang=zh | grep -q .; } || { apt-get update -qq && apt-get install -y -qq fonts-wqy-microhei; } >/dev/null 2>&1 || echo "warning: could not install a CJK font (apt-get install -y fonts-wqy-microhei); zh-CN screenshots show boxes" >&2
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; } >/dev/null 2>&1 || echo "warning: could not install Debian chromium (apt-get install -y chromium chromium-driver); browser tests skip locally and fail under CI=true" >&2

if [ ! -x "$VENV/bin/python" ]; then
  step "virtual environment $VENV ($PYTHON)"
  "$PYTHON" -m venv "$VENV"
fi
step "pip install -e .[dev] into $VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"

export PATH="$PWD/$VENV/bin:$PATH"
if [ "$#" -gt 0 ]; then
  step "pytest -n 2 --dist loadfile $*"
  exec "$VENV/bin/python" -m pytest -n 2 --dist loadfile "$@"
fi
# Everything in parallel, then the tests that restart PostgreSQL on their own (a restart in the
# middle of another worker's PostgreSQL test would fail that test).
step "pytest: the whole suite on 2 workers, except the tests that restart PostgreSQL (several minutes)"
"$VENV/bin/python" -m pytest -n 2 --dist loadfile -m "not pg_restart"
step "pytest: the tests that restart PostgreSQL, alone"
exec "$VENV/bin/python" -m pytest -m pg_restart
