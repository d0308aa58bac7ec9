"""Generated bare all/any (codegen) read leaves in place exactly as calling them would."""

import itertools
from types import SimpleNamespace

import pytest

from cds_service.engine.codegen import NOT_YET, generate


def _leaves(calls):
    """One leaf of each kind codegen inlines, plus a plain closure; each records its calls."""

    def named(run):
        calls.append("named")
        run.condition_results["n"] = run.values["named"]
        return run.values["named"]

    named.condition_name = "n"

    def finding(run):
        calls.append("finding")
        if "f" in run.findings:
            return True
        return None if "f" in run.undetermined else False

    finding.finding_code, finding.negate = "f", False

    def not_finding(run):
        calls.append("not_finding")
        if "g" in run.findings:
            return False
        return None if "g" in run.undetermined else True

    not_finding.finding_code, not_finding.negate = "g", True

    def comparison(run):
        calls.append("comparison")
        run.compare_results["t"] = run.values["comparison"]
        return run.values["comparison"]

    comparison.compare_text = "t"

    def presence(run):
        calls.append("presence")
        if "p" in run.unknown:
            return None
        fv = run.fact("p")
        return (fv is not None and fv.item is not None) is True

    presence.presence = ("p", True)

    def plain(run):
        calls.append("plain")
        return run.values["plain"]

    return [named, finding, not_finding, comparison, presence, plain]


def _run(values, state, memoised):
    found = SimpleNamespace(item=1) if state["fact"] else None
    run = SimpleNamespace(
        values=values,
        condition_results={"n": values["named"]} if memoised else {},
        compare_results={"t": values["comparison"]} if memoised else {},
        findings={code: 1 for code in "fg" if state[code] == "made"},
        undetermined={code for code in "fg" if state[code] == "unknown"},
        unknown={"p"} if state["fact"] is None else set(),
        cache={},
        fact=lambda name: found,
    )
    return run


def _expected(kind, children, run):
    """The loop the generated code replaces (Kleene AND/OR, first deciding value stops)."""
    stop = False if kind == "all" else True
    unknown = False
    for child in children:
        result = child(run)
        if result is stop:
            return stop
        if result is None:
            unknown = True
    return None if unknown else (not stop)


STATES = [
    {"f": f, "g": g, "fact": fact}
    for f, g in itertools.product(["made", "unknown", "no"], repeat=2)
    for fact in (True, False, None)
]
VALUES = [
    {"named": a, "comparison": b, "plain": c}
    for a, b, c in itertools.product([True, False, None], repeat=3)
]


@pytest.mark.parametrize("kind", ["all", "any"])
@pytest.mark.parametrize("memoised", [False, True])
def test_generated_all_any_match_the_loop(kind, memoised):
    for state in STATES:
        for values in VALUES:
            expected_calls: list = []
            expected = _expected(kind, _leaves(expected_calls), _run(values, state, memoised))
            calls: list = []
            leaves = _leaves(calls)
            test = generate(kind, tuple(leaves))
            run = _run(values, state, memoised)
            assert test(run) is expected, (state, values)
            # inlined leaves are not called; memo misses still call (and fill the memo)
            memo_leaves = () if memoised else ("named", "comparison")
            assert calls == [c for c in expected_calls if c == "plain" or c in memo_leaves]


def test_generated_source_names_no_pack_data():
    leaves = _leaves([])
    source = generate("all", tuple(leaves)).source
    assert '"' not in source and "'" not in source  # data reaches it as closure variables
    assert NOT_YET is not None


def _rule(name, finding, value, calls):
    """A rule whose bare test is a one-leaf all giving `value` (or raising, or no test)."""

    def test(run):
        calls.append(name)
        if value == "raise":
            raise ValueError(name)
        return value

    return SimpleNamespace(id=name, finding=finding, test=None if value == "none" else test)


@pytest.mark.parametrize(
    "values",
    [
        [True, False, None, "raise", "none"],
        [False, False, True, True],  # the second rule of a made finding is not tested
        [None, "none", True, "raise"],
    ],
)
def test_generated_plan_runs_rules_as_the_loop_would(values):
    from cds_service.engine.codegen import generate_plan

    calls: list = []
    rules = [
        _rule(f"r{i}", "same" if i in (2, 3) else f"f{i}", v, calls) for i, v in enumerate(values)
    ]
    settled: list = []

    def settle(run, rule, result, errors):
        settled.append((rule.id, result))
        if result is True:
            made[rule.finding] = rule

    def failed(errors, rule, exc):
        errors.append((rule.id, str(exc)))

    made: dict = {}
    errors: list = []
    run = SimpleNamespace(
        condition_results={}, compare_results={}, findings=made, undetermined=set(), cache={}
    )
    plan = generate_plan(tuple((r.finding, r) for r in rules), settle, failed)
    plan(run, made, errors)

    want_calls, want_settled, want_errors, want_made = [], [], [], set()
    for rule, value in zip(rules, values, strict=True):
        if rule.finding in want_made:
            continue
        if value != "none":
            want_calls.append(rule.id)
        result = {"raise": None, "none": True}.get(value, value)
        if value == "raise":
            want_errors.append((rule.id, rule.id))
        if result is not False:
            want_settled.append((rule.id, result))
            if result is True:
                want_made.add(rule.finding)
    assert (calls, settled, errors) == (want_calls, want_settled, want_errors)
