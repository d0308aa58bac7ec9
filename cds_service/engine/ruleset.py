"""RuleSet: the compiled packs, with evaluate(), relevant() and prefetch_templates()."""

from __future__ import annotations

from .catalog import FINDINGS, HOOKS
from .compile import _finding_refs
from .codegen import generate_plan
from .evaluate import evaluate as _evaluate
from .evaluate import failed, settle
from .facts import _codings_fast

PREFETCH_KEYS = {
    "Patient": "patient",
    "Condition": "conditions",
    "Observation": "observations",
    "ImagingStudy": "imagingStudies",
    "MedicationRequest": "medicationRequests",
    "MedicationStatement": "medicationStatements",
    "MedicationAdministration": "medicationAdministrations",
    "ServiceRequest": "serviceRequests",
    "Procedure": "procedures",
    "Encounter": "encounters",
}


class RuleSet:
    """Compiled, read-only rule packs. Build with load_ruleset()."""

    def __init__(self, compiler, rules, suggestions, links, reasons, groups, files):
        c = compiler
        #: the pack files loaded, as absolute paths (a test case with overrides loads them again)
        self.files = files
        self.packs = c.packs
        self.versions = {pid: meta["version"] for pid, meta in c.packs.items()}  # load order
        self.version = "+".join(f"{pid}@{v}" for pid, v in self.versions.items())
        self.facts = c.facts
        self.params = c.params
        #: parameters some of whose values an override pack chose (provenance on the cards)
        self.local_params = frozenset(n for n, p in self.params.items() if p.local)
        self.value_sets = c.value_sets
        #: value sets read by medication facts, with their recognition tables (engine/medications.py)
        self.drug_classes = c.drug_classes
        self.medication_sources = frozenset(
            f.source for f in c.facts.values()
            if f.kind == "data" and f.valueset is not None and f.valueset.name in c.drug_classes
        )
        self.code_systems = {k: d.data for k, d in c.defs["code_systems"].items()}
        self.references = {k: d.data for k, d in c.defs["references"].items()}
        self.profiles = {k: d.data for k, d in c.defs["profiles"].items()}
        self.ct_sets = {k: d.data for k, d in c.defs["ct_cutoff_sets"].items()}
        self.finding_texts = {k: d.data["display"] for k, d in c.defs["findings"].items()}
        self.rules = rules
        self.suggestions = suggestions
        self.links = links
        self.override_reasons = reasons
        self.groups = groups
        self.rules_by_hook = {h: [r for r in rules if h in r.hooks] for h in HOOKS}
        self.hooks = [h for h in HOOKS if self.rules_by_hook[h]]
        self.plausible_facts = tuple(
            n for n, f in self.facts.items() if f.plausible or f.conflict is not None
        )
        self._conditions_raw = {k: d.data for k, d in c.conditions_raw.items()}
        #: the rules as written (one per rule id, before expansion into cases), for `rules docs`
        self.rule_sources = [d.data for d in c.rule_defs]
        self.policy_sources = {k: d.data for k, d in c.defs["suggestion_policies"].items()}
        self.fragment_sources = {k: d.data for k, d in c.defs["fragments"].items()}
        for rule in rules:
            rule.facts_used = frozenset(_facts_of_rule(self, rule))
        self.fact_types = {n: frozenset(_types_of_fact(self, n)) for n in self.facts}
        for rule in rules:
            when_facts: set[str] = set()
            _collect(rule.when_raw, self, when_facts, set())
            rule.when_types = frozenset(
                t for n in _with_params(self, when_facts) for t in self.fact_types.get(n, ())
            )
            rule.finding_refs = frozenset(_finding_refs(rule.when_raw, c.conditions_raw))
        self._plans: dict[tuple, tuple] = {}
        self._untraced: dict[tuple, object] = {}
        # (parameter, profile, CT set) -> ParamValue, for parameters that need no patient data
        self.fixed_params: dict[tuple, object] = {}
        # (parameter, comparison symbol, ParamValue) -> threshold evidence entry, copied per use
        self.threshold_heads: dict[tuple, dict] = {}
        # (profile, CT set) -> (those fixed parameters by name, their values in days): a run
        # starts with them worked out
        self.fixed_by_settings: dict[tuple, tuple[dict, dict]] = {}
        self._unknown_memo: dict[frozenset, frozenset] = {}
        # per (source, type): the codes any default-path value set asks for (None: index all)
        self.indexed_codes: dict[tuple[str, str], frozenset | None] = {}
        for fact in self.facts.values():
            if fact.kind != "data" or fact.valueset is None or not fact.default_code_path:
                continue
            key = (fact.source, fact.resource_type)
            if fact.valueset.exact_only and self.indexed_codes.get(key, frozenset()) is not None:
                codes = frozenset(code for _, code in fact.valueset.exact)
                self.indexed_codes[key] = self.indexed_codes.get(key, frozenset()) | codes
            else:
                self.indexed_codes[key] = None
        self._prefetch = {h: self._build_prefetch(h) for h in HOOKS}
        self._relevance = _relevance_table(self)

    # ---- the seam ------------------------------------------------------------------------
    def evaluate(
        self,
        resources,
        *,
        hook,
        context,
        orders=(),
        now,
        settings,
        suppress=None,
        trace=False,
        unavailable: frozenset[str] = frozenset(),
    ):
        """Evaluate one request. `unavailable`: FHIR resource types that could not be obtained
        (their facts are unknown, never missing)."""
        return _evaluate(
            self,
            resources,
            hook=hook,
            context=context,
            orders=orders,
            now=now,
            settings=settings,
            suppress=suppress,
            trace=trace,
            unavailable=frozenset(unavailable),
        )

    def plan(self, hook: str, profile: str, ct_cutoffs: str | None) -> tuple:
        """The hook's rules in order, each with why it is skipped for this profile and CT cut-off
        set ("profile", "ct_cutoffs") or None; worked out once per combination."""
        key = (hook, profile, ct_cutoffs)
        found = self._plans.get(key)
        if found is None:
            found = tuple(
                (rule, _skip_reason(rule, profile, ct_cutoffs))
                for rule in self.rules_by_hook.get(hook, ())
            )
            if len(self._plans) < 64:
                self._plans[key] = found
        return found

    def untraced_plan(self, hook: str, profile: str, ct_cutoffs: str | None):
        """The runnable rules of plan() as one generated function (codegen.generate_plan) for
        untraced runs: fn(run, made, errors); generated at first use of the combination."""
        key = (hook, profile, ct_cutoffs)
        found = self._untraced.get(key)
        if found is None:
            runnable = tuple(
                (rule.finding, rule) for rule, skipped in self.plan(*key) if skipped is None
            )
            found = generate_plan(runnable, settle, failed)
            if len(self._untraced) < 64:
                self._untraced[key] = found
        return found

    def warm(self, settings) -> None:
        """Generate now the untraced plans `settings` will use, for every hook, so that the
        first call of each hook (in each worker) does not wait for it (about 60 ms)."""
        ct_cutoffs = settings.ct_cutoffs or self.default_ct_cutoffs(settings.profile)
        for hook in self.hooks:
            self.untraced_plan(hook, settings.profile, ct_cutoffs)

    def forget_plans(self) -> None:
        """Drop the generated plans (they hold each rule's bare test as it was)."""
        self._untraced.clear()

    def unknown_facts(self, unavailable: frozenset[str]) -> frozenset[str]:
        """Facts that read (directly or through derived inputs) a resource type in `unavailable`."""
        if not unavailable:
            return frozenset()
        found = self._unknown_memo.get(unavailable)
        if found is None:
            found = frozenset(n for n, types in self.fact_types.items() if types & unavailable)
            if len(self._unknown_memo) < 64:
                self._unknown_memo[unavailable] = found
        return found

    def prefetch_templates(self, hook: str) -> dict[str, str]:
        return dict(self._prefetch.get(hook, {}))

    def relevant(self, resource: dict) -> bool:
        entry = self._relevance.get(resource.get("resourceType"))
        if entry is None:
            return False
        if entry is True:
            return True
        for code_get, exact, patterns in entry:
            for pair in _codings_fast(code_get, resource):
                if pair in exact or (patterns and any(vs.matches(*pair) for vs in patterns)):
                    return True
        return False

    # ---- helpers used by cards, docs and explain ----------------------------------------
    def display(self, code: str, locale: str) -> str:
        texts = self.finding_texts.get(code, {})
        return texts.get(locale) or texts.get("en") or FINDINGS.get(code, code)

    def coding(self, code: str, settings) -> dict:
        return {
            "system": settings.finding_system,
            "code": code,
            "display": self.display(code, settings.locale),
        }

    def citation(self, ref: str | None) -> str | None:
        data = self.references.get(ref) if ref else None
        return data["citation"] if data else None

    def short_citation(self, ref: str | None, locale: str = "en") -> str | None:
        """A reference's short form in the locale (`short` may be a text per locale)."""
        data = self.references.get(ref) if ref else None
        if not data:
            return None
        short = data.get("short")
        if isinstance(short, dict):
            short = short.get(locale) or short.get("en")
        return short or data["citation"]

    def reference_url(self, ref: str | None) -> str | None:
        data = self.references.get(ref) if ref else None
        if not data:
            return None
        if data.get("url"):
            return data["url"]
        return f"https://doi.org/{data['doi']}" if data.get("doi") else None

    def profile_title(self, profile: str, locale: str) -> str:
        title = self.profiles.get(profile, {}).get("title", {})
        return title.get(locale) or title.get("en") or profile

    def default_ct_cutoffs(self, profile: str) -> str | None:
        """The CT cut-off set a profile names as its default, else the first set declared."""
        chosen = self.profiles.get(profile, {}).get("default_ct_cutoffs")
        return chosen or next(iter(self.ct_sets), None)

    def ct_title(self, name: str | None, locale: str) -> str:
        title = self.ct_sets.get(name, {}).get("title", {}) if name else {}
        return title.get(locale) or title.get("en") or name or ""

    def _build_prefetch(self, hook: str) -> dict[str, str]:
        used: set[str] = set()
        for rule in self.rules_by_hook[hook]:
            used |= rule.facts_used
        facts = [
            self.facts[n]
            for n in sorted(used)
            if self.facts[n].kind == "data" and self.facts[n].source == "record"
        ]
        types = {f.resource_type for f in facts}
        if any(
            self.suggestions[k].unless_open_order is not None
            for r in self.rules_by_hook[hook]
            for k in r.suggestions
            if k in self.suggestions
        ):
            types.add("ServiceRequest")
        out = {}
        for rtype in sorted(types, key=lambda t: list(PREFETCH_KEYS).index(t)):
            key = PREFETCH_KEYS[rtype]
            if rtype == "Patient":
                out[key] = "Patient/{{context.patientId}}"
                continue
            query = f"{rtype}?patient={{{{context.patientId}}}}"
            if rtype == "Observation":
                obs = [f for f in facts if f.resource_type == "Observation"]
                if obs and all(
                    f.valueset is not None and f.valueset.exact_only and f.default_code_path
                    for f in obs
                ):
                    tokens = sorted({f"{s}|{c}" for f in obs for s, c in f.valueset.exact})
                    query += "&code=" + ",".join(tokens)
            out[key] = query
        return out


