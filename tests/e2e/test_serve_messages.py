"""What `serve` says: "listening on …" only once a connection is answered, one line and exit 1 when
the database cannot be reached, and no gunicorn control socket shared between instances."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import requests

from tests.support.server import command, free_port, running_service

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SARCOPENIA_CDS_")}
    return {**env, "SARCOPENIA_CDS_RULES__WATCH": "false", **extra}


def test_listening_is_printed_only_when_the_service_answers(tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    home = tmp_path / "home"
    home.mkdir()
    with log.open("wb") as out:
        process = subprocess.Popen([*command(), "serve", "--port", str(port)], cwd=tmp_path, stdout=out,
                                   stderr=subprocess.STDOUT,
                                   env=_env(SARCOPENIA_CDS_DATABASE__URL=f"sqlite:///{tmp_path / 'cds.db'}",
                                            HOME=str(home), XDG_RUNTIME_DIR=""))
        try:
            deadline = time.monotonic() + 60
            while "listening on" not in log.read_text():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            # the moment the line is there, a request is answered
            assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        finally:
            process.terminate()
            process.wait(timeout=30)
    text = log.read_text()
    assert text.count(f"sarcopenia-cds: listening on http://127.0.0.1:{port} (CDS Hooks discovery at "
                      f"http://127.0.0.1:{port}/cds-services)") == 1
    assert text.index("sarcopenia-cds: starting on") < text.index("listening on")
    assert not (home / ".gunicorn").exists(), "gunicorn opened its shared control socket"


def test_two_instances_share_no_control_socket(tmp_path):
    with running_service(f"sqlite:///{tmp_path / 'a.db'}", tmp_path) as (first, _), \
            running_service(f"sqlite:///{tmp_path / 'b.db'}", tmp_path) as (second, _):
        assert requests.get(first + "/healthz", timeout=5).status_code == 200
        assert requests.get(second + "/healthz", timeout=5).status_code == 200
    logs = "".join(p.read_text() for p in tmp_path.glob("server-*.log"))
    assert "control" not in logs.lower(), logs


@pytest.mark.parametrize("subcommand", ["serve", "migrate"])
def test_unreachable_database_gives_one_line_and_exit_1(tmp_path, subcommand):
    url = f"postgresql+psycopg://cds:s3cret@127.0.0.1:{free_port()}/cds"
    result = subprocess.run([*command(), subcommand], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env=_env(SARCOPENIA_CDS_DATABASE__URL=url,  # a server database needs its own key
                                     SARCOPENIA_CDS_PRIVACY__PSEUDONYM_KEY="0" * 64))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"sarcopenia-cds: cannot reach the database postgresql+psycopg://cds:***@{url.split('@')[1]}: ")
    assert "Connection refused" in lines[0]
    assert "s3cret" not in result.stderr + result.stdout


def test_a_server_database_without_a_pseudonym_key_is_one_configuration_line_and_exit_2(tmp_path):
    url = f"postgresql+psycopg://cds:s3cret@127.0.0.1:{free_port()}/cds"
    result = subprocess.run([*command(), "migrate"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env=_env(SARCOPENIA_CDS_DATABASE__URL=url))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "sarcopenia-cds: configuration error: privacy.pseudonym_key or privacy.pseudonym_key_file is required "
        "with postgresql: the key must not live in the database it protects"]
