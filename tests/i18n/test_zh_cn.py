"""Under zh-CN no user-visible English word: the words the engine writes itself (units, durations,
data-quality reasons, table chrome), every card of every test patient, the demo page and the
trend view. Allowed: unit symbols, acronyms (CT, BMI, mGPS …), drug names, citations (an author
before a year), resource references, identifiers of the protocol (patient-view, prefetch …), and
the patients' record data (names, the record's texts), which the EHR shows as recorded."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cds_service.demo import i18n
from cds_service.engine import EngineSettings, load_ruleset
from cds_service.engine.cards import CHROME
from cds_service.engine.explain import bundle_resources
from cds_service.engine.messages import DATA_QUALITY
from cds_service.engine.units import display

PATIENTS = Path(__file__).resolve().parents[1] / "patients"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)  # tests/patients/expected.yaml

UNITS = {"kg", "cm", "mg", "kcal", "mL", "dL", "mmol", "µmol", "min"}
DRUGS = {"gemcitabine", "cisplatin", "letrozole", "cyclophosphamide", "rituximab", "olanzapine", "megestrol",
         "dexamethasone", "anamorelin"}
PROTOCOL = {"patient-view", "order-select", "order-sign", "prefetch", "fhirServer", "fhirAuthorization",
            "sarcopenia-cds", "CDS", "Hooks", "JWT", "FHIR", "SMART", "UTC", "mGPS", "eGFR", "SARC-F", "systemActions"}
WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*[A-Za-z]")
REFERENCE = re.compile(r"\b[A-Z][A-Za-z]+/[A-Za-z0-9.\-]+")
URL = re.compile(r"https?://\S+|/[a-z][\w\-./…]*")
CITATION = re.compile(r"\b(?:Mc|Mac)?[A-Z][a-z]+(?:-[A-Z][a-z]+)?(?= (?:19|20)\d\d(?!\d))")


def english_words(text: str, also_allowed: set[str] = frozenset()) -> list[str]:
    """The English words of `text` that are not allowed under zh-CN."""
    for phrase in sorted(also_allowed, key=len, reverse=True):
        text = text.replace(phrase, " ")
    text = URL.sub(" ", REFERENCE.sub(" ", re.sub(r"\{[a-z_]+\}", " ", text)))  # {placeholders} are filled in
    text = CITATION.sub(" ", text)
    found = []
    for word in WORD.findall(text):
        if word in UNITS or word in PROTOCOL or word.lower() in DRUGS:
            continue
        if word.upper() == word or re.fullmatch(r"[A-Z]+\d*[A-Za-z]?\d*", word):  # acronyms: CT, EWGSOP2, HER2
            continue
        found.append(word)
    return found


@pytest.fixture(scope="module")
def ruleset():
    return load_ruleset(None)


# ---- the words Python writes ----------------------------------------------------------------------

def test_units_in_words_and_durations_are_chinese(ruleset):
    units = {f.unit for f in ruleset.facts.values() if f.unit} | {p.unit for p in ruleset.params.values() if p.unit}
    for unit in units:
        assert english_words(display(unit, "zh-CN")) == [], unit
    assert (display("a", "zh-CN"), display("mo", "zh-CN"), display("d", "zh-CN")) == ("岁", "个月", "天")
    assert (display("a"), display("mo"), display("d")) == ("years", "months", "days")  # English unchanged


def test_the_engines_own_texts_are_translated():
    for table in (CHROME["zh-CN"], DATA_QUALITY["zh-CN"]):
        for key, text in table.items():
            assert english_words(text) == [], (key, text)
    assert set(CHROME["zh-CN"]) == set(CHROME["en"])
    assert set(DATA_QUALITY["zh-CN"]) == set(DATA_QUALITY["en"])


def test_demo_and_trend_texts_are_complete_and_chinese():
    assert set(i18n.ZH) == set(i18n.EN), set(i18n.EN) ^ set(i18n.ZH)
    for key, text in i18n.ZH.items():
        assert english_words(text) == [], (key, text)
    for number, text in i18n.SCENARIOS_ZH.items():
        assert english_words(text) == [], (number, text)


def test_data_quality_reasons_are_chinese(ruleset):
    """Patient 14: grip 400 kg (limits > 0 and ≤ 150 kg), weight −72 kg, same-day 72.0 / 66.0 kg."""
    resources, _, _ = bundle_resources(json.loads((PATIENTS / "14-prostate-implausible-values-m.json").read_text()))
    settings = EngineSettings(profile="ewgsop2", ct_cutoffs="martin2013", locale="zh-CN")
    evaluation = ruleset.evaluate(resources, hook="patient-view", context={"patientId": "syn-14"}, now=NOW,
                                  settings=settings)
    reasons = {e["resource"]: e["reason"] for e in evaluation.data_quality}
    assert reasons["Observation/syn-14-obs-12"] == "超出可信范围（> 0 且 ≤ 150 kg）"
    assert reasons["Observation/syn-14-obs-9"] == "超出可信范围（> 0 且 ≤ 350 kg）"
    assert re.fullmatch(r"数值相互矛盾：72\.0 kg \(\S+ 08:00\) 与 66\.0 kg \(\S+ 14:00\) 相差超过 5 %",
                        reasons["Observation/syn-14-obs-7"])
    detail = " ".join(card.get("detail", "") for card in evaluation.cards)
    assert "超出可信范围（> 0 且 ≤ 150 kg）" in detail
    assert "outside" not in detail and "conflicting" not in detail


# ---- every card of every test patient ---------------------------------------------------------------

def _visible(cards: list[dict]) -> list[tuple[str, str]]:
    """(where, text) of what an EHR shows of each card, and the evidence labels and reasons."""
    shown = []
    for card in cards:
        shown += [("summary", card["summary"]), ("detail", card.get("detail", "")),
                  ("source", card.get("source", {}).get("label", ""))]
        shown += [("suggestion", s.get("label", "")) for s in card.get("suggestions", [])]
        shown += [("link", link.get("label", "")) for link in card.get("links", [])]
        shown += [("overrideReason", r.get("display", "")) for r in card.get("overrideReasons", [])]
        for finding in card.get("extension", {}).get("org.sarcopenia-cds.findings", []):
            for entry in finding.get("evidence", []):
                shown += [("evidence", entry.get(k, "")) for k in ("label", "reason")]
    return shown


def _runs():
    orders = {p.stem: json.loads(p.read_text()) for p in (PATIENTS / "orders").glob("*.json")}
    for path in sorted(PATIENTS.glob("[0-9]*.json")):
        resources, _, _ = bundle_resources(json.loads(path.read_text(encoding="utf-8")))
        patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        context = {"patientId": patient, "userId": "Practitioner/1"}
        yield path.stem, resources, "patient-view", [], context
        for name, bundle in orders.items():
            if name.startswith(path.stem):
                drafted = [e["resource"] for e in bundle["entry"]]
                for hook in ("order-select", "order-sign"):
                    yield name, resources, hook, drafted, {
                        **context, "draftOrders": bundle,
                        "selections": [f"{r['resourceType']}/{r['id']}" for r in drafted]}


@pytest.mark.parametrize("profile", ["ewgsop2", "awgs2019"])
def test_every_card_of_every_test_patient_has_no_english_under_zh_cn(ruleset, profile):
    settings = EngineSettings(profile=profile, ct_cutoffs=ruleset.default_ct_cutoffs(profile), locale="zh-CN")
    packs = set(ruleset.versions) | {ruleset.version}
    problems, cards_seen = [], 0
    for name, resources, hook, drafted, context in _runs():
        evaluation = ruleset.evaluate(resources, hook=hook, context=context, orders=drafted, now=NOW, settings=settings)
        cards_seen += len(evaluation.cards)
        for where, text in _visible(evaluation.cards):
            words = english_words(text, packs)
            if words:
                problems.append(f"{name} {hook} {where}: {words} in {text[:120]!r}")
    assert cards_seen > 10
    assert problems == []


def test_the_check_finds_english():
    assert english_words("预期生存期 < 3 months") == ["months"]
    assert english_words("近 90 days 内") == ["days"]
    assert english_words("患者年龄：68 years") == ["years"]
    assert english_words("Fearon 2011：体重下降 > 5 %，CT L3，mGPS 1，Observation/syn-1-obs-3，gemcitabine 54.0 kg") == []


# ---- the demo page and the trend view -----------------------------------------------------------------

class _Text(HTMLParser):
    """The text a browser shows: text nodes outside script and style, and title/placeholder/aria-label."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        for name, value in attrs:
            if name in ("title", "placeholder", "aria-label") and value:
                self.parts.append(value)

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip and data.strip():
            self.parts.append(data.strip())