def _relevance_table(rs) -> dict:
    """Per resource type: True (all count) or [(code getter, exact codes, pattern value sets)]."""
    table: dict = {}
    readers: dict[str, dict[int, tuple]] = {}
    for fact in rs.facts.values():
        if fact.kind != "data" or fact.source != "record":
            continue
        rtype = fact.resource_type
        if fact.valueset is None or table.get(rtype) is True:
            table[rtype] = True
            continue
        by_getter = readers.setdefault(rtype, {})
        key = id(fact.code_get)
        getter, exact, patterns = by_getter.get(key, (fact.code_get, set(), []))
        exact |= fact.valueset.exact
        if not fact.valueset.exact_only:
            patterns.append(fact.valueset)
        by_getter[key] = (getter, exact, patterns)
    from .fhirpath import accessor

    for suggestion in rs.suggestions.values():
        if suggestion.unless_open_order is not None and table.get("ServiceRequest") is not True:
            # merged with what other suggestions and facts read, never in place of it
            by_getter = readers.setdefault("ServiceRequest", {})
            getter = accessor("code", "ServiceRequest")
            _, exact, patterns = by_getter.setdefault(id(getter), (getter, set(), []))
            exact |= suggestion.unless_open_order.exact
            if not suggestion.unless_open_order.exact_only:
                patterns.append(suggestion.unless_open_order)
    for rtype, by_getter in readers.items():
        if table.get(rtype) is not True:
            table[rtype] = [(g, frozenset(e), tuple(p)) for g, e, p in by_getter.values()]
    return table


