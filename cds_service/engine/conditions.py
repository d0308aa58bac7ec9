"""Conditions compiled to closures over a request run, in three-valued logic (True/False/None).

Each closure notes evidence and traces; its `bare` attribute, where set, is the same test without
either, for untraced runs (codegen inlines the leaves; a rule that fires is re-run in full).
"""

from __future__ import annotations

from . import units
from .codegen import NOT_YET, generate
from .diagnostics import REFERENCE_ERROR, UNIT_ERROR
from .facts import eq, ge, gt, le, lt, ne

OPS = {  # comparisons that ignore binary floating-point noise (facts.close)
    "lt": (lt, "<"),
    "le": (le, "≤"),
    "gt": (gt, ">"),
    "ge": (ge, "≥"),
    "eq": (eq, "="),
    "ne": (ne, "≠"),
}


def describe(cond: dict) -> str:
    """A short readable form of a condition, for traces and docs."""
    if "all" in cond or "any" in cond:
        key = "all" if "all" in cond else "any"
        return f"{key}({', '.join(describe(c) for c in cond[key])})"
    if "not" in cond:
        return f"not {describe(cond['not'])}"
    if "holds" in cond:
        return f"holds({describe(cond['holds'])})"
    if "fact" in cond or "parameter" in cond:
        key = "fact" if "fact" in cond else "parameter"
        ((op, right),) = [(k, v) for k, v in cond.items() if k != key]
        return f"{cond[key]} {OPS[op][1] if op in OPS else op} {right}"
    if "older_than" in cond:
        return f"{cond['older_than']['fact']} older than {cond['older_than']['days']} d"
    ((key, value),) = cond.items()
    return f"{key} {value}"


