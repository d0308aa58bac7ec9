"""In a real browser: the front door and the API reference, the demo in English and in Chinese, and
the trend view of patient 14, whose record has values the card excluded (screenshots in
test-artifacts/browser/)."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_demo_page import fire
from tests.i18n.test_zh_cn import english_words

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EXCLUDED_PATIENT = "syn-14"  # prostate cancer: grip 400 kg, weight −72 kg, same-day 72.0 / 66.0 kg


def _warnings(workdir) -> list[str]:
    return [line for line in (workdir / "demo.log").read_text().splitlines() if "WARNING" in line]


def test_front_door_shows_the_service_and_its_hooks(page, demo_server, screenshot):
    base, workdir = demo_server
    icons = []
    page.on("response", lambda r: icons.append((r.url, r.status)) if "favicon" in r.url else None)
    page.goto(f"{base}/")
    assert page.title() == "sarcopenia-cds 0.1.0"
    assert page.locator("header.bar h1").inner_text() == "sarcopenia-cds"
    assert [a.inner_text() for a in page.locator("#links a").all()] == [
        "demo EHR", "CDS Hooks discovery", "API reference", "OpenAPI 3.1 document", "health", "readiness", "metrics"]
    assert page.locator("article.service").count() == 3
    assert page.locator("#profile").inner_text() == "ewgsop2"
    assert "sarcopenia-core" in page.locator("#rules").inner_text()
    screenshot("10-front-door")
    page.wait_for_timeout(300)
    assert icons and all(status == 200 for _, status in icons), icons
    page.goto(f"{base}/favicon.ico")
    assert _warnings(workdir) == [], "the front door and the favicon log no WARNING"

    page.goto(f"{base}/")
    page.click("text=API reference")
    page.wait_for_url(f"{base}/docs")
    assert page.locator("article.op").count() >= 20
    assert page.locator("#call_patient_view h3").inner_text().startswith("POST /cds-services/sarcopenia-patient-view")
    page.click("#schemas details:has-text('Request_patient_view') summary")
    assert '"patientId"' in page.locator("#schema-Request_patient_view pre").inner_text()
    screenshot("11-api-reference")
    page.goto(f"{base}/docs#call_patient_view")
    page.screenshot(path=str(ARTIFACTS / "11-api-reference-viewport.png"))  # the first screen, readable


def test_unknown_path_in_the_browser_is_a_404_outcome(page, demo_server):
    base, _ = demo_server
    answer = page.goto(f"{base}/no/such/page")
    assert answer.status == 404
    assert '"code":"not-found"' in page.inner_text("body")


def test_demo_in_english(page, demo_server, screenshot):
    base, _ = demo_server
    page.goto(f"{base}/demo")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("#fire").inner_text() == "Fire hook"
    fire(page, "syn-01")
    summary = page.locator("article.card .summary").first.inner_text()
    assert summary.startswith("Severe sarcopenia (EWGSOP2)")
    assert page.locator("article.card button.override-open").first.inner_text() == "Dismiss…"
    screenshot("12-demo-en")


def test_demo_in_chinese(page, demo_server_zh, screenshot):
    base, _ = demo_server_zh
    page.goto(f"{base}/demo")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("#fire").inner_text() == "触发"
    page.select_option("#patient", "syn-01")
    page.check("input[name=hook][value=patient-view]")
    page.click("#fire")
    page.wait_for_function("document.querySelector('#status').className.match(/done|error/)", timeout=30_000)
    assert re.fullmatch(r"\d+ 张卡片 · patient-view · 预取", page.inner_text("#status")), page.inner_text("#status")
    card = page.locator("article.card").first
    assert card.locator(".summary").inner_text().startswith("重度肌少症") or "肌少症" in card.locator(".summary").inner_text()
    assert card.locator("button.override-open").inner_text() == "忽略…"
    assert card.locator(".badge").inner_text() in ("危急", "警告", "提示")
    detail = " ".join(page.locator("article.card .detail").all_inner_texts())
    assert "岁" in detail and "years" not in detail and "days" not in detail
    names = page.locator("#patient option").all_inner_texts()
    shown = [page.inner_text(sel) for sel in (".ehr-bar", ".synthetic-banner", ".controls", ".cards-panel h2")]
    shown += page.locator("article.card .summary, article.card .detail, article.card .suggestions, "
                          "article.card .card-actions, article.card .source").all_inner_texts()
    record = {n.split(" · ", 1)[1].split(" (", 1)[0] for n in names}  # the patients' names, as recorded
    problems = [(text[:80], english_words(text, record | {"ES384", "sarcopenia-core@1.0.0"}))
                for text in shown if english_words(text, record | {"ES384", "sarcopenia-core@1.0.0"})]
    assert problems == []
    screenshot("13-demo-zh-CN")


def _check_trend(page, plot_right_label: str) -> None:
    weight = page.locator("svg[data-chart=weight]")
    excluded = weight.locator("circle.point.excluded")
    assert sorted(excluded.evaluate_all("els => els.map(e => e.dataset.value)")) == ["66", "72"]
    assert weight.locator("polyline[data-series=weight]").count() == 1
    # charts use the page's width
    main = page.locator("main").bounding_box()
    for chart in page.locator("svg.trend-chart").all():
        assert chart.bounding_box()["width"] >= 0.9 * (main["width"] - 40)
    # cut-off values right of the plot area: never over the data line
    for chart in page.locator("svg.trend-chart").all():
        plot = chart.locator("rect.plot").bounding_box()
        for label in chart.locator("text.cutoff-label").all():
            assert label.bounding_box()["x"] >= plot["x"] + plot["width"], plot_right_label
    grip = page.locator("svg[data-chart=grip]")
    assert grip.locator("circle").count() == 1  # 400 kg is listed, not drawn at the edge
    assert page.locator("#chart-grip .off-scale-value").count() == 1
    assert float(page.locator("svg[data-chart=gait]").get_attribute("data-y-min")) >= 0


def test_trend_view_marks_the_values_the_card_excluded(page, demo_server, screenshot):
    base, _ = demo_server
    page.goto(f"{base}/trend/{EXCLUDED_PATIENT}")
    _check_trend(page, "en")
    titles = page.locator("svg[data-chart=weight] circle.point.excluded title").evaluate_all(
        "els => els.map(e => e.textContent)")
    assert all("differ by more than 5 %" in t for t in titles), titles
    assert "400 — excluded: outside plausible limits > 0 and ≤ 150 kg" in page.inner_text("#chart-grip .off-scale")
    assert "Grip strength < 27 kg (EWGSOP2 2019)" in page.inner_text("#chart-grip figcaption")
    screenshot("14-trend-excluded-values-en")


def test_trend_view_in_chinese(page, demo_server_zh, screenshot):
    base, _ = demo_server_zh
    page.goto(f"{base}/trend/{EXCLUDED_PATIENT}")
    _check_trend(page, "zh-CN")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("#chart-weight figcaption").inner_text().startswith("体重")
    assert "已排除：超出可信范围（> 0 且 ≤ 150 kg）" in page.inner_text("#chart-grip .off-scale")
    screenshot("15-trend-excluded-values-zh-CN")