def _skip_reason(rule, profile, ct_cutoffs) -> str | None:
    if rule.profiles is not None and profile not in rule.profiles:
        return "profile"
    if rule.ct_cutoffs is not None and ct_cutoffs not in rule.ct_cutoffs:
        return "ct_cutoffs"
    return None


def _facts_of_rule(rs, rule) -> set[str]:
    names: set[str] = set(rule.evidence)
    _collect(rule.when_raw, rs, names, set())
    for text in list(rule.card.summary.values()) + list((rule.card.detail or {}).values()):
        names |= {v.split(".")[0] for v in text.variables}
    for key in rule.suggestions:
        s = rs.suggestions.get(key)
        if s is not None:
            for t in s.label.values():
                names |= {v.split(".")[0] for v in t.variables}
    params = {n for n in names if n in rs.params}
    names = {n for n in names if n in rs.facts}
    for p in params:
        names |= set(rs.params[p].band_facts)
        if rs.params[p].spec.get("male") is not None or any(
            isinstance(v, dict) and "male" in v
            for v in (rs.params[p].spec.get(rs.params[p].selector) or {}).values()
        ):
            if "sex" in rs.facts:
                names.add("sex")
    # derived dependencies, transitively
    stack = list(names)
    while stack:
        fact = rs.facts[stack.pop()]
        for dep in fact.deps:
            if dep in rs.facts and dep not in names:
                names.add(dep)
                stack.append(dep)
    return names


