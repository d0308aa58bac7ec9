"""Headless Chromium (Debian's package, /usr/bin/chromium) driven by Playwright against a real
`sarcopenia-cds demo` process. Without Chromium or Playwright these tests skip locally with the
reason, and FAIL under CI (CI=true), so a CI image without the browser cannot pass silently."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.server import command, free_port

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"browser tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(
            f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium chromium-driver)"
        )
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium_path: str):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable(
            "Python Playwright is not installed (pip install playwright; never `playwright install`)"
        )
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True
        )
        yield instance
        instance.close()


def _demo(tmp_path_factory, *extra: str) -> Iterator[tuple[str, Path]]:
    """`sarcopenia-cds demo --port N [extra]` as a real process in a temp dir; yields (base_url, workdir)."""
    workdir = tmp_path_factory.mktemp("demo")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SARCOPENIA_CDS_")}
    log = (workdir / "demo.log").open("w")
    process = subprocess.Popen(
        [*command(), "demo", "--port", str(port), *extra],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"the demo exited with {process.returncode}:\n{(workdir / 'demo.log').read_text()}"
                )
            try:
                if requests.get(f"{base}/demo", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the demo did not answer within 60 s:\n{(workdir / 'demo.log').read_text()}"
                )
            time.sleep(0.2)
        yield base, workdir
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """The demo in English."""
    yield from _demo(tmp_path_factory)


@pytest.fixture(scope="module")
def demo_server_zh(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """The demo with `--locale zh-CN`: cards, demo page and trend view in Chinese."""
    yield from _demo(tmp_path_factory, "--locale", "zh-CN")


@pytest.fixture()
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        opened.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture()
def screenshot(page):
    """screenshot(name): save a full-page screenshot as test-artifacts/browser/<name>.png."""

    def take(name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