def visible_text(html: str) -> list[str]:
    parser = _Text()
    parser.feed(html)
    return parser.parts


@pytest.fixture(scope="module")
def zh_demo(tmp_path_factory):
    from cds_service.demo import create_demo_app

    app = create_demo_app("127.0.0.1", 8999, tmp_path_factory.mktemp("zh"),
                          overrides={"locale": "zh-CN", "rules": {"watch": False}})
    yield app
    app.extensions["cds"].store.dispose()


def _record_texts(app) -> set[str]:
    """What the records say (names, diagnoses, order texts, resource ids): shown as recorded."""
    data = app.extensions["demo"].data
    texts = set()
    for patient in data.patients.values():
        texts |= {patient.name, patient.cancer} | {o["label"] for o in patient.summary()["orders"]}
        for resource in patient.resources:
            concept = resource.get("medicationCodeableConcept") or {}
            texts |= {concept.get("text", "")} | {c.get("display", "") for c in concept.get("coding", [])}
    return {t for t in texts if t}


def test_demo_page_has_no_english_under_zh_cn(zh_demo):
    page = zh_demo.test_client().get("/demo").get_data(as_text=True)
    assert '<html lang="zh-CN">' in page and "电子病历模拟器" in page
    allowed = _record_texts(zh_demo) | {"ES384"}
    problems = [(text, english_words(text, allowed)) for text in visible_text(page) if english_words(text, allowed)]
    assert problems == []
    config = json.loads(re.search(r'<script id="demo-config" type="application/json">(.*?)</script>', page, re.S).group(1))
    assert config["tx"]["dismiss"] == "忽略…"  # the words ehr.js writes
    for key, text in config["tx"].items():
        assert english_words(text, {"ES384"}) == [], (key, text)


