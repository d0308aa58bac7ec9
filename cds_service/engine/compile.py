"""Merge loaded pack files and compile them into a RuleSet, collecting every semantic error."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass

from . import expressions, fhirpath, units
from .cards import compile_fill
from .catalog import FINDINGS, OVERRIDE_REASON_SYSTEM
from .conditions import ConditionCompiler
from .diagnostics import (
    CYCLE_ERROR,
    DUPLICATE_ERROR,
    FHIRPATH_ERROR,
    REFERENCE_ERROR,
    UNIT_ERROR,
    Collector,
    Source,
    did_you_mean,
)
from .facts import DEFAULT_CODE_KEY
from .model import Card, CardGroup, Fact, Link, OverrideReason, Parameter, Rule, Suggestion
from .templates import Template
from .overrides import check_override_names
from .textcheck import check_templates, check_texts
from .valuesets import ValueSet

DEFAULT_CODE_PATH = dict(DEFAULT_CODE_KEY)  # one definition, read fast while grouping
DEFAULT_DATE_PATHS = {
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "Condition": ("onsetDateTime", "recordedDate"),
    "ImagingStudy": ("started",),
    "MedicationRequest": ("authoredOn",),
    "ServiceRequest": ("authoredOn",),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod.start", "dateAsserted"),
    "MedicationAdministration": ("effectiveDateTime", "effectivePeriod.start"),
    "Procedure": ("performedDateTime", "performedPeriod.start"),
    "Encounter": ("period.start",),
    "Patient": (),
}
OVERRIDABLE = (
    "code_systems",
    "references",
    "parameters",
    "suggestions",
    "links",
    "override_reasons",
    "findings",
    "profiles",
    "ct_cutoff_sets",
    "suggestion_policies",
    "fragments",
)
UNIQUE = ("facts", "conditions")
# "unknown <kind> 'name'" messages get the nearest existing names of that kind (did_you_mean)
_UNKNOWN = re.compile(
    r"^unknown (value set|reference|fact|parameter|condition|profile|CT cut-off set|suggestion|"
    r"link|override reason|parameter or fact|code system|rule|pack) '([^']+)'"
)


@dataclass
class Definition:
    """One named entry and where it was written."""

    name: str
    data: object
    src: Source
    path: tuple
    pack: str


class Compiler:
    """Holds the merged definitions and the compiled parts while checking references."""

    def __init__(self, sources: list[Source], out: Collector):
        self.sources, self.out = sources, out
        self.catalog = FINDINGS
        self.packs: dict[str, dict] = {}
        self.defs: dict[str, dict[str, Definition]] = {k: {} for k in OVERRIDABLE + UNIQUE}
        self.value_set_defs: dict[str, list[Definition]] = {}
        self.rule_defs: list[Definition] = []
        self.group_defs: list[Definition] = []
        self.facts: dict[str, Fact] = {}
        self.params: dict[str, Parameter] = {}
        self.value_sets: dict[str, ValueSet] = {}
        self.profiles: set[str] = set()
        self.ct_sets: set[str] = set()
        self.findings_made: set[str] = set()
        self.conditions_raw: dict[str, Definition] = {}
        self.where_cache: dict[tuple, object] = {}
        self.band_refs: list[tuple] = []
        #: (section, name) -> the definition of an earlier pack that a later pack replaced
        self.replaced: dict[tuple[str, str], Definition] = {}
        #: (section, name) -> a definition first made by a pack that builds on others (overrides)
        self.new_in_override: dict[tuple[str, str], Definition] = {}
        self.first_pack: str | None = None
        self.before_refs: list[tuple] = []

    def error(self, src, path, code, message, value=True):
        finding = re.match(r"^finding '([^']+)' is not in findings\.md$", message)
        if finding:
            close = did_you_mean(finding.group(1), self.catalog, "finding")
            if "did you mean" in close:
                message += close[close.index(";"):]
        match = _UNKNOWN.match(message)
        if match and "did you mean" not in message:
            names = self.names_of(match.group(1))
            if names:
                rest = message[match.end():]
                message = did_you_mean(match.group(2), names, match.group(1)) + rest
        self.out.add(src, path, code, message, value)

    def names_of(self, kind: str) -> list[str]:
        """The names defined of one kind, for 'did you mean'."""
        section = {
            "value set": None, "reference": "references", "fact": "facts",
            "parameter": "parameters", "condition": "conditions", "profile": "profiles",
            "CT cut-off set": "ct_cutoff_sets", "suggestion": "suggestions", "link": "links",
            "override reason": "override_reasons", "code system": "code_systems",
        }
        if kind == "value set":
            return list(self.value_set_defs)
        if kind == "parameter or fact":
            return list(self.defs["parameters"]) + list(self.defs["facts"])
        if kind == "rule":
            return [d.name for d in self.rule_defs]
        if kind == "pack":
            return list(self.packs)
        return list(self.defs.get(section.get(kind) or "", {}))

    # ---- merging -------------------------------------------------------------------------
    def merge(self) -> None:
        for src in self.sources:
            meta = src.data["pack"]
            pid = meta["id"]
            if self.first_pack is None:
                self.first_pack = pid
            known = self.packs.get(pid)
            for i, base in enumerate(meta.get("extends") or []):
                if base != "bundled" and (base not in self.packs or base == pid):
                    self.error(src, ("pack", "extends", i), REFERENCE_ERROR,
                               f"unknown pack {base!r} (packs loaded before this file: "
                               f"{', '.join(p for p in self.packs if p != pid) or 'none'})")
            if known is None:
                self.packs[pid] = dict(meta, files=[src.file])
            else:
                known["files"].append(src.file)
                for key, value in meta.items():  # metadata written in one of the files
                    known.setdefault(key, value)
                if known["version"] != meta["version"]:
                    self.error(
                        src,
                        ("pack", "version"),
                        DUPLICATE_ERROR,
                        f"pack {pid!r} has version {known['version']} in another file",
                    )
                for key in ("title", "description", "locales"):
                    if key in meta and key not in known:
                        known[key] = meta[key]
                    elif (
                        key == "locales" and key in meta and sorted(meta[key]) != sorted(known[key])
                    ):
                        self.error(
                            src,
                            ("pack", "locales"),
                            DUPLICATE_ERROR,
                            f"pack {pid!r} declares locales {known[key]} in another file",
                        )
            for section in OVERRIDABLE + UNIQUE:
                for name, data in (src.data.get(section) or {}).items():
                    self._define(section, name, data, src, pid)
            for name, entries in (src.data.get("value_sets") or {}).items():
                earlier = self.value_set_defs.setdefault(name, [])
                if any(d.pack == pid for d in earlier):
                    self.error(
                        src,
                        ("value_sets", name),
                        DUPLICATE_ERROR,
                        f"value set {name!r} is already defined in pack {pid!r}",
                        value=False,
                    )
                    continue
                d = Definition(name, entries, src, ("value_sets", name), pid)
                if not earlier and pid != self.first_pack:
                    self.new_in_override[("value_sets", name)] = d
                earlier.append(d)
            for i, rule in enumerate(src.data.get("rules") or []):
                self.rule_defs.append(Definition(rule["id"], rule, src, ("rules", i), pid))
            for i, group in enumerate(src.data.get("card_groups") or []):
                self.group_defs.append(Definition(group["id"], group, src, ("card_groups", i), pid))
        self._unique_ids(self.rule_defs, "rule")
        self._unique_ids(self.group_defs, "card group")

    def _define(self, section, name, data, src, pid):
        table = self.defs[section]
        earlier = table.get(name)
        path = (section, name)
        if earlier is not None and (section in UNIQUE or earlier.pack == pid):
            self.error(
                src,
                path,
                DUPLICATE_ERROR,
                f"{section[:-1].replace('_', ' ')} {name!r} is already defined at "
                f"{earlier.src.file}:{earlier.src.locate(earlier.path, False)[0]}",
                value=False,
            )
            return
        table[name] = Definition(name, data, src, path, pid)
        if earlier is not None:
            self.replaced.setdefault((section, name), earlier)
        elif pid != self.first_pack:
            self.new_in_override[(section, name)] = table[name]

    def _unique_ids(self, defs, what):
        seen: dict[str, Definition] = {}
        if what == "rule":
            defs[:] = self._rule_overrides(defs)
        for d in defs:
            if d.name in seen:
                first = seen[d.name]
                hint = (
                    " (to replace it from an override pack, add `override: true` to this rule)"
                    if what == "rule" and first.pack != d.pack
                    else ""
                )
                self.error(
                    d.src,
                    d.path + ("id",),
                    DUPLICATE_ERROR,
                    f"{what} id {d.name!r} is already used at {first.src.file}:"
                    f"{first.src.locate(first.path + ('id',))[0]}{hint}",
                )
            else:
                seen[d.name] = d

    def _rule_overrides(self, defs):
        """Rules marked `override: true` replace, in its place, the rule of that id in an earlier
        pack; one naming no such rule is an error ('did you mean')."""
        out: list[Definition] = []
        for d in defs:
            if not d.data.get("override"):
                out.append(d)
                continue
            target = next(
                (i for i, e in enumerate(out) if e.name == d.name and e.pack != d.pack), None
            )
            if target is None:
                self.error(
                    d.src,
                    d.path + ("id",),
                    REFERENCE_ERROR,
                    did_you_mean(d.name, [e.name for e in out if e.pack != d.pack], "rule")
                    + ": `override: true` replaces a rule of the packs this one builds on",
                )
                continue
            self.replaced.setdefault(("rules", d.name), out[target])
            out[target] = d
        return out

    # ---- parts ---------------------------------------------------------------------------
    def locales(self, pid: str) -> list[str]:
        return self.packs[pid].get("locales") or ["en"]

    def system(self, alias: str) -> str:
        d = self.defs["code_systems"].get(alias)
        return d.data if d else alias

    def compile_value_sets(self) -> None:
        for name, defs in self.value_set_defs.items():
            vs = ValueSet(name)
            for d in defs:
                for i, entry in enumerate(d.data):
                    raw = (
                        entry["system"] if isinstance(entry["system"], list) else [entry["system"]]
                    )
                    systems = []
                    for j, alias in enumerate(raw):
                        if alias not in self.defs["code_systems"] and ":" not in alias:
                            where = (
                                d.path
                                + (i, "system")
                                + ((j,) if isinstance(entry["system"], list) else ())
                            )
                            self.error(
                                d.src,
                                where,
                                REFERENCE_ERROR,
                                f"unknown code system {alias!r} (not an alias in code_systems, not a URI)",
                            )
                        systems.append(self.system(alias))
                    vs.add(entry, systems)
            self.value_sets[name] = vs

    def compile_drug_classes(self) -> None:
        """Medication recognition tables (engine/medications.py), each entry checked here."""
        from .medications import drug_classes

        self.drug_classes, problems = drug_classes(self.facts, self.value_sets)
        for name, code, message in problems:
            for d in self.value_set_defs.get(name, ()):
                for i, entry in enumerate(d.data):
                    if str(entry.get("code")) == code:
                        self.error(d.src, d.path + (i, "display"), REFERENCE_ERROR, message)

    def need_value_set(self, name, src, path):
        vs = self.value_sets.get(name)
        if vs is None:
            self.error(src, path, REFERENCE_ERROR, f"unknown value set {name!r}")
        return vs

    def need_reference(self, ref, src, path):
        if ref not in self.defs["references"]:
            self.error(src, path, REFERENCE_ERROR, f"unknown reference {ref!r}")

    def compile_profiles(self) -> None:
        for section, target in (("profiles", self.profiles), ("ct_cutoff_sets", self.ct_sets)):
            for name, d in self.defs[section].items():
                target.add(name)
                self.need_reference(d.data["reference"], d.src, d.path + ("reference",))
        for name, d in self.defs["profiles"].items():
            default = d.data.get("default_ct_cutoffs")
            if default is not None and default not in self.ct_sets:
                self.error(
                    d.src,
                    d.path + ("default_ct_cutoffs",),
                    REFERENCE_ERROR,
                    f"unknown CT cut-off set {default!r}",
                )

    def compile_parameters(self) -> None:
        for name, d in self.defs["parameters"].items():
            data, src, path = d.data, d.src, d.path
            try:
                units.check_ucum(data["unit"])
            except units.UnitError as exc:
                self.error(src, path + ("unit",), UNIT_ERROR, str(exc))
            selector = (
                "profiles" if "profiles" in data else "ct_cutoffs" if "ct_cutoffs" in data else None
            )
            specs = (
                [(path, data)]
                if selector is None
                else [(path + (selector, k), v) for k, v in data[selector].items()]
            )
            if selector:
                known = self.profiles if selector == "profiles" else self.ct_sets
                for key in data[selector]:
                    if key not in known:
                        self.error(
                            src,
                            path + (selector, key),
                            REFERENCE_ERROR,
                            f"unknown {'profile' if selector == 'profiles' else 'CT cut-off set'} {key!r}",
                            value=False,
                        )
            bands = set()
            for spath, spec in specs:
                if "source" in spec:
                    self.need_reference(spec["source"], src, spath + ("source",))
                for sex in ("male", "female"):
                    if isinstance(spec.get(sex), dict):
                        bands.add((spec[sex]["by"], spath + (sex, "by")))
                        self._check_bands(spec[sex]["bands"], src, spath + (sex, "bands"))
            self.params[name] = Parameter(
                name,
                data["unit"],
                data.get("label", {}),
                data,
                selector,
                tuple(sorted({b for b, _ in bands})),
                pack=d.pack,
                local=_local_specs(data, selector, self.replaced.get(("parameters", name))),
            )
            self.band_refs.extend((b, src, p) for b, p in bands)

    def _check_bands(self, bands, src, path):
        for i, band in enumerate(bands):
            last = i == len(bands) - 1
            if last != ("below" not in band):
                self.error(
                    src,
                    path + (i,),
                    REFERENCE_ERROR,
                    "every band but the last needs 'below'; the last band must not have one",
                )
            if (
                i
                and "below" in band
                and "below" in bands[i - 1]
                and band["below"] <= bands[i - 1]["below"]
            ):
                self.error(
                    src,
                    path + (i, "below"),
                    REFERENCE_ERROR,
                    "bands must be in increasing 'below' order",
                )

    def compile_facts(self) -> None:
        for name, d in self.defs["facts"].items():
            data, src, path = d.data, d.src, d.path
            fact = Fact(
                name=name,
                label=data.get("label", {}),
                kind="derived" if "derive" in data else "data",
                type=data.get("type")
                or (
                    "quantity"
                    if "unit" in data
                    else "code"
                    if data.get("from") == "Patient"
                    else "resource"
                ),
                unit=data.get("unit"),
                precision=data.get("precision", 1),
                plausible=data.get("plausible", {}),
                location=(src, path),
            )
            if fact.unit is not None:
                try:
                    units.check_ucum(fact.unit)
                except units.UnitError as exc:
                    self.error(src, path + ("unit",), UNIT_ERROR, str(exc))
                    fact.unit = None
            if fact.type == "quantity" and fact.unit is None and "unit" not in data:
                self.error(
                    src, path, UNIT_ERROR, f"quantity fact {name!r} needs a unit", value=False
                )
            if fact.kind == "data":
                self._data_fact(fact, data, src, path)
            else:
                fact.derive_text = data["derive"]
                fact.deps = tuple(sorted(expressions.names_in(data["derive"]) - {"now"}))
            self.facts[name] = fact
        for fact in self.facts.values():
            for _, other, (src, path) in fact.joins:
                target = self.facts.get(other)
                if target is None:
                    self.error(
                        src, path + ("references",), REFERENCE_ERROR, f"unknown fact {other!r}"
                    )
                elif target.kind != "data" or target.type != "resource":
                    self.error(
                        src,
                        path + ("references",),
                        REFERENCE_ERROR,
                        f"'references' needs a fact whose values are resources; {other!r} is "
                        f"{target.type}",
                    )
                elif target.joins:
                    self.error(
                        src, path + ("references",), CYCLE_ERROR, f"{other!r} itself has a join"
                    )
            fact.joins = [(g, o) for g, o, _ in fact.joins]
        for other, src, path in self.before_refs:
            target = self.facts.get(other)
            if target is None:
                self.error(src, path, REFERENCE_ERROR, f"unknown fact {other!r}")
            elif target.before is not None:
                self.error(src, path, CYCLE_ERROR, f"{other!r} itself has a 'before' window")
        for band_fact, src, path in self.band_refs:
            bf = self.facts.get(band_fact)
            if bf is None:
                self.error(src, path, REFERENCE_ERROR, f"unknown fact {band_fact!r}")
            elif bf.type != "quantity":
                self.error(
                    src,
                    path,
                    REFERENCE_ERROR,
                    f"bands need a quantity fact; {band_fact!r} is {bf.type}",
                )

    def _data_fact(self, fact, data, src, path):
        rtype = data["from"]
        fact.resource_type, fact.source = rtype, data.get("source", "record")
        fact.select = data.get("select", "latest")
        if "codes" in data:
            fact.valueset = self.need_value_set(data["codes"], src, path + ("codes",))
            code_path = data.get("code_path") or DEFAULT_CODE_PATH.get(rtype)
            fact.default_code_path = "code_path" not in data
            if code_path is None:
                self.error(
                    src, path + ("codes",), REFERENCE_ERROR, f"{rtype} has no code; set code_path"
                )
            else:
                fact.code_get = self.fhirpath(code_path, rtype, src, path + ("code_path",))
        for i, flt in enumerate(data.get("where") or []):
            if "references" in flt:
                get = self.fhirpath(flt["path"], rtype, src, path + ("where", i, "path"))
                fact.joins.append((get, flt["references"], (src, path + ("where", i))))
                continue
            fact.where.append(self._where(flt, rtype, src, path + ("where", i)))
        fact.deps = tuple(name for _, name, _ in fact.joins)
        fact.where_fast = tuple(t for t in fact.where if getattr(t, "cheap", False))
        fact.where_slow = tuple(t for t in fact.where if not getattr(t, "cheap", False))
        value = data.get("value") or (
            "value" if rtype == "Observation" and fact.type != "resource" else None
        )
        if value:
            fact.value_get = self.fhirpath(value, rtype, src, path + ("value",))
        elif fact.type not in ("resource",):
            self.error(
                src, path, REFERENCE_ERROR, f"fact of type {fact.type} needs 'value'", value=False
            )
        date_paths = [data["date"]] if "date" in data else DEFAULT_DATE_PATHS.get(rtype, ())
        fact.date_gets = [self.fhirpath(p, rtype, src, path + ("date",)) for p in date_paths]
        # `value` naming exactly the date paths (in order): the value is the resource's date
        fact.value_is_date = (
            fact.type == "date"
            and isinstance(value, str)
            and [b.strip() for b in value.split("|")] == list(date_paths)
        )
        fact.reader_key = (
            rtype,
            fact.source,
            data.get("codes"),
            data.get("code_path"),
            json.dumps(data.get("where"), sort_keys=True),
            value,
            tuple(date_paths),
            fact.type,
            fact.unit,
            data.get("within_days"),  # the window is applied while reading (no value read outside)
        )
        for key in ("within_days", "days_ago", "tolerance_days"):
            if key in data:
                value = data[key]
                if isinstance(value, str):
                    param = self.params.get(value)
                    if param is None:
                        self.error(
                            src, path + (key,), REFERENCE_ERROR, f"unknown parameter {value!r}"
                        )
                    elif not units.convertible(param.unit, "d"):
                        self.error(
                            src, path + (key,), UNIT_ERROR, f"parameter {value!r} is not a duration"
                        )
                setattr(
                    fact,
                    {
                        "within_days": "within",
                        "days_ago": "days_ago",
                        "tolerance_days": "tolerance",
                    }[key],
                    value,
                )
        if "conflict" in data:
            self._conflict(fact, data["conflict"], src, path + ("conflict",))
        if "answers" in data:
            self._answers(fact, data["answers"], src, path + ("answers",))
        if "before" in data:
            self._before(fact, data["before"], src, path + ("before",))
        if fact.select == "closest" and ("days_ago" not in data or "tolerance_days" not in data):
            self.error(
                src,
                path + ("select",),
                REFERENCE_ERROR,
                "select: closest needs days_ago and tolerance_days",
            )
        if fact.select in ("max", "min", "latest_session_max") and fact.type != "quantity":
            self.error(
                src,
                path + ("select",),
                REFERENCE_ERROR,
                f"select: {fact.select} needs a quantity fact",
            )

    def _answers(self, fact, spec, src, path):
        """`answers: {system: {code: number}}`: coded answers a quantity fact reads as numbers."""
        if fact.type != "quantity":
            self.error(src, path, REFERENCE_ERROR, "answers needs a quantity fact (with a unit)")
            return
        fact.answers = {}
        for alias, codes in spec.items():
            if alias not in self.defs["code_systems"] and ":" not in alias:
                self.error(
                    src,
                    path + (alias,),
                    REFERENCE_ERROR,
                    f"unknown code system {alias!r} (not an alias in code_systems, not a URI)",
                    value=False,
                )
                continue
            for code, number in codes.items():
                fact.answers[(self.system(alias), str(code))] = float(number)

    def _before(self, fact, spec, src, path):
        """`before: {fact, min_days, max_days}`: the window is relative to another fact's date."""
        for key in ("min_days", "max_days"):
            value = spec[key]
            if isinstance(value, str):
                param = self.params.get(value)
                if param is None:
                    self.error(src, path + (key,), REFERENCE_ERROR, f"unknown parameter {value!r}")
                elif not units.convertible(param.unit, "d"):
                    self.error(
                        src, path + (key,), UNIT_ERROR, f"parameter {value!r} is not a duration"
                    )
        fact.before = (spec["fact"], spec["min_days"], spec["max_days"])
        fact.deps = tuple(fact.deps) + (spec["fact"],)
        self.before_refs.append((spec["fact"], src, path + ("fact",)))

    def _conflict(self, fact, spec, src, path):
        ((key, limit),) = spec.items()
        scope, kind = key.rsplit("_", 1)
        relative = kind == "relative"
        if fact.type != "quantity":
            self.error(src, path, REFERENCE_ERROR, "conflict needs a quantity fact")
            return
        if isinstance(limit, str):
            param = self.params.get(limit)
            if param is None:
                self.error(src, path + (key,), REFERENCE_ERROR, f"unknown parameter {limit!r}")
                return
            target = "1" if relative else (fact.unit or "1")
            if not units.convertible(param.unit, target):
                self.error(
                    src,
                    path + (key,),
                    UNIT_ERROR,
                    f"parameter {limit!r} in {param.unit!r} is not "
                    + ("a ratio" if relative else f"convertible to {target!r}"),
                )
                return
        fact.conflict = (scope, relative, limit)

    def _where(self, flt, rtype, src, path):
        key = (json.dumps(flt, sort_keys=True), rtype)
        if key not in self.where_cache:
            self.where_cache[key] = self._compile_where(flt, rtype, src, path)
        return self.where_cache[key]

    def _compile_where(self, flt, rtype, src, path):
        if "fhirpath" in flt:
            get = self.fhirpath(flt["fhirpath"], rtype, src, path + ("fhirpath",))
            return lambda r: any(v is True for v in get(r))
        from .valuesets import codings

        get = self.fhirpath(flt["path"], rtype, src, path + ("path",))
        if "in" in flt or "not_in" in flt:
            allowed = frozenset(flt.get("in") or flt.get("not_in"))
            want = "in" in flt
            key = getattr(get, "single_key", None)

            def test(r):
                if key is not None:
                    value = r.get(key)
                    if value.__class__ is str:  # a code element (status): no Coding to walk
                        return (value in allowed) is want
                    if value.__class__ is dict and value.get("coding").__class__ is list:
                        for coding in value["coding"]:  # a CodeableConcept (clinicalStatus)
                            if coding.__class__ is dict and coding.get("code") in allowed:
                                return want
                        if "code" not in value:
                            return not want
                return any(c in allowed for _, c in codings(get(r))) is want

            test.cheap = key is not None
            return test
        key = "value_set" if "value_set" in flt else "not_value_set"
        vs = self.need_value_set(flt[key], src, path + (key,))
        if vs is None:
            return lambda r: False
        if key == "value_set":
            return lambda r: any(vs.matches(s, c) for s, c in codings(get(r)))
        return lambda r: not any(vs.matches(s, c) for s, c in codings(get(r)))

    def fhirpath(self, expression, rtype, src, path):
        try:
            fhirpath.check(expression, rtype)
        except fhirpath.FhirPathError as exc:
            self.error(src, path, FHIRPATH_ERROR, str(exc))
            return lambda r: []
        return fhirpath.accessor(expression, rtype)

    def number_readers(self) -> None:
        """Small ints for reader keys and date paths: cheap dictionary keys at run time."""
        readers: dict = {}
        dates: dict = {}
        for fact in self.facts.values():
            if fact.kind == "data":
                fact.reader_id = readers.setdefault(fact.reader_key, len(readers))
                fact.date_id = dates.setdefault(fact.reader_key[6], len(dates))
                fact.pool_key = (fact.source, fact.resource_type)
                vs = fact.valueset
                fact.hits_key = (fact.source, fact.resource_type, vs.name if vs else None)
                if vs is not None and vs.exact_only and fact.default_code_path:
                    fact.exact_codes = frozenset(vs.exact)
                    if len(vs.exact) == 1:
                        fact.only_code = next(iter(vs.exact))

    def compile_derived(self) -> None:
        graph = {
            n: [d for d in f.deps if d in self.facts and self.facts[d].kind == "derived"]
            for n, f in self.facts.items()
            if f.kind == "derived"
        }
        cyclic = find_cycles(graph)
        for cycle in cyclic:
            fact = self.facts[cycle[0]]
            src, path = fact.location
            self.error(
                src,
                path + ("derive",),
                CYCLE_ERROR,
                "derived facts form a cycle: " + " → ".join(cycle + [cycle[0]]),
            )
        in_cycle = {n for c in cyclic for n in c}
        for name, fact in self.facts.items():
            if fact.kind != "derived" or name in in_cycle:
                continue
            src, path = fact.location
            try:
                fact.derive = expressions.compile_expression(
                    fact.derive_text, self._unit_of_name, fact.unit or "1"
                )
            except expressions.ExpressionError as exc:
                code = {"reference": REFERENCE_ERROR, "unit": UNIT_ERROR}.get(
                    exc.kind, REFERENCE_ERROR
                )
                self.error(src, path + ("derive",), code, str(exc))
            fact.deps = tuple(d for d in fact.deps if d in self.facts)

    def _unit_of_name(self, name):
        if name == "now":
            return expressions.DATE
        if name in self.facts:
            fact = self.facts[name]
            if fact.type == "date":
                return expressions.DATE
            if fact.type != "quantity" or fact.select == "all":
                return None
            return fact.unit or "1"
        if name in self.params:
            return self.params[name].unit
        return None

    def compile_conditions_and_rules(self) -> list[Rule]:
        self.conditions_raw = self.defs["conditions"]
        self.findings_made = {d.data["finding"] for d in self.rule_defs}
        compiler = ConditionCompiler(self)
        graph = {n: sorted(_named_refs(d.data)) for n, d in self.conditions_raw.items()}
        for cycle in find_cycles(graph):
            d = self.conditions_raw[cycle[0]]
            self.error(
                d.src,
                d.path,
                CYCLE_ERROR,
                "named conditions form a cycle: " + " → ".join(cycle + [cycle[0]]),
                value=False,
            )
            return []
        for name, d in self.conditions_raw.items():
            compiler.named[name] = compiler.compile(d.data, d.path, d.src)
        self.policies = {
            name: self._policy(d, compiler) for name, d in self.defs["suggestion_policies"].items()
        }
        rules: list[Rule] = []
        for index, d in enumerate(self.rule_defs):
            rules.extend(self._rule(d, index, len(rules), compiler))
        return rules

    def _policy(self, d, compiler) -> list[tuple]:
        """A suggestion policy's entries in order, the `default` last, each (entry data, the
        closures and raw conditions its case adds to a rule's `when`, path): its own `when`,
        after `not` of every earlier entry marked `unknown: stop` (so that such an entry, when
        unknown, lets no later entry apply)."""
        entries = []
        stops: list[tuple] = []  # (closure of `not when`, raw) of earlier `unknown: stop` entries
        for j, entry in enumerate(d.data["rules"]):
            path = d.path + ("rules", j)
            self._policy_keys(entry, d.src, path)
            when = compiler.compile(entry["when"], path + ("when",), d.src)
            closures = [c for c, _ in stops] + [when]
            raws = [r for _, r in stops] + [entry["when"]]
            entries.append((entry, closures, raws, path))
            if entry.get("unknown") == "stop":
                negated = {"not": entry["when"]}
                stops.append((self._quiet(compiler, negated, path + ("when",), d.src), negated))
        self._policy_keys(d.data["default"], d.src, d.path + ("default",))
        entries.append(
            (
                d.data["default"],
                [c for c, _ in stops],
                [r for _, r in stops],
                d.path + ("default",),
            )
        )
        return entries

    def _quiet(self, compiler, cond, path, src):
        """A condition compiled again (its errors were reported where it is written)."""
        report = self.error
        self.error = lambda *args, **kwargs: None
        try:
            return compiler.compile(cond, path, src)
        finally:
            self.error = report

    def _policy_keys(self, entry, src, path) -> None:
        """Every suggestion a policy entry names exists."""
        named = [("suggestions", i, k) for i, k in enumerate(entry.get("suggestions") or [])]
        named += [("remove", i, k) for i, k in enumerate(entry.get("remove") or [])]
        named += [("add", i, k) for i, k in enumerate(entry.get("add") or [])]
        for old, new in (entry.get("replace") or {}).items():
            named += [("replace", old, old), ("replace", old, new)]
        for key, at, name in named:
            if name not in self.defs["suggestions"]:
                self.error(src, path + (key, at), REFERENCE_ERROR, f"unknown suggestion {name!r}")

    def _rule(self, d, index, order, compiler) -> list[Rule]:
        """The rule's cases, in the order they are tried: every combination of one option per
        fragment (in the order written) and one entry of its suggestion policy (innermost).
        A case's condition is the rule's `when` and the `when`s of its option and entry; the
        first case that holds makes the finding, with its texts and suggestions."""
        data, src, path = d.data, d.src, d.path
        fragments = data.get("fragments") or {}
        axes = []
        for name, options in fragments.items():
            axis = []
            where, at_src = path + ("fragments", name), src
            if isinstance(options, str):  # shared options (top-level `fragments`)
                shared = self.defs["fragments"].get(options)
                if shared is None:
                    known = ", ".join(sorted(self.defs["fragments"])) or "none defined"
                    self.error(
                        src,
                        where,
                        REFERENCE_ERROR,
                        f"unknown fragments {options!r} (known: {known})",
                    )
                    continue
                options, where, at_src = shared.data, shared.path, shared.src
            for j, option in enumerate(options):
                at = where + (j,)
                if "when" not in option and j != len(options) - 1:
                    self.error(
                        at_src,
                        at,
                        REFERENCE_ERROR,
                        f"fragment {name!r} option {j + 1} has no 'when', so the options after "
                        "it can never be chosen: give it a 'when' or move it last",
                    )
                for i, k in enumerate(option.get("suggestions") or []):
                    if k not in self.defs["suggestions"]:
                        self.error(
                            at_src,
                            at + ("suggestions", i),
                            REFERENCE_ERROR,
                            f"unknown suggestion {k!r}",
                        )
                when = None
                if "when" in option:
                    when = compiler.compile(option["when"], at + ("when",), at_src)
                axis.append((name, j, option, when))
            axes.append(axis)
        policies = []  # one axis per named policy, in the order named (the last innermost)
        named = data.get("suggestion_policy")
        names = [] if named is None else [named] if isinstance(named, str) else list(named)
        for i, name in enumerate(names):
            if name in self.policies:
                policies.append(self.policies[name])
            else:
                known = ", ".join(sorted(self.policies)) or "none defined"
                at = ("suggestion_policy",) if isinstance(named, str) else ("suggestion_policy", i)
                self.error(
                    src,
                    path + at,
                    REFERENCE_ERROR,
                    f"unknown suggestion policy {name!r} (known: {known})",
                )
        if not policies:
            policies = [[(None, [], [], None)]]
        base = self._rule_parts(d, compiler)
        combos = list(itertools.product(*axes, *policies))
        out = []
        for n, combo in enumerate(combos):
            options, entries = combo[: len(axes)], combo[len(axes) :]
            closures = [base["when"]] + [w for *_, w in options if w is not None]
            raw = [data["when"]] + [o["when"] for _, _, o, _ in options if "when" in o]
            for _, entry_closures, entry_raws, _ in entries:
                closures += entry_closures
                raw += entry_raws
            when = compiler.conjunction(closures) if len(closures) > 1 else base["when"]
            chosen = {name: option for name, _, option, _ in options}
            card = data["card"]
            detail = _fill(card.get("detail"), chosen)
            for entry, *_ in entries:
                if entry is not None and entry.get("detail"):
                    detail = {
                        loc: text + entry["detail"].get(loc, entry["detail"].get("en", ""))
                        for loc, text in (detail or {"en": ""}).items()
                    }
            suggestions = [k for _, _, o, _ in options for k in o.get("suggestions") or []]
            suggestions += list(data.get("suggestions") or ())
            for entry, *_ in entries:
                if entry is not None:
                    suggestions = _apply_policy(entry, suggestions)
            source = card["source"]
            out.append(
                Rule(
                    id=data["id"],
                    finding=data["finding"],
                    title=data.get("title"),
                    hooks=frozenset(data["hooks"]),
                    profiles=frozenset(data["profiles"]) if "profiles" in data else None,
                    ct_cutoffs=frozenset(data["ct_cutoffs"]) if "ct_cutoffs" in data else None,
                    when=when,
                    when_raw=raw[0] if len(raw) == 1 else {"all": raw},
                    evidence=tuple(data.get("evidence") or ()),
                    priority=data.get("priority", 0),
                    card=Card(
                        card["indicator"],
                        _texts(_fill(card["summary"], chosen)),
                        _texts(detail),
                        _texts(source["label"]),
                        source.get("url"),
                        source.get("reference"),
                        source.get("icon"),
                    ),
                    suggestions=tuple(suggestions),
                    links=tuple(data.get("links") or ()),
                    override_reasons=tuple(data.get("override_reasons") or ()),
                    order=order + n,
                    pack=d.pack,
                    test=getattr(when, "bare", None),
                    key=data["id"] if len(combos) == 1 else f"{data['id']}#{n + 1}",
                    def_index=index,
                    case=(
                        tuple((name, j) for name, j, _, _ in options),
                        _entry_ids(entries),
                    ),
                )
            )
        return out

    def _rule_parts(self, d, compiler) -> dict:
        """Check a rule's references and compile its `when` (once, whatever its cases)."""
        data, src, path = d.data, d.src, d.path
        if data["finding"] not in self.catalog:
            self.error(
                src,
                path + ("finding",),
                REFERENCE_ERROR,
                f"finding {data['finding']!r} is not in findings.md",
            )
        for key, known, what in (
            ("profiles", self.profiles, "profile"),
            ("ct_cutoffs", self.ct_sets, "CT cut-off set"),
        ):
            for i, p in enumerate(data.get(key) or []):
                if p not in known:
                    self.error(src, path + (key, i), REFERENCE_ERROR, f"unknown {what} {p!r}")
        for key, section in (
            ("suggestions", "suggestions"),
            ("links", "links"),
            ("override_reasons", "override_reasons"),
        ):
            for i, k in enumerate(data.get(key) or []):
                if k not in self.defs[section]:
                    self.error(
                        src,
                        path + (key, i),
                        REFERENCE_ERROR,
                        f"unknown {section[:-1].replace('_', ' ')} {k!r}",
                    )
        for i, name in enumerate(data.get("evidence") or []):
            if name not in self.facts:
                self.error(src, path + ("evidence", i), REFERENCE_ERROR, f"unknown fact {name!r}")
        card = data["card"]
        source = card["source"]
        if "reference" in source:
            self.need_reference(source["reference"], src, path + ("card", "source", "reference"))
        return {"when": compiler.compile(data["when"], path + ("when",), src)}

    def compile_outputs(self):
        suggestions = {}
        for key, d in self.defs["suggestions"].items():
            data = d.data
            vs = None
            if "unless_open_order" in data:
                vs = self.need_value_set(
                    data["unless_open_order"], d.src, d.path + ("unless_open_order",)
                )
            actions = [
                {
                    "type": a["type"],
                    "description": _texts(a["description"]),
                    "resource": (tree := _resource_template(a.get("resource"))),
                    "fill": None if tree is None else compile_fill(tree),
                    "resource_id": a.get("resource_id"),
                }
                for a in data.get("actions") or []
            ]
            suggestion = Suggestion(
                key, _texts(data["label"]), data.get("is_recommended"), vs, actions
            )
            self._suggestion_data_checks(suggestion, data, d)
            suggestions[key] = suggestion
        links = {
            k: Link(
                k,
                _texts(d.data["label"]),
                Template(d.data["url"]),
                d.data["type"],
                Template(d.data["app_context"]) if "app_context" in d.data else None,
            )
            for k, d in self.defs["links"].items()
        }
        reasons = {
            k: OverrideReason(
                k, d.data.get("system", OVERRIDE_REASON_SYSTEM), d.data["code"], d.data["display"]
            )
            for k, d in self.defs["override_reasons"].items()
        }
        groups = []
        for d in self.group_defs:
            for i, code in enumerate(d.data["findings"]):
                if code not in self.catalog:
                    self.error(
                        d.src,
                        d.path + ("findings", i),
                        REFERENCE_ERROR,
                        f"finding {code!r} is not in findings.md",
                    )
            groups.append(
                CardGroup(
                    d.name,
                    frozenset(d.data["hooks"]) if "hooks" in d.data else None,
                    tuple(d.data["findings"]),
                    d.data.get("selection_behavior", "any"),
                )
            )
        for code, d in self.defs["findings"].items():
            if code not in self.catalog:
                self.error(
                    d.src,
                    d.path,
                    REFERENCE_ERROR,
                    f"finding {code!r} is not in findings.md",
                    value=False,
                )
        return suggestions, links, reasons, groups

    def _fact_vars(self, texts) -> set[str]:
        """Facts whose value a text shows (`{{f}}`, `{{f.value}}`…, not `.label` / `.unit`)."""
        out = set()
        for template in (texts or {}).values():
            for var in template.variables:
                base, _, attr = var.partition(".")
                if base in self.facts and attr not in ("label", "unit"):
                    out.add(base)
        return out

    def _suggestion_data_checks(self, suggestion, data, d):
        """Suggestion texts never show a missing value: see `requires` in the format reference."""
        from .diagnostics import TEMPLATE_ERROR

        requires = data.get("requires") or []
        for i, name in enumerate(requires):
            if name not in self.facts:
                self.error(
                    d.src, d.path + ("requires", i), REFERENCE_ERROR, f"unknown fact {name!r}"
                )
        needs = {n for n in requires if n in self.facts} | self._fact_vars(suggestion.label)
        suggestion.needs = frozenset(needs)
        if "label_without_data" in data:
            suggestion.label_without_data = _texts(data["label_without_data"])
            shown = self._fact_vars(suggestion.label_without_data)
            if shown:
                self.error(
                    d.src,
                    d.path + ("label_without_data",),
                    TEMPLATE_ERROR,
                    f"label_without_data shows {', '.join(sorted(shown))}: it is the text for "
                    "when data is missing",
                )
        elif needs:
            self.error(
                d.src,
                d.path + ("label",),
                TEMPLATE_ERROR,
                f"the label shows or requires {', '.join(sorted(needs))}, which may have no "
                "value: add label_without_data",
            )
        for i, action in enumerate(suggestion.actions):
            shown = self._fact_vars(action["description"])
            if shown:
                self.error(
                    d.src,
                    d.path + ("actions", i, "description"),
                    TEMPLATE_ERROR,
                    f"an action description cannot show {', '.join(sorted(shown))}; "
                    "put values in the label or in a {$text: …} of the resource",
                )
            for path, template in _plain_strings(action["resource"], ("actions", i, "resource")):
                shown = self._fact_vars({"x": template})
                if shown and template.pieces[0::2] != ["", ""]:  # a whole `{{f.x}}` is dropped
                    self.error(
                        d.src,
                        d.path + path,
                        TEMPLATE_ERROR,
                        f"{', '.join(sorted(shown))} in a resource string: use the variable as the "
                        "whole string or wrap the text in {$text: …} (with `otherwise`), so that "
                        "a missing value is never shown",
                    )

    def rule_order(self, rules: list[Rule]) -> list[Rule]:
        """Rules in file order, except that a rule referring to {finding: x} runs after every rule
        making x (a stable topological order). The cases of one rule stay together, in their
        order: each waits for the makers of every finding any case of the rule refers to."""
        makers: dict[str, list[Rule]] = {}
        for r in rules:
            makers.setdefault(r.finding, []).append(r)
        refs: dict[str, set[str]] = {}
        for r in rules:
            refs.setdefault(r.id, set()).update(_finding_refs(r.when_raw, self.conditions_raw))
        deps = {
            r.key: sorted({m.key for f in refs[r.id] for m in makers.get(f, []) if m.id != r.id})
            for r in rules
        }
        cycles = find_cycles(deps)
        by_key = {r.key: r for r in rules}
        if cycles:
            for cycle in cycles:
                d = self.rule_defs[by_key[cycle[0]].def_index]
                names = list(dict.fromkeys(by_key[k].id for k in cycle))
                self.error(
                    d.src,
                    d.path + ("when",),
                    CYCLE_ERROR,
                    "rules depend on each other's findings in a cycle: "
                    + " → ".join(names + [names[0]]),
                )
            return rules
        # Kahn's algorithm, always taking the earliest rule (file order) whose makers have run:
        # rules making the same finding keep their file order ("first rule in the files wins").
        import heapq

        waiting = {r.key: len(deps[r.key]) for r in rules}
        users: dict[str, list[str]] = {}
        for key, needed in deps.items():
            for dep in needed:
                users.setdefault(dep, []).append(key)
        ready = [(r.order, r.key) for r in rules if waiting[r.key] == 0]
        heapq.heapify(ready)
        ordered = []
        while ready:
            _, key = heapq.heappop(ready)
            ordered.append(by_key[key])
            for user in users.get(key, ()):
                waiting[user] -= 1
                if waiting[user] == 0:
                    heapq.heappush(ready, (by_key[user].order, user))
        return ordered


