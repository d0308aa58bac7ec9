"""Bare all/any tests generated as straight-line Python: one function per all/any, leaves inline.

The generated function does what a loop over the children would (same order, same
short-circuit, Kleene logic) without a call per leaf: a named condition's memo, a finding, a
comparison's memo, exists/missing and profile are read in place, and `not` calls its inner
test directly; any other child is called.
Only generated names appear in the source; pack data reaches it as closure variables.
"""

from __future__ import annotations

NOT_YET = object()  # a memo entry not worked out yet in this run (its result may be None)


def generate(kind: str, children: tuple):
    """fn(run) -> True/False/None for `kind` ("all" or "any") of bare `children`."""
    stop, other = ("False", "True") if kind == "all" else ("True", "False")
    values: dict[str, object] = {"NOT_YET": NOT_YET}
    head: set[str] = set()
    body: list[str] = []
    for i, child in enumerate(children):
        body.append(f"# {kind} child {i}")
        body.extend(_leaf(i, child, values, head, stop, other))
    body.append(f"return None if unknown else {other}")
    lines = ["def test(run):", "    unknown = False"]
    lines += [f"    {line}" for line in sorted(head) + body]
    source = "\n".join(
        [f"def make({', '.join(values)}):"] + [f"    {line}" for line in lines] + ["    return test"]
    )
    make = _MAKERS.get(source)
    if make is None:  # (the source depends only on the kinds of leaves: compiled once each)
        namespace: dict = {}
        exec(compile(source, f"<bare {kind} of {len(children)}>", "exec"), namespace)
        make = _MAKERS[source] = namespace["make"]
    test = make(**values)
    test.source = source  # for tests and debugging
    return test


_MAKERS: dict[str, object] = {}  # generated source -> its compiled maker


def _decide(stop, other) -> list[str]:
    """Statements acting on `r`: return `stop`, note an unknown, or go on."""
    return [
        f"if r is not {other}:",
        "    if r is None:",
        "        unknown = True",
        f"    elif r is {stop}:",
        f"        return {stop}",
    ]


def _leaf(i, child, values, head, stop, other) -> list[str]:
    """Statements for child `i`: its value, then what the all/any does with it."""
    call = f"c{i}"
    values[call] = child
    name = getattr(child, "condition_name", None)
    if name is not None:  # a named condition: its memo, else the call (which fills it)
        values[f"n{i}"] = name
        head.add("named = run.condition_results")
        return [
            f"r = named.get(n{i}, NOT_YET)",
            "if r is NOT_YET:",
            f"    r = {call}(run)",
        ] + _decide(stop, other)
    code = getattr(child, "finding_code", None)
    if code is not None:  # made: True (False if negated); undetermined: None; else False
        values[f"f{i}"] = code
        head.add("findings = run.findings")
        head.add("undetermined = run.undetermined")
        made, unmade = ("False", "True") if child.negate else ("True", "False")
        return [
            f"if f{i} in findings:",
            f"    {_constant(made, stop)}",
            f"elif f{i} in undetermined:",
            "    unknown = True",
            "else:",
            f"    {_constant(unmade, stop)}",
        ]
    text = getattr(child, "compare_text", None)
    if text is not None:
        values[f"t{i}"] = text
        head.add("results = run.compare_results")
        return [
            f"r = results.get(t{i}, NOT_YET)",
            "if r is NOT_YET:",
            f"    r = {call}(run)",
        ] + _decide(stop, other)
    presence = getattr(child, "presence", None)
    if presence is not None:  # exists (want True) / missing (want False); unknown fact: None
        values[f"p{i}"], values[f"w{i}"] = presence
        head.add("cache = run.cache")
        return [
            f"if p{i} in run.unknown:",
            "    unknown = True",
            "else:",
            f"    fv = cache[p{i}] if p{i} in cache else run.fact(p{i})",
            f"    if ((fv is not None and fv.item is not None) is w{i}) is {stop}:",
            f"        return {stop}",
        ]
    profiles = getattr(child, "profiles", None)
    if profiles is not None:  # `profile: [...]`: never unknown
        values[f"s{i}"] = profiles
        return [f"if (run.settings.profile in s{i}) is {stop}:", f"    return {stop}"]
    inner = getattr(child, "negates", None)
    if inner is not None:  # `not`: the inner test, negated unless unknown
        values[f"x{i}"] = inner
        return [f"r = x{i}(run)", "if r is not None:", "    r = not r"] + _decide(stop, other)
    return [f"r = {call}(run)"] + _decide(stop, other)


def _constant(value, stop) -> str:
    """The statement for a child known to be `value` ("True"/"False")."""
    return f"return {stop}" if value == stop else "pass"
