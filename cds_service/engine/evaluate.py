"""Evaluate a compiled rule set for one request: facts → findings (with evidence) → cards."""

from __future__ import annotations

from dataclasses import dataclass, field

from cds_service.suppression import Suppression  # noqa: F401 - re-exported: one class, one home

from .cards import compose
from .facts import Run
from .medications import medications_by_id, prepare


@dataclass(frozen=True)
class EngineSettings:
    """What configuration chooses: profile, CT cut-off set, card language, finding code system."""

    profile: str = "ewgsop2"
    ct_cutoffs: str | None = "martin2013"  # None: the profile's default_ct_cutoffs in the packs
    locale: str = "en"
    finding_system: str = "https://sarcopenia-cds.org/CodeSystem/finding"


@dataclass
class Finding:
    """A finding made for this request, by the rule `rule_id`, with the evidence behind it."""

    code: str
    display: str
    rule_id: str
    evidence: list[dict] = field(default_factory=list)


@dataclass
class Evaluation:
    """Everything one evaluation produced."""

    findings: list[Finding]
    cards: list[dict]
    sent: list[dict]
    data_quality: list[dict]
    trace: list[dict] | None = None
    suppressed: list[str] = field(default_factory=list)
    errors: list[dict] = field(
        default_factory=list
    )  # rules skipped because they raised: {rule, error}
    # findings not made because the data they need was unavailable (neither true nor false)
    undetermined: list[str] = field(default_factory=list)


def evaluate(
    rs,
    resources,
    *,
    hook,
    context,
    orders=(),
    now,
    settings,
    suppress=None,
    trace=False,
    unavailable=frozenset(),
) -> Evaluation:
    """Pure function of its arguments: no I/O, no globals; the rule set is read-only."""
    orders = list(orders)
    recognition: dict = {}
    if (orders and "orders" in rs.medication_sources) or "record" in rs.medication_sources:
        resources, orders, recognition = _recognise(rs, resources, orders, context or {})
    run = Run(rs, resources, orders, hook, context or {}, now, settings, trace, unavailable)
    run.recognition = recognition
    made: dict[str, tuple[Finding, object]] = {}
    errors: list[dict] = []
    run.findings = made
    if run.trace is None:  # (bare tests ignore run.evidence and run.rule_id)
        rs.untraced_plan(hook, settings.profile, run.ct_cutoffs)(run, made, errors)
    else:
        _run_traced(rs, run, rs.plan(hook, settings.profile, run.ct_cutoffs), made, errors)
    run.evidence = None
    run.rule_id = None
    cards, sent = compose(rs, run, made, suppress)
    hidden = sorted(c for c in made if suppress and c in suppress.findings)
    findings = [f for f, _ in made.values()]
    undetermined = sorted(run.undetermined - made.keys())
    return Evaluation(
        findings, cards, sent, run.data_quality, run.trace, hidden, errors, undetermined
    )


def _recognise(rs, resources, orders, context):
    """Medication resources seen through recognition (engine/medications.py), with the notes."""
    draft = context.get("draftOrders") if isinstance(context.get("draftOrders"), dict) else {}
    entries = [e.get("resource") for e in draft.get("entry") or () if isinstance(e, dict)]
    found = medications_by_id(resources, orders, entries)
    notes: dict = {}
    if "orders" in rs.medication_sources:
        orders, notes = prepare(orders, rs.drug_classes, found)
    if "record" in rs.medication_sources:
        resources, more = prepare(list(resources), rs.drug_classes, found)
        for reference, items in more.items():
            notes.setdefault(reference, []).extend(items)
    return resources, orders, notes


def settle(run, rule, result, errors) -> None:
    """What the untraced plan (codegen.generate_plan) does with a rule whose bare test is not
    false: true (or no bare test) runs its full closure, noting the evidence (the same notes
    in the same order: its memos and facts are already worked out), and makes its finding;
    unknown may leave its finding undetermined."""
    if result is True:
        try:
            run.evidence = []
            result = rule.when(run)
        except Exception as exc:  # a rule failing on odd data is skipped, not the request
            result = failed(errors, rule, exc)
        if result is True:
            _make(run.rs, run, rule, run.findings)
            return
    if result is None and (run.unavailable or run.undetermined):
        _unknown_result(run, rule)


def failed(errors, rule, exc) -> None:
    """Report a rule that raised (it is skipped, never the whole request); its result: None."""
    errors.append({"rule": rule.id, "error": f"{type(exc).__name__}: {exc}"})


def _unknown_result(run, rule) -> None:
    """A rule neither true nor false: its finding is undetermined if unavailable data (or an
    undetermined finding) may be why."""
    unavailable, undetermined = run.unavailable, run.undetermined
    if (unavailable or undetermined) and (
        rule.when_types & unavailable or rule.finding_refs & undetermined
    ):
        undetermined.add(rule.finding)


def _run_traced(rs, run, plan, made, errors) -> None:
    """Every rule in full, each condition traced (memos are not read: all is worked out again)."""
    for rule, skipped in plan:
        if skipped is not None:
            run.trace.append(
                {"rule": rule.id, "finding": rule.finding, "result": None, "skipped": skipped}
            )
            continue
        run.rule_id = rule.id
        run.evidence = []
        try:
            result = rule.when(run)
        except Exception as exc:  # a rule failing on odd data is skipped, never the whole request
            result = failed(errors, rule, exc)
        if result is True and rule.finding not in made:
            _make(rs, run, rule, made)
        elif result is None:
            _unknown_result(run, rule)
        run.trace.append({"rule": rule.id, "finding": rule.finding, "result": result})


def _make(rs, run, rule, made) -> None:
    """Record the finding of `rule`, with the evidence its run noted plus its own evidence facts."""
    for name in rule.evidence:
        run._note_fact(name)
    finding = Finding(
        rule.finding,
        rs.display(rule.finding, run.settings.locale),
        rule.id,
        run.materialize(run.evidence),
    )
    made[rule.finding] = (finding, rule)