def _types_of_fact(rs, name, seen=None) -> set[str]:
    """Record resource types a fact reads, through derived inputs and parameter bands."""
    seen = set() if seen is None else seen
    if name in seen or name not in rs.facts:
        return set()
    seen.add(name)
    fact = rs.facts[name]
    out: set[str] = set()
    if fact.kind == "data":
        out = {fact.resource_type} if fact.source == "record" else set()
        for dep in fact.deps:  # joins (`where: {references: …}`)
            out |= _types_of_fact(rs, dep, seen)
        return out
    for dep in _with_params(rs, set(fact.deps)):
        out |= _types_of_fact(rs, dep, seen)
    return out


def _with_params(rs, names: set[str]) -> set[str]:
    """Facts among `names`, plus the facts that parameters among `names` depend on (bands, sex)."""
    out = {n for n in names if n in rs.facts}
    for n in names:
        p = rs.params.get(n)
        if p is None:
            continue
        out |= set(p.band_facts)
        if "sex" in rs.facts and _by_sex(p):
            out.add("sex")
    return out


def _by_sex(p) -> bool:
    if p.spec.get("male") is not None:
        return True
    return any(isinstance(v, dict) and "male" in v for v in (p.spec.get(p.selector) or {}).values())


def _collect(cond, rs, names, seen):
    if isinstance(cond, dict):
        for key, value in cond.items():
            if (
                key in ("fact", "exists", "missing")
                and isinstance(value, str)
                or key in ("lt", "le", "gt", "ge", "eq", "ne")
                and isinstance(value, str)
            ):
                names.add(value)
            elif key == "implausible":
                names.update(rs.plausible_facts if value == "any" else value)
            elif key == "condition" and value not in seen:
                seen.add(value)
                raw = rs._conditions_raw.get(value)
                if raw is not None:
                    _collect(raw, rs, names, seen)
            else:
                _collect(value, rs, names, seen)
    elif isinstance(cond, list):
        for v in cond:
            _collect(v, rs, names, seen)


__all__ = ["RuleSet"]
