"""Bare tests generated as straight-line Python: all/any with their leaves inline, and plans.

A generated all/any does what a loop over the children would (same order, same
short-circuit, Kleene logic) without a call per leaf: a named condition's memo, a finding, a
comparison's memo, exists/missing and profile are read in place, and `not` calls its inner
test directly; any other child is called. A generated plan runs a hook's rules in order with
each rule's top-level all/any inline, calling `settle` for a rule that is not false.
Only generated names appear in the source; pack data reaches it as closure variables.
"""

from __future__ import annotations

NOT_YET = object()  # a memo entry not worked out yet in this run (its result may be None)
ONCE = (None,)  # a plan runs each rule's test in `for _ in ONCE:`, left early by `break`
HEAD = (  # what the leaves read from the run, bound once per call
    "cache = run.cache",
    "findings = run.findings",
    "named = run.condition_results",
    "results = run.compare_results",
    "undetermined = run.undetermined",
)


def generate(kind: str, children: tuple):
    """fn(run) -> True/False/None for `kind` ("all" or "any") of bare `children`."""
    values: dict[str, object] = {"NOT_YET": NOT_YET}
    head: set[str] = set()
    body = _combined(kind, children, "", values, head, _return, None)
    body[-1] = body[-1].replace("r = ", "return ", 1)
    lines = ["def test(run):"] + [f"    {line}" for line in sorted(head) + body]
    test = _made(f"<bare {kind} of {len(children)}>", lines, values)
    return test


PLAN_CHUNK = 32  # rules per generated function: compiling one function is superlinear in size


def generate_plan(entries: tuple, settle, failed):
    """fn(run, made, errors) running `entries` ((finding, rule) pairs) in order: a rule whose
    finding is not made yet is tested bare (in place) and, unless false, handed to
    settle(run, rule, result, errors); a bare test that raises is failed(errors, rule, exc)
    (None). A rule without a bare test is settled as if true (it runs in full). A long plan
    is generated in chunks of PLAN_CHUNK rules run one after the other (the same order)."""
    if len(entries) > PLAN_CHUNK:
        parts = tuple(
            generate_plan(entries[i : i + PLAN_CHUNK], settle, failed)
            for i in range(0, len(entries), PLAN_CHUNK)
        )

        def plan(run, made, errors):
            for part in parts:
                part(run, made, errors)

        plan.source = "\n".join(part.source for part in parts)
        return plan
    values: dict[str, object] = {"NOT_YET": NOT_YET, "ONCE": ONCE}
    values.update(settle=settle, failed=failed)
    head: set[str] = set()
    local: dict[tuple, str] = {}  # memo entry -> the plan's local copy (memos never change)
    body: list[str] = []
    for j, (finding, rule) in enumerate(entries):
        values[f"g{j}"], values[f"rule{j}"] = finding, rule
        body.append(f"# rule {j}")
        body.append(f"if g{j} not in made:")
        test = rule.test
        if test is None:
            body.append(f"    settle(run, rule{j}, True, errors)")
            continue
        kind, children = _top(test)
        block = _combined(kind, children, f"{j}_", values, head, _break, local)
        body += ["    try:", "        for _ in ONCE:"] + [f"            {line}" for line in block]
        body += [
            "    except Exception as exc:  # reported as the rule's error, as a loop would",
            f"        r = failed(errors, rule{j}, exc)",
            "    if r is not False:",
            f"        settle(run, rule{j}, r, errors)",
        ]
    head.update(f"{v} = NOT_YET" for v in local.values())
    lines = ["def plan(run, made, errors):"] + [f"    {line}" for line in sorted(head) + body]
    return _made(f"<plan of {len(entries)} rules>", lines, values)


def _return(value) -> list[str]:
    """Leave a generated all/any with `value`."""
    return [f"return {value}"]


def _break(value) -> list[str]:
    """Leave a plan's rule test with `value`."""
    return [f"r = {value}", "break"]


def _top(test) -> tuple[str, tuple]:
    """A rule's bare test as (kind, children): its all/any, or an all of itself."""
    if getattr(test, "all_of", None) is not None:
        return "all", test.all_of
    if getattr(test, "any_of", None) is not None:
        return "any", test.any_of
    return "all", (test,)


def _made(filename, lines, values):
    """Compile `lines` (one function) inside a maker taking `values`; return what it makes."""
    source = "\n".join(
        [f"def make({', '.join(values)}):"]
        + [f"    {line}" for line in lines]
        + [f"    return {lines[0][4 : lines[0].index('(')]}"]
    )
    make = _MAKERS.get(source)
    if make is None:  # (the source depends only on the kinds of leaves: compiled once each)
        namespace: dict = {}
        exec(compile(source, filename, "exec"), namespace)
        make = _MAKERS[source] = namespace["make"]
        if len(_MAKERS) > 4096:
            _MAKERS.clear()
    made = make(**values)
    made.source = source  # for tests and debugging
    return made