FRAGMENT_VARIABLE = re.compile(r"\{\{\s*([a-z][a-z0-9_]*)(\.detail)?\s*\}\}")


def _fill(text, chosen: dict):
    """A card text with each `{{name}}` / `{{name.detail}}` of a fragment replaced by the text
    of the option chosen for it (None stays None)."""
    if text is None or not chosen:
        return text

    def filled(locale, s):
        def one(m):
            option = chosen.get(m.group(1))
            if option is None:
                return m.group(0)
            part = option.get("detail" if m.group(2) else "text") or {}
            return part.get(locale, part.get("en", m.group(0)))

        return FRAGMENT_VARIABLE.sub(one, s)

    return {loc: filled(loc, s) for loc, s in text.items()}


def _entry_ids(entries):
    """The policy entries of a case: None (no policy), an id, or a tuple of ids (several)."""
    ids = tuple(None if e is None else e.get("id", "default") for e, *_ in entries)
    return ids[0] if len(ids) == 1 else ids


def _apply_policy(entry, suggestions: list[str]) -> list[str]:
    """The suggestions a policy entry leaves: `suggestions` (a list in place of the rule's), then
    `remove`, `replace` (in place), `add` (at the end)."""
    out = list(entry["suggestions"]) if "suggestions" in entry else list(suggestions)
    removed = set(entry.get("remove") or ())
    replace = entry.get("replace") or {}
    out = [replace.get(k, k) for k in out if k not in removed]
    out += [k for k in entry.get("add") or () if k not in out]
    return list(dict.fromkeys(out))


