"""The demo in a real browser: fire patient-view, read the card, accept a referral (CDS Hooks
feedback lands in the demo database), override a card (suppressed on the next call), open the trend view."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SEVERE_PATIENT = "syn-01"  # pancreatic cancer, severe sarcopenia (tests/patients/README.md)


def fire(page, patient: str, hook: str = "patient-view", mode: str = "prefetch") -> None:
    page.select_option("#patient", patient)
    page.check(f"input[name=hook][value={hook}]")
    page.check(f"input[name=mode][value={mode}]")
    page.click("#fire")
    page.wait_for_function(
        "document.querySelector('#status').className.match(/done|error/)", timeout=30_000
    )
    status = page.inner_text("#status")
    assert "HTTP" not in status and "card" in status, f"the hook call failed: {status}"


def feedback_rows(workdir, card_uuid: str) -> list[tuple[str, str]]:
    with sqlite3.connect(workdir / "sarcopenia-cds-demo.db") as db:
        return db.execute(
            "SELECT outcome, accepted_suggestions FROM feedback WHERE card_uuid = ?", (card_uuid,)
        ).fetchall()


def test_severe_sarcopenia_card_accept_dietitian_referral(page, demo_server, screenshot):
    base, workdir = demo_server
    page.goto(f"{base}/demo")
    page.wait_for_selector("body[data-ready=true]")
    fire(page, SEVERE_PATIENT)
    card = page.locator("article.card", has_text="Severe sarcopenia").first
    card.wait_for()
    assert "Severe sarcopenia" in card.locator(".summary").inner_text()
    assert card.get_attribute("data-indicator") in ("warning", "critical")
    assert card.locator(".detail table").count() >= 1  # Markdown evidence table rendered as HTML
    assert card.locator(".source a").count() == 1
    card_uuid = card.get_attribute("data-card-uuid")
    screenshot("01-severe-sarcopenia-card")

    button = card.locator("button.accept", has_text=re.compile("dietitian", re.I)).first
    suggestion_uuid = button.get_attribute("data-suggestion-uuid")
    button.click()
    page.wait_for_selector("#created:not([hidden])")
    created = json.loads(page.inner_text("#created-json"))
    assert created["resourceType"] == "ServiceRequest"
    assert "dietitian" in json.dumps(created).lower()
    assert "Accepted" in card.locator(".card-state").inner_text()
    screenshot("02-dietitian-referral-accepted")

    rows = feedback_rows(workdir, card_uuid)
    assert len(rows) == 1
    outcome, accepted = rows[0]
    assert outcome == "accepted"
    assert suggestion_uuid in json.dumps(
        json.loads(accepted) if isinstance(accepted, str) else accepted
    )


def test_override_hides_the_card_next_time(page, demo_server, screenshot):
    base, workdir = demo_server
    page.goto(f"{base}/demo")
    page.wait_for_selector("body[data-ready=true]")
    fire(
        page, "syn-03", mode="fhirServer"
    )  # probable sarcopenia; the service fetches from the demo FHIR source
    cards = page.locator("article.card")
    assert cards.count() >= 1
    first = cards.first
    summary = first.locator(".summary").inner_text()
    card_uuid = first.get_attribute("data-card-uuid")
    first.locator("button.override-open").click()
    first.locator("form.override select").select_option(index=0)
    first.locator("form.override input[name=comment]").fill("demo: patient declined today")
    first.locator("button.override-send").click()
    page.wait_for_selector("article.card.overridden")
    screenshot("03-card-overridden")
    assert [r[0] for r in feedback_rows(workdir, card_uuid)] == ["overridden"]

    fire(page, "syn-03", mode="fhirServer")
    summaries = page.locator("article.card .summary").all_inner_texts()
    assert summary not in summaries, "an overridden finding must be suppressed on the next call"
    screenshot("04-after-override-refired")


def test_order_select_with_chemotherapy(page, demo_server, screenshot):
    base, _ = demo_server
    page.goto(f"{base}/demo")
    page.wait_for_selector("body[data-ready=true]")
    page.select_option("#patient", "syn-02")
    page.check("input[name=hook][value=order-select]")
    page.select_option("#order", "gemcitabine-atc")
    fire(page, "syn-02", hook="order-select")
    assert page.locator("article.card").count() >= 1
    screenshot("05-order-select-gemcitabine")


def test_trend_view_draws_the_plot(page, demo_server, screenshot):
    base, _ = demo_server
    page.goto(f"{base}/trend/{SEVERE_PATIENT}")
    weight = page.locator("svg[data-chart=weight]")
    assert weight.locator("polyline[data-series=weight]").count() == 1
    assert weight.locator("line.cutoff").count() >= 1
    grip = page.locator("svg[data-chart=grip]")
    assert grip.locator("line.cutoff[data-parameter=grip_low]").count() == 1
    assert page.locator("svg line.chemo").count() >= 1
    assert page.locator("svg").count() == 5
    screenshot("06-trend-view")


def test_markdown_renderer_is_safe_and_renders_tables(page, demo_server):
    base, _ = demo_server
    page.goto(f"{base}/demo")
    page.wait_for_selector("body[data-ready=true]")
    render = "text => window.DemoMarkdown.render(text)"
    table = page.evaluate(render, "**Bold** and *it*\n\n| a | b |\n|---|---|\n| 1 \\| 2 | `x` |")
    assert "<strong>Bold</strong>" in table and "<em>it</em>" in table
    assert "<table>" in table and "<td>1 | 2</td>" in table and "<code>x</code>" in table
    hostile = page.evaluate(
        render,
        '<img src=x onerror="alert(1)"> [click](javascript:alert(1)) [ok](https://doi.org/10.1/x)',
    )
    assert "<img" not in hostile and "&lt;img" in hostile
    assert "javascript:" not in hostile.split("href=")[0] and 'href="javascript' not in hostile
    assert 'href="https://doi.org/10.1/x"' in hostile
    listed = page.evaluate(render, "- one\n- two\n\n1. first")
    assert "<ul><li>one</li><li>two</li></ul>" in listed and "<ol><li>first</li></ol>" in listed


def test_demo_prints_its_url(demo_server):
    base, workdir = demo_server
    assert f"open {base}/demo" in (workdir / "demo.log").read_text()