_MAKERS: dict[str, object] = {}  # generated source -> its compiled maker


def _combined(kind, children, tag, values, head, leave, local) -> list[str]:
    """Statements setting `r` to `kind` of `children`, leaving early through `leave`; `local`
    (a plan's): memo entries already given a local variable."""
    stop, other = ("False", "True") if kind == "all" else ("True", "False")
    lines = ["unknown = False"]
    for i, child in enumerate(children):
        lines.append(f"# {kind} child {i}")
        lines.extend(_leaf(f"{tag}{i}", child, values, head, stop, other, leave, local))
    lines.append(f"r = None if unknown else {other}")
    return lines


def _decide(stop, other, leave, value="r") -> list[str]:
    """Statements acting on `value` (a variable): leave with `stop`, note an unknown, or go on."""
    return [
        f"if {value} is not {other}:",
        f"    if {value} is None:",
        "        unknown = True",
        f"    elif {value} is {stop}:",
    ] + [f"        {line}" for line in leave(stop)]


def _memo_read(memo, key, call, kept, stop, other, leave) -> list[str]:
    """Statements reading a memo entry (else the call, which fills it), then deciding on it;
    `kept`: a plan's local variable keeping what was read, for its later rules."""
    if kept is None:
        return [
            f"r = {memo}.get({key}, NOT_YET)",
            "if r is NOT_YET:",
            f"    r = {call}(run)",
        ] + _decide(stop, other, leave)
    return [
        f"if {kept} is NOT_YET:",
        f"    {kept} = {memo}.get({key}, NOT_YET)",
        f"    if {kept} is NOT_YET:",
        f"        {kept} = {call}(run)",
    ] + _decide(stop, other, leave, kept)


def _kept(local, key) -> str | None:
    """The plan's local variable for memo entry `key` (None outside a plan)."""
    if local is None:
        return None
    return local.setdefault(key, f"v{len(local)}")


def _leaf(i, child, values, head, stop, other, leave, local) -> list[str]:
    """Statements for child `i`: its value, then what the all/any does with it."""
    call = f"c{i}"
    values[call] = child
    name = getattr(child, "condition_name", None)
    if name is not None:  # a named condition: its memo, else the call (which fills it)
        values[f"n{i}"] = name
        head.add(HEAD[2])
        kept = _kept(local, ("named", name))
        return _memo_read("named", f"n{i}", call, kept, stop, other, leave)
    code = getattr(child, "finding_code", None)
    if code is not None:  # made: True (False if negated); undetermined: None; else False
        values[f"f{i}"] = code
        head.update((HEAD[1], HEAD[4]))
        made, unmade = ("False", "True") if child.negate else ("True", "False")
        return (
            [f"if f{i} in findings:"]
            + _constant(made, stop, leave)
            + [f"elif f{i} in undetermined:", "    unknown = True", "else:"]
            + _constant(unmade, stop, leave)
        )
    text = getattr(child, "compare_text", None)
    if text is not None:
        values[f"t{i}"] = text
        head.add(HEAD[3])
        kept = _kept(local, ("compare", text))
        return _memo_read("results", f"t{i}", call, kept, stop, other, leave)
    presence = getattr(child, "presence", None)
    if presence is not None:  # exists (want True) / missing (want False); unknown fact: None
        values[f"p{i}"], values[f"w{i}"] = presence
        head.add(HEAD[0])
        return [
            f"if p{i} in run.unknown:",
            "    unknown = True",
            "else:",
            f"    fv = cache[p{i}] if p{i} in cache else run.fact(p{i})",
            f"    if ((fv is not None and fv.item is not None) is w{i}) is {stop}:",
        ] + [f"        {line}" for line in leave(stop)]
    profiles = getattr(child, "profiles", None)
    if profiles is not None:  # `profile: [...]`: never unknown
        values[f"s{i}"] = profiles
        return [f"if (run.settings.profile in s{i}) is {stop}:"] + [
            f"    {line}" for line in leave(stop)
        ]
    inner = getattr(child, "negates", None)
    if inner is not None:  # `not`: the inner test, negated unless unknown
        values[f"x{i}"] = inner
        return [f"r = x{i}(run)", "if r is not None:", "    r = not r"] + _decide(
            stop, other, leave
        )
    return [f"r = {call}(run)"] + _decide(stop, other, leave)


def _constant(value, stop, leave) -> list[str]:
    """The statements, indented, for a child known to be `value` ("True"/"False")."""
    return [f"    {line}" for line in leave(stop)] if value == stop else ["    pass"]