def _local_specs(data, selector, replaced) -> frozenset:
    """The profile / CT-set keys (None: the whole parameter) whose number or source a later pack
    changed from the definition it replaced: the cut-offs that are local choices."""
    if replaced is None:
        return frozenset()
    old = replaced.data

    def core(spec):
        if not isinstance(spec, dict):
            return None
        return {k: spec.get(k) for k in ("value", "male", "female", "source")}

    if selector is None:
        if old.get("profiles") or old.get("ct_cutoffs") or core(old) != core(data):
            return frozenset({None})
        return frozenset()
    before = old.get(selector) or {}
    return frozenset(
        key for key, spec in data[selector].items() if core(spec) != core(before.get(key))
    )


def _texts(text):
    return None if text is None else {loc: Template(s) for loc, s in text.items()}


def _resource_template(tree):
    """Compile every string of a FHIR resource template; {$text: {...}} becomes a localised text."""
    if isinstance(tree, dict):
        if "$text" in tree and set(tree) <= {"$text", "otherwise"}:
            return ("$text", _texts(tree["$text"]), _texts(tree.get("otherwise")))
        return {k: _resource_template(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_resource_template(v) for v in tree]
    if isinstance(tree, str):
        return Template(tree)
    return tree


def _plain_strings(tree, path):
    """(path, Template) of the strings of a compiled resource template outside {$text: …}."""
    if isinstance(tree, Template):
        yield path, tree
    elif isinstance(tree, dict):
        for k, v in tree.items():
            yield from _plain_strings(v, path + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _plain_strings(v, path + (i,))


def _named_refs(cond) -> set[str]:
    out = set()
    if isinstance(cond, dict):
        if "condition" in cond and isinstance(cond["condition"], str):
            out.add(cond["condition"])
        for v in cond.values():
            out |= _named_refs(v)
    elif isinstance(cond, list):
        for v in cond:
            out |= _named_refs(v)
    return out


def _finding_refs(cond, named, seen=None) -> set[str]:
    seen = set() if seen is None else seen
    out = set()
    if isinstance(cond, dict):
        if isinstance(cond.get("finding"), str):
            out.add(cond["finding"])
        if (
            isinstance(cond.get("condition"), str)
            and cond["condition"] in named
            and cond["condition"] not in seen
        ):
            seen.add(cond["condition"])
            out |= _finding_refs(named[cond["condition"]].data, named, seen)
        for v in cond.values():
            out |= _finding_refs(v, named, seen)
    elif isinstance(cond, list):
        for v in cond:
            out |= _finding_refs(v, named, seen)
    return out


def find_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Every elementary cycle found by depth-first search (one per strongly connected knot)."""
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def compile_sources(sources: list[Source], out: Collector):
    """Run every check and return the parts a RuleSet needs (raises PackErrors at the end)."""
    c = Compiler(sources, out)
    c.merge()
    check_override_names(c)
    c.compile_value_sets()
    c.compile_profiles()
    c.compile_parameters()
    c.compile_facts()
    c.compile_drug_classes()
    c.compile_derived()
    c.number_readers()
    rules = c.compile_conditions_and_rules()
    suggestions, links, reasons, groups = c.compile_outputs()
    rules = c.rule_order(rules)
    check_texts(c)
    check_templates(c, rules, suggestions, links)
    out.raise_if_any()
    return c, rules, suggestions, links, reasons, groups