@pytest.mark.parametrize("patient", ["syn-01", "syn-05", "syn-14"])
def test_trend_view_has_no_english_under_zh_cn(zh_demo, patient):
    page = zh_demo.test_client().get(f"/trend/{patient}").get_data(as_text=True)
    assert '<html lang="zh-CN">' in page and "肌肉趋势" in page
    allowed = _record_texts(zh_demo) | set(load_ruleset(None).versions) | {load_ruleset(None).version}
    svg_text = [t for svg in re.findall(r"<svg .*?</svg>", page, re.S) for t in visible_text(svg)]
    problems = [(text, english_words(text, allowed)) for text in visible_text(page) + svg_text
                if english_words(text, allowed)]
    assert problems == []


def test_smart_trend_error_page_under_zh_cn(tmp_path):
    from cds_service.app import create_app

    app = create_app({"locale": "zh-CN", "database": {"url": f"sqlite:///{tmp_path / 'cds.db'}"},
                      "auth": {"required": False}, "rules": {"watch": False},
                      "smart": {"enabled": True, "client_id": "trend", "allowed_issuers": ["https://ehr.example.org/fhir"]}})
    try:
        answer = app.test_client().get("/trend/launch")
        page = answer.get_data(as_text=True)
        assert answer.status_code == 400 and '<html lang="zh-CN">' in page
        assert "无法接受此次启动：请从电子病历中重新打开趋势图。" in page
        shown = [text for text in visible_text(page) if 'lang="en"' not in text]
        technical = re.search(r'<span lang="en">(.*?)</span>', page, re.S).group(1)
        problems = [t for t in shown if t != technical.strip() and english_words(t)]
        assert problems == [], problems
    finally:
        app.extensions["cds"].store.dispose()