class ConditionCompiler:
    """Turns condition data into closures, reporting unknown names through `ctx.error`."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.named: dict[str, object] = {}
        self.moments: dict[str, bool] = {}  # _notes_depend_on_the_moment, per named condition

    def compile(self, cond: dict, path: tuple, src):
        if "all" in cond or "any" in cond:
            key = "all" if "all" in cond else "any"
            children = [self.compile(c, path + (key, i), src) for i, c in enumerate(cond[key])]
            bare = _bare_of(children)
            if key == "all":
                return _with_bare(_all(children), None if bare is None else _all(bare, bare=True))
            return _with_bare(_any(children), None if bare is None else _any(bare, bare=True))
        if "not" in cond:
            inner = cond["not"]
            if isinstance(inner, dict) and len(inner) == 1 and "finding" in inner:
                return self._finding(inner["finding"], path + ("not",), src, negate=True)
            child = self.compile(inner, path + ("not",), src)
            bare_child = getattr(child, "bare", None)
            bare = None
            if bare_child is not None:

                def bare(run):
                    return None if (r := bare_child(run)) is None else not r

                bare.negates = bare_child  # called in place by generated all/any
            return _with_bare(lambda run: None if (r := child(run)) is None else not r, bare)
        if "holds" in cond:  # two-valued: unknown counts as not holding
            child = self.compile(cond["holds"], path + ("holds",), src)
            bare_child = getattr(child, "bare", None)
            bare = None
            if bare_child is not None:

                def bare(run):
                    return bare_child(run) is True

            return _with_bare(lambda run: child(run) is True, bare)
        if "finding" in cond:
            return self._finding(cond["finding"], path, src)
        if "condition" in cond:
            name = cond["condition"]
            if name not in self.ctx.conditions_raw:
                self.ctx.error(
                    src, path + ("condition",), REFERENCE_ERROR, f"unknown condition {name!r}"
                )
                return _unknown
            named = self.named

            def named_condition(run):
                # worked out once per request: every rule that uses it runs after the rules
                # making any finding it refers to, so its value cannot change within a request
                memo = run.condition_memo.get(name)
                if memo is not None and run.trace is None:
                    if run.evidence is not None:
                        run.evidence.extend(memo[1])
                    return memo[0]
                evidence = run.evidence
                start = len(evidence) if evidence is not None else 0
                result = named[name](run)
                notes = tuple(evidence[start:]) if evidence is not None else ()
                if evidence is not None:
                    run.condition_memo[name] = (result, notes)
                    run.condition_results[name] = result  # (the bare tests' memo: the same)
                return result

            if self._notes_depend_on_the_moment(name):

                def bare_named_condition(run):
                    # first use in full: its notes are those of that moment, as before, for
                    # the rules that fire and re-run in full later
                    results = run.condition_results
                    result = results.get(name, NOT_YET)
                    if result is NOT_YET:
                        outer = run.evidence
                        run.evidence = []
                        try:
                            result = results[name] = named_condition(run)
                        finally:
                            run.evidence = outer
                    return result

            else:

                def bare_named_condition(run):
                    # bare: its notes are worked out (the same) if a rule using it fires
                    results = run.condition_results
                    result = results.get(name, NOT_YET)
                    if result is NOT_YET:
                        body = named[name]
                        result = results[name] = (getattr(body, "bare", None) or body)(run)
                    return result

            bare_named_condition.condition_name = name  # generated plans read condition_results
            return _with_bare(named_condition, bare_named_condition)
        if "exists" in cond or "missing" in cond:
            key = "exists" if "exists" in cond else "missing"
            name = cond[key]
            if not self._fact(name, path + (key,), src):
                return _unknown
            return _with_bare(
                _presence(describe(cond), name, key == "exists"),
                _bare_presence(name, key == "exists"),
            )
        if "older_than" in cond:
            return self._older(cond["older_than"], path + ("older_than",), src)
        if "implausible" in cond:
            which = cond["implausible"]
            if which != "any":
                for i, name in enumerate(which):
                    self._fact(name, path + ("implausible", i), src)
            names = None if which == "any" else frozenset(which)
            text = describe(cond)
            return lambda run: run.record(
                text, run.implausible(names), None, implausible=names or True
            )
        if "profile" in cond:
            profiles = frozenset(cond["profile"])
            for i, p in enumerate(cond["profile"]):
                if p not in self.ctx.profiles:
                    self.ctx.error(
                        src, path + ("profile", i), REFERENCE_ERROR, f"unknown profile {p!r}"
                    )

            def in_profiles(run):
                return run.settings.profile in profiles

            in_profiles.profiles = profiles  # read in place by generated all/any
            return _with_bare(in_profiles, SAME)
        if "parameter" in cond:
            return self._parameter(cond, path, src)
        return self._compare(cond, path, src)

    def conjunction(self, children):
        """`all` of compiled conditions (a rule's `when` with the `when` of a fragment option and
        of a policy entry): the same closure as compiling `{all: [...]}` of them."""
        bare = _bare_of(children)
        return _with_bare(_all(children), None if bare is None else _all(bare, bare=True))

    def _notes_depend_on_the_moment(self, name, seen=None) -> bool:
        """Whether named condition `name` (with those it uses) asks `implausible` (notes the
        data-quality entries made so far) or a finding (notes it only once made)."""
        known = self.moments.get(name)
        if known is not None:
            return known
        top = seen is None
        seen = set() if seen is None else seen
        if name in seen:
            return False
        seen.add(name)
        found = self._asks_the_moment(name, seen)
        if top:
            self.moments[name] = found
        return found

    def _asks_the_moment(self, name, seen) -> bool:
        """The walk behind _notes_depend_on_the_moment (`seen`: named conditions on the way)."""
        stack = [self.ctx.conditions_raw[name].data]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if "implausible" in node or "finding" in node:
                    return True
                used = node.get("condition")
                if isinstance(used, str) and used in self.ctx.conditions_raw:
                    if self._notes_depend_on_the_moment(used, seen):
                        return True
                stack.extend(v for k, v in node.items() if k != "condition")
            elif isinstance(node, list):
                stack.extend(node)
        return False

    def _parameter(self, cond, path, src):
        """`{parameter: p, eq: 1}`: a deployment switch or setting (unknown if p has no value)."""
        name = cond["parameter"]
        ((op, right),) = [(k, v) for k, v in cond.items() if k != "parameter"]
        param = self.ctx.params.get(name)
        if param is None:
            self.ctx.error(
                src, path + ("parameter",), REFERENCE_ERROR, f"unknown parameter {name!r}"
            )
            return _unknown
        fn, _ = OPS[op]
        text = describe(cond)
        if isinstance(right, (int, float)):
            number = float(right)

            def other(run):
                return number
        elif right in self.ctx.params:
            k = self._factor(
                self.ctx.params[right].unit, param.unit, path + (op,), src, f"parameter {right!r}"
            )

            def other(run):
                p = run.param(right)
                return None if p is None else p.value * k
        else:
            self.ctx.error(src, path + (op,), REFERENCE_ERROR, f"unknown parameter {right!r}")
            return _unknown

        def compare(run):
            p = run.param(name)
            value = other(run)
            result = None if p is None or value is None else fn(p.value, value)
            return run.record_fact(text, result, None)

        def bare_compare(run):
            p = run.param(name)
            value = other(run)
            return None if p is None or value is None else fn(p.value, value)

        return _with_bare(compare, bare_compare)

    def _finding(self, code, path, src, negate=False):
        """`{finding: code}`, or `{not: {finding: code}}` as one closure when `negate`."""
        if code not in self.ctx.catalog:
            self.ctx.error(
                src, path + ("finding",), REFERENCE_ERROR, f"finding {code!r} is not in findings.md"
            )
        elif code not in self.ctx.findings_made:
            self.ctx.error(
                src, path + ("finding",), REFERENCE_ERROR, f"no rule makes finding {code!r}"
            )
        text = f"finding {code}"

        def finding(run):
            if code in run.findings:
                if run.evidence is not None:
                    run.evidence.append({"finding": code})
                result = True
            else:
                result = None if code in run.undetermined else False
            if run.trace is not None:
                run.trace.append({"rule": run.rule_id, "condition": text, "result": result})
            if negate:
                return None if result is None else not result
            return result

        if negate:

            def bare_finding(run):
                if code in run.findings:
                    return False
                return None if code in run.undetermined else True

        else:

            def bare_finding(run):
                if code in run.findings:
                    return True
                return None if code in run.undetermined else False

        bare_finding.finding_code = code  # read in place by generated all/any (codegen)
        bare_finding.negate = negate
        return _with_bare(finding, bare_finding)

    def _fact(self, name, path, src):
        fact = self.ctx.facts.get(name)
        if fact is None:
            self.ctx.error(src, path, REFERENCE_ERROR, f"unknown fact {name!r}")
        return fact

    def days(self, value, path, src):
        """A number of days, or a parameter converted to days: returns fn(run) -> float | None."""
        if isinstance(value, (int, float)):
            number = float(value)
            return lambda run: number
        param = self.ctx.params.get(value)
        if param is None:
            self.ctx.error(src, path, REFERENCE_ERROR, f"unknown parameter {value!r}")
            return lambda run: None
        try:
            k = units.factor(param.unit, "d")
        except units.UnitError:
            self.ctx.error(
                src, path, UNIT_ERROR, f"parameter {value!r} is in {param.unit!r}, not a duration"
            )
            return lambda run: None
        return lambda run: None if (p := run.param(value)) is None else p.value * k

    def _older(self, spec, path, src):
        name = spec["fact"]
        if not self._fact(name, path + ("fact",), src):
            return _unknown
        days = self.days(spec["days"], path + ("days",), src)
        text = describe({"older_than": spec})

        def older(run):
            age = run.age_days(name)
            limit = days(run)
            if limit is None or name in run.unknown:
                result = None
            else:
                result = False if age is None else age > limit
            return run.record_fact(text, result, name)

        def bare_older(run):
            age = run.age_days(name)
            limit = days(run)
            if limit is None or name in run.unknown:
                return None
            return False if age is None else age > limit

        return _with_bare(older, bare_older)

    def _compare(self, cond, path, src):
        name = cond["fact"]
        fact = self._fact(name, path + ("fact",), src)
        ((op, right),) = [(k, v) for k, v in cond.items() if k != "fact"]
        if fact is None:
            return _unknown
        text = describe(cond)
        if op == "in":
            if fact.type != "code":
                self.ctx.error(
                    src,
                    path + ("in",),
                    REFERENCE_ERROR,
                    f"'in' needs a code fact; {name!r} is {fact.type}",
                )
            allowed = frozenset(right)
            return _with_bare(
                lambda run: run.record_fact(
                    text, None if (v := run.value(name)) is None else v in allowed, name
                ),
                lambda run: None if (v := run.value(name)) is None else v in allowed,
            )
        if fact.type != "quantity" or fact.select == "all":
            self.ctx.error(
                src,
                path + ("fact",),
                REFERENCE_ERROR,
                f"{op!r} needs a single quantity; fact {name!r} is {fact.type}/{fact.select}",
            )
            return _unknown
        fn, symbol = OPS[op]
        if isinstance(right, (int, float)):
            number = float(right)
            return _comparison(text, name, fn, symbol, number, None)
        if right in self.ctx.params:
            param = self.ctx.params[right]
            k = self._factor(param.unit, fact.unit, path + (op,), src, f"parameter {right!r}")
            return _comparison(text, name, fn, symbol, None, (right, k, "param"))
        if right in self.ctx.facts:
            other = self.ctx.facts[right]
            if other.type != "quantity":
                self.ctx.error(
                    src, path + (op,), REFERENCE_ERROR, f"fact {right!r} is not a quantity"
                )
                return _unknown
            k = self._factor(other.unit, fact.unit, path + (op,), src, f"fact {right!r}")
            return _comparison(text, name, fn, symbol, None, (right, k, "fact"))
        self.ctx.error(src, path + (op,), REFERENCE_ERROR, f"unknown parameter or fact {right!r}")
        return _unknown

    def _factor(self, from_unit, to_unit, path, src, what) -> float:
        try:
            return units.factor(from_unit, to_unit)
        except units.UnitError:
            self.ctx.error(
                src,
                path,
                UNIT_ERROR,
                f"{what} in {from_unit!r} cannot be compared with {to_unit!r}",
            )
            return 1.0


def _presence(text, name, want):
    """`exists`/`missing`: run.has(name) is want, recorded like record_fact, in one call."""

    def presence(run):
        if name in run.unknown:
            result = None
        else:
            cache = run.cache
            fv = cache[name] if name in cache else run.fact(name)
            result = (fv is not None and fv.item is not None) is want
        if run.evidence is not None:
            run.evidence.append(name)
        if run.trace is not None:
            run.trace.append({"rule": run.rule_id, "condition": text, "result": result})
        return result

    return presence


def _bare_presence(name, want):
    """`exists`/`missing` without evidence or trace."""

    def presence(run):
        if name in run.unknown:
            return None
        cache = run.cache
        fv = cache[name] if name in cache else run.fact(name)
        return (fv is not None and fv.item is not None) is want

    presence.presence = (name, want)  # worked out in place by generated all/any
    return presence


def _comparison(text, name, fn, symbol, number, ref):
    """`name <op> right`; the same comparison text is worked out once per request (Run._compare)."""

    def comparison(run):
        memo = run.compare_memo.get(text)
        if memo is None:
            memo = run.compare_memo[text] = run._compare(name, fn, symbol, number, ref)
            run.compare_results[text] = memo[0]  # (the bare tests' memo: the same)
        if run.evidence is not None:
            run.evidence.extend(memo[1])
        if run.trace is not None:
            result, _, left, right = memo
            run.trace.append(
                {
                    "rule": run.rule_id,
                    "condition": text,
                    "result": result,
                    "left": left,
                    "right": right,
                }
            )
        return memo[0]

    def bare_comparison(run):
        results = run.compare_results
        if text in results:
            return results[text]
        result = results[text] = run.compare_result(name, fn, number, ref)
        return result

    bare_comparison.compare_text = text  # its memo is read in place by generated all/any
    comparison.bare = bare_comparison
    return comparison


def _unknown(run):
    return None


_unknown.bare = _unknown
SAME = object()  # _with_bare: the closure notes nothing, so it is its own bare form


def _with_bare(full, bare):
    """`full`, with `bare` (or None: no bare form, the full closure is used) attached."""
    full.bare = full if bare is SAME else bare
    return full


def _bare_of(children) -> tuple | None:
    """The bare forms of `children`, or None if any child has none."""
    out = tuple(getattr(c, "bare", None) for c in children)
    return None if any(b is None for b in out) else out


def _all(children, bare=False):
    """Three-valued AND; nested `all`s are spliced in (same order, same short-circuit).
    `bare`: the children are bare closures, and so is the result (memos are read, never noted)."""
    children = _spliced(children, "all_of")
    if bare:
        all_ = generate("all", children)
    elif len(children) == 2:
        first, second = children

        def all_(run):
            a = first(run)
            if a is False:
                return False
            b = second(run)
            if b is False:
                return False
            return None if a is None or b is None else True

    elif len(children) == 3:
        first, second, third = children

        def all_(run):
            a = first(run)
            if a is False:
                return False
            b = second(run)
            if b is False:
                return False
            c = third(run)
            if c is False:
                return False
            return None if a is None or b is None or c is None else True

    else:

        def all_(run):
            unknown = False
            for child in children:
                result = child(run)
                if result is False:
                    return False
                if result is None:
                    unknown = True
            return None if unknown else True

    all_.all_of = children
    return all_


def _any(children, bare=False):
    """Three-valued OR; nested `any`s are spliced in (same order, same short-circuit).
    `bare`: the children are bare closures, and so is the result (memos are read, never noted)."""
    children = _spliced(children, "any_of")
    if bare:
        any_ = generate("any", children)
    else:

        def any_(run):
            unknown = False
            for child in children:
                result = child(run)
                if result is True:
                    return True
                if result is None:
                    unknown = True
            return None if unknown else False

    any_.any_of = children
    return any_


def _spliced(children, kind) -> tuple:
    """Children with each child of the same kind replaced by its own children."""
    out: list = []
    for child in children:
        out.extend(getattr(child, kind, None) or (child,))
    return tuple(out)
