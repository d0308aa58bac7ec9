"""Start the real service process (`sarcopenia-cds serve`) on a free port, as the README does."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.support import tokens


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command() -> list[str]:
    """The console script next to this interpreter (the README's `sarcopenia-cds serve`)."""
    script = Path(sys.executable).with_name("sarcopenia-cds")
    return [str(script)] if script.exists() else [shutil.which("sarcopenia-cds") or "sarcopenia-cds"]


@contextmanager
def running_service(database_url: str, workdir: Path, *, workers: int = 1, extra_env: dict[str, str] | None = None,
                    threads: int | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """The service on 127.0.0.1:<free port>, trusting the test EHR; yields (base_url, process)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SARCOPENIA_CDS_")}
    env.update({
        "SARCOPENIA_CDS_DATABASE__URL": database_url,
        "SARCOPENIA_CDS_AUTH__ISSUERS": json.dumps([tokens.issuer_config()]),
        "SARCOPENIA_CDS_RULES__WATCH": "false",
        "SARCOPENIA_CDS_FHIR__ALLOW_PRIVATE_ADDRESSES": "true",  # the test FHIR servers are on 127.0.0.1
        **({} if database_url.startswith("sqlite") else
           {"SARCOPENIA_CDS_PRIVACY__PSEUDONYM_KEY_FILE": str(workdir / "pseudonym.key")}),
        **(extra_env or {}),
    })
    log = (workdir / f"server-{port}.log").open("wb")
    thread_args = ["--threads", str(threads)] if threads is not None else []
    process = subprocess.Popen([*command(), "serve", "--port", str(port), "--workers", str(workers), *thread_args],
                               cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90  # start-up on a loaded machine (load 24 on 2 cores) took over 30 s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}: {(workdir / f'server-{port}.log').read_text()[-2000:]}")
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become healthy in 90 s")
            time.sleep(0.2)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=25)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
