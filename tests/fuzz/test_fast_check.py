"""The fast schema check (jsonschema-rs) and the explaining validator (jsonschema) agree.

Every document the fast check passes is accepted without a closer look, so a document it passes
must have no violation the explaining validator would report. The other way round, a document it
fails must have at least one, except for one known difference in the regular expressions: Python's
`$` also matches before a final newline, Rust's only at the very end, so the fast check is the
stricter one for a pattern-checked string ending in "\\n" (the explaining validator then accepts it,
as it always did). Documents are real ones (the answers, requests, feedback and discovery of the
realistic patients in tests/patients) and ones generated from the smaller schemas by
hypothesis-jsonschema, each also with one part replaced by arbitrary JSON, and arbitrary JSON.
"""

from __future__ import annotations

import copy
import json
import math
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from tests.fuzz.compat import patch

patch()

import hooks as hook_registry
from cds_service.protocol.validation import FastCheck, fast_check, schema, validator
from tests.conftest import NOW, service_config
from tests.fuzz.conftest import TOTAL
from tests.support.ehr import hook_request, prefetch_for

ROOT = Path(__file__).resolve().parents[2]
PATIENTS = ROOT / "tests" / "patients"
ORDERS = ROOT / "cds_service" / "demo" / "patients" / "orders"
GENERATED = ["request", "operation-outcome"]  # hypothesis-jsonschema is quick on these
NAMES = ["request", "response", "feedback", "discovery", "operation-outcome"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def examples(share: int) -> settings:
    return settings(settings.get_profile("sarcopenia-fuzz"), max_examples=max(5, math.ceil(TOTAL * 0.3 / share)))


def generatable(document_schema: dict[str, Any]) -> dict[str, Any]:
    """The schema without `$schema`, which hypothesis-jsonschema does not take."""
    return {k: v for k, v in document_schema.items() if k != "$schema"}


def replace_somewhere(document: Any, path_choice: int, value: Any) -> Any:
    """A copy of document with one node (picked by path_choice) replaced by value."""
    nodes: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in children:
            nodes.append((node, key))
            walk(child)

    copied = copy.deepcopy(document)
    walk(copied)
    if not nodes:
        return value
    parent, key = nodes[path_choice % len(nodes)]
    parent[key] = value
    return copied


def ends_with_newline_somewhere(node: Any) -> bool:
    if isinstance(node, str):
        return node.endswith("\n")
    if isinstance(node, dict):
        return any(ends_with_newline_somewhere(k) or ends_with_newline_somewhere(v) for k, v in node.items())
    if isinstance(node, list):
        return any(ends_with_newline_somewhere(v) for v in node)
    return False


def assert_agree(fast: FastCheck, explainer: Any, document: Any) -> None:
    errors = [e.message for e in explainer.iter_errors(document)]
    if fast.passes(document):
        assert errors == [], f"fast check passed a document the explaining validator faults: {errors[:3]}"
    else:
        assert errors or ends_with_newline_somewhere(document), "fast check failed a valid document"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, list[Any]]:
    """Real documents by schema name: what the service and an EHR send for the realistic patients."""
    from cds_service.app import create_app

    app = create_app(service_config(tmp_path_factory.mktemp("fast-check"), auth={"required": False},
                                    logging={"level": "WARNING", "format": "json"}), clock=lambda: NOW)
    client = app.test_client()
    documents: dict[str, list[Any]] = {"discovery": [client.get("/cds-services").get_json()], "request": [],
                                       "response": [], "feedback": []}
    templates = {s["hook"]: s.get("prefetch", {}) for s in documents["discovery"][0]["services"]}
    for path in sorted(PATIENTS.glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        resources = [entry["resource"] for entry in bundle["entry"]]
        patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        bodies = [hook_request("patient-view", patient, prefetch_for(resources, templates["patient-view"]))]
        for orders_path in sorted(ORDERS.glob(f"{path.stem}-*.json")):
            orders = json.loads(orders_path.read_text(encoding="utf-8"))
            selection = f"{orders['entry'][0]['resource']['resourceType']}/{orders['entry'][0]['resource']['id']}"
            for hook in ("order-select", "order-sign"):
                context = {"draftOrders": orders, **({"selections": [selection]} if hook == "order-select" else {})}
                bodies.append(hook_request(hook, patient, prefetch_for(resources, templates[hook]), **context))
        for body in bodies:
            service = next(s["id"] for s in documents["discovery"][0]["services"] if s["hook"] == body["hook"])
            answer = client.post(f"/cds-services/{service}", json=body)
            assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
            documents["request"].append(body)
            documents["response"].append(answer.get_json())
            documents["feedback"].extend(feedback_for(answer.get_json()))
    app.extensions["cds"].store.dispose()
    assert all(documents.values()), {k: len(v) for k, v in documents.items()}
    return documents


def feedback_for(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """Feedback an EHR could post for these cards: each accepted, and each overridden with a reason."""
    posts = []
    for card in answer["cards"]:
        accepted = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-28T12:01:00Z"}
        if card.get("suggestions"):
            accepted["acceptedSuggestions"] = [{"id": card["suggestions"][0]["uuid"]}]
        posts.append({"feedback": [accepted]})
        reason = (card.get("overrideReasons") or [{"code": "x", "system": "urn:x", "display": "x"}])[0]
        posts.append({"feedback": [{"card": card["uuid"], "outcome": "overridden",
                                    "outcomeTimestamp": "2026-11-28T12:01:00.250+01:00",
                                    "overrideReason": {"reason": reason, "userComment": str(uuid.uuid4())}}]})
    return posts


@pytest.mark.parametrize("name", ["request", "response", "feedback", "discovery"])
def test_agree_on_real_documents_and_their_mutations(corpus, name):
    @examples(4)
    @given(document=st.sampled_from(corpus[name]), mutate=st.booleans(), where=st.integers(0, 5000), value=JSON_VALUES)
    def run(document, mutate, where, value):
        assert_agree(fast_check(name), validator(name), replace_somewhere(document, where, value) if mutate else document)

    for document in corpus[name]:
        assert_agree(fast_check(name), validator(name), document)
    run()


@pytest.mark.parametrize("name", GENERATED)
def test_agree_on_schema_generated_documents_and_their_mutations(name):
    strategy = from_schema(generatable(schema(name)))

    @examples(len(GENERATED))
    @given(document=strategy, mutate=st.booleans(), where=st.integers(0, 500), value=JSON_VALUES)
    def run(document, mutate, where, value):
        assert_agree(fast_check(name), validator(name), replace_somewhere(document, where, value) if mutate else document)

    run()


@pytest.mark.parametrize("name", NAMES)
def test_agree_on_arbitrary_json(name):
    @examples(len(NAMES))
    @given(document=JSON_VALUES)
    def run(document):
        assert_agree(fast_check(name), validator(name), document)

    run()


@pytest.mark.parametrize("hook", sorted(hook_registry.HOOKS))
def test_agree_on_hook_contexts(corpus, hook):
    import jsonschema

    context_schema = hook_registry.HOOKS[hook].CONTEXT_SCHEMA
    fast, explainer = FastCheck(context_schema), jsonschema.Draft202012Validator(context_schema)
    contexts = [body["context"] for body in corpus["request"] if body["hook"] == hook]

    @examples(len(hook_registry.HOOKS))
    @given(document=st.sampled_from(contexts), mutate=st.booleans(), where=st.integers(0, 5000), value=JSON_VALUES)
    def run(document, mutate, where, value):
        assert_agree(fast, explainer, replace_somewhere(document, where, value) if mutate else document)

    for context in contexts:
        assert_agree(fast, explainer, context)
    run()


def test_document_the_fast_check_cannot_read_gets_the_explaining_validator():
    # a dict with a non-string key cannot come from JSON, but the fast check must not raise on it
    assert fast_check("request").passes({1: "x"}) is False
