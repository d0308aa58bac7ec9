"""/admin/report in a real browser: a known history served by a real `serve` process; the page
shows the alarm, its two trend plots are drawn (SVG lines with real extent), and a screenshot is
saved as test-artifacts/browser/admin-report.png."""

from __future__ import annotations

import json

import pytest

from cds_service.auth.admin import token_digest
from cds_service.store import Store
from tests.browser.conftest import ARTIFACTS
from tests.governance import history
from tests.support.server import running_service

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKEN = "browser-admin-token-0123456789abcdef"


def test_admin_report_draws_its_plots(browser, tmp_path):
    url = f"sqlite:///{tmp_path / 'governance.db'}"
    store = Store(url, "browser-key")
    store.migrate()
    history.build(store)
    store.dispose()
    env = {"SARCOPENIA_CDS_ADMIN__TOKENS": json.dumps([{"name": "committee", "sha256": token_digest(TOKEN)}]),
           "SARCOPENIA_CDS_PRIVACY__PSEUDONYM_KEY": "browser-key"}
    with running_service(url, tmp_path, extra_env=env) as (base, _process):
        refused = browser.new_context().new_page()
        assert refused.goto(f"{base}/admin/report").status == 401
        refused.context.close()

        context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                      extra_http_headers={"Authorization": f"Bearer {TOKEN}"})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        response = page.goto(f"{base}/admin/report?since=2026-01-01&until=2026-03-31")
        assert response.status == 200
        assert page.locator("figure.plot svg").count() == 2
        # each plot draws lines: matplotlib's Line2D paths, with a real size on screen
        for index in range(2):
            svg = page.locator("figure.plot svg").nth(index)
            box = svg.bounding_box()
            assert box["width"] > 300 and box["height"] > 150
            lines = svg.locator("g[id^='line2d'] path")
            assert lines.count() >= 2
            assert max(lines.nth(i).bounding_box()["width"] for i in range(lines.count())) > 100
        assert page.locator(".alarm[data-kind='stopped-after-pack-change']").inner_text().startswith(
            "cachexia: 60 cards in 200 calls")
        assert page.locator("#findings tr").count() == 1 + 6
        assert all(r.startswith(base) for r in requested)  # nothing fetched from elsewhere
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / "admin-report.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 20_000
        context.close()
        assert not errors
