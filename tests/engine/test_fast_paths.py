"""The evaluation fast paths (inline memos, spliced all/any, shared parameters) change nothing."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from cds_service.engine import EngineSettings, load_ruleset
from cds_service.engine.conditions import _all, _any

PATIENTS = Path(__file__).resolve().parents[1] / "patients"
EXPECTED = yaml.safe_load((PATIENTS / "expected.yaml").read_text(encoding="utf-8"))
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def bundled():
    return load_ruleset()


def _comparable(ev) -> str:
    """Everything but the trace, with card uuids numbered in order of appearance."""
    text = json.dumps(
        {
            "findings": [(f.code, f.rule_id, f.evidence) for f in ev.findings],
            "cards": ev.cards,
            "sent": ev.sent,
            "data_quality": ev.data_quality,
            "errors": ev.errors,
            "undetermined": ev.undetermined,
        },
        default=str,
    )
    seen: dict[str, int] = {}
    return UUID.sub(lambda m: f"u{seen.setdefault(m.group(0), len(seen))}", text)


@pytest.mark.parametrize("bundle", sorted(p.name for p in PATIENTS.glob("*.json")))
@pytest.mark.parametrize("unavailable", [frozenset(), frozenset({"Observation"})])
def test_traced_and_untraced_runs_agree(bundled, bundle, unavailable):
    """Memos are only read inline when untraced; a traced run works everything out again."""
    resources = [e["resource"] for e in json.loads((PATIENTS / bundle).read_text())["entry"]]
    subject = next(r for r in resources if r["resourceType"] == "Patient")
    for profile in bundled.profiles:
        settings = EngineSettings(profile=profile, ct_cutoffs=None)
        runs = [
            bundled.evaluate(
                resources,
                hook="patient-view",
                context={"patientId": subject["id"]},
                now=EXPECTED["now"],
                settings=settings,
                trace=trace,
                unavailable=unavailable,
            )
            for trace in (False, True, False)
        ]
        assert _comparable(runs[0]) == _comparable(runs[1]) == _comparable(runs[2])


@pytest.mark.parametrize("bundle", sorted(p.name for p in PATIENTS.glob("*.json")))
def test_bare_tests_then_full_reruns_match_full_evaluation(bundled, bundle, monkeypatch):
    """Untraced runs test each rule bare and re-run only rules that fire in full: the findings,
    evidence (contents and order), cards and data quality are those of full closures alone."""
    resources = [e["resource"] for e in json.loads((PATIENTS / bundle).read_text())["entry"]]
    subject = next(r for r in resources if r["resourceType"] == "Patient")
    for profile in bundled.profiles:
        for ct in bundled.ct_sets:
            for hook in bundled.hooks:
                settings = EngineSettings(profile=profile, ct_cutoffs=ct)

                def run():
                    return bundled.evaluate(
                        resources,
                        hook=hook,
                        context={"patientId": subject["id"]},
                        now=EXPECTED["now"],
                        settings=settings,
                    )

                bare = run()
                with monkeypatch.context() as m:
                    for rule in bundled.rules:
                        m.setattr(rule, "test", None)
                    bundled.forget_plans()  # (plans hold the bare tests they were made with)
                    full = run()
                bundled.forget_plans()
                assert _comparable(bare) == _comparable(full)


def test_every_bundled_rule_has_a_bare_test_unless_it_asks_implausible_itself(bundled):
    """A rule without a bare form runs in full every time: only `implausible` outside a named
    condition needs that (its notes are the data-quality entries of that moment)."""
    for rule in bundled.rules:
        direct = "implausible" in json.dumps(rule.when_raw)
        assert (rule.test is None) == direct, rule.id


def _const(value, calls, tag):
    def child(run):
        calls.append(tag)
        return value

    return child


@pytest.mark.parametrize(
    "values",
    [
        (True, True),
        (True, None),
        (None, False, True),
        (True, True, True),
        (None, None, True, True),
        (True, False, None, True),
        (),
    ],
)
def test_spliced_and_unrolled_all_any_keep_three_valued_logic_and_order(values):
    for combine, builtin in ((_all, all), (_any, any)):
        calls: list = []
        children = [_const(v, calls, i) for i, v in enumerate(values)]
        half = len(children) // 2
        nested = combine([combine(children[:half]), combine(children[half:])])
        flat = combine(children)
        expected_calls: list = []
        expected = _reference(builtin, values, expected_calls)
        run = SimpleNamespace(trace=None, condition_memo={}, evidence=[])
        assert flat(run) is expected and calls == expected_calls
        calls.clear()
        assert nested(run) is expected and calls == expected_calls
        calls.clear()
        halves = [combine(children[:half], True), combine(children[half:], True)]
        bare_nested = combine(halves, True)
        assert bare_nested(run) is expected and calls == expected_calls


def _reference(builtin, values, calls):
    """Kleene AND/OR, stopping at the first deciding value."""
    stop = False if builtin is all else True
    unknown = False
    for i, v in enumerate(values):
        calls.append(i)
        if v is stop:
            return stop
        if v is None:
            unknown = True
    return None if unknown else (not stop)
