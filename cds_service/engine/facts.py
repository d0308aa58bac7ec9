"""One request's run: resources indexed once, facts computed lazily and at most once."""

from __future__ import annotations

import math

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from . import units
from .messages import phrase
from .dates import as_datetime, stamped
from .render_values import format_date
from .valuesets import codings

DAY = 86400.0
# the default code element of each type (compile.DEFAULT_CODE_PATH), read while grouping
DEFAULT_CODE_KEY = {
    "Observation": "code",
    "Condition": "code",
    "ServiceRequest": "code",
    "Procedure": "code",
    "MedicationRequest": "medicationCodeableConcept",
    "MedicationStatement": "medicationCodeableConcept",
    "MedicationAdministration": "medicationCodeableConcept",
    "ImagingStudy": "procedureCode",
    "Encounter": "type",
}
NO_TS = float("-inf")
NO_DATE = (None, NO_TS)
NO_DAYS = object()
NOT_YET = object()  # a fact not looked at yet in this run


class Item:
    """One value read from one resource (or derived from other facts)."""

    __slots__ = ("date", "raw_unit", "raw_value", "reference", "ts", "value")

    def __init__(self, value, date, reference, raw_value=None, raw_unit=None, ts=NO_TS):
        self.value = value
        self.date = date
        self.reference = reference
        self.raw_value = raw_value
        self.raw_unit = raw_unit
        # the date as a POSIX timestamp, for fast windows and ordering
        self.ts = date.timestamp() if ts == NO_TS and date is not None else ts

    def __repr__(self):
        return f"Item({self.value!r}, {self.date!r}, {self.reference!r})"


@dataclass(slots=True)
class FactValue:
    """A fact's result: one item, or a list of items for select: all."""

    item: Item | None
    items: list[Item] | None = None

    @property
    def value(self):
        return self.item.value if self.item else None


@dataclass(slots=True, frozen=True)
class ParamValue:
    """A parameter's value for one request (shared between requests when it is fixed)."""

    value: float
    unit: str
    source: str | None
    pack: str = ""  # the pack whose definition supplied it
    local: bool = False  # an override pack's own choice (its number or source), not the bundled one


class Run:
    """Everything one evaluation computes; conditions and cards read it through small methods."""

    def __init__(
        self, ruleset, resources, orders, hook, context, now, settings, trace, unavailable=()
    ):
        self.rs = ruleset
        self.unavailable = frozenset(unavailable)
        self.unknown = ruleset.unknown_facts(self.unavailable)  # facts that cannot be known
        self.undetermined: set[str] = set()  # findings left unknown by unavailable data
        self.resources = resources
        self.orders = orders
        self.hook = hook
        self.context = context
        self.now = as_datetime(now)
        self.now_ts = self.now.timestamp()
        self.settings = settings
        self.ct_cutoffs = settings.ct_cutoffs or ruleset.default_ct_cutoffs(settings.profile)
        self.trace = [] if trace else None
        self.cache: dict[str, FactValue | None] = {}
        # parameters (and windows in days) that need no patient data start worked out
        fixed = ruleset.fixed_by_settings.get((settings.profile, self.ct_cutoffs))
        self.params: dict[str, ParamValue | None] = dict(fixed[0]) if fixed else {}
        self.day_params: dict[str, float | None] = dict(fixed[1]) if fixed else {}
        self.by_type: dict[tuple[str, str], list] = {}
        self.code_index: dict[tuple[str, str], dict] = {}
        self.pattern_hits: dict[tuple, list] = {}
        self.readers: dict[tuple, list] = {}
        self.dates: dict[tuple, dict] = {}  # date paths -> id(resource) -> (date, timestamp)
        self.where_memo: dict[tuple, bool] = {}
        self.compare_memo: dict[str, tuple] = {}
        self.compare_results: dict[str, bool | None] = {}  # what bare comparisons found
        self.condition_memo: dict[str, tuple] = {}  # named condition -> (result, evidence notes)
        self.condition_results: dict[str, bool | None] = {}  # named condition -> bare result
        self.references: dict[int, str] = {}
        self.data_quality: list[dict] = []
        self.dq_seen: set[tuple] = set()
        self.excluded: set[str] = set()
        self.findings: dict[str, object] = {}
        self.evidence: list | None = None  # notes of the rule being evaluated
        self.rule_id: str | None = None
        # reference -> how its drug was recognised (engine/medications.py), for the evidence
        self.recognition: dict = {}

    # ---- indexing ------------------------------------------------------------------------
    def of_type(self, source: str, rtype: str) -> list:
        found = self.by_type.get((source, rtype))
        if found is None:
            if (source, None) not in self.by_type:
                self._group(source)
            found = self.by_type.get((source, rtype))
            if found is None:  # no resource of this type (remembered: asked again cheaply)
                found = self.by_type[(source, rtype)] = ()
        return found

    def _group(self, source: str) -> None:
        """One pass over the pool: resources by type (codes are indexed per type, on demand)."""
        pool = self.orders if source == "orders" else self.resources
        groups: dict = {}
        for r in pool:
            t = r.get("resourceType")
            group = groups.get(t)
            if group is None:
                groups[t] = [r]
            else:
                group.append(r)
        self.by_type[(source, None)] = []
        for t, group in groups.items():
            self.by_type[(source, t)] = group

    def candidates(self, fact) -> list:
        pool_key = fact.pool_key
        pool = self.by_type.get(pool_key)
        if pool is None:
            pool = self.of_type(fact.source, fact.resource_type)
        if not pool:
            return pool  # (no resource of the type: nothing can match)
        vs = fact.valueset
        if vs is None:
            return pool
        if not fact.default_code_path:
            return [r for r in pool if any(vs.matches(s, c) for s, c in codings(fact.code_get(r)))]
        index = self.code_index.get(pool_key)
        if index is None:
            index = self._code_index(fact.source, fact.resource_type, fact.code_get)
        if fact.only_code is not None:
            found = index.get(fact.only_code)
            return [pool[i] for i in found] if found else []
        memo_key = fact.hits_key
        cached = self.pattern_hits.get(memo_key)
        if cached is not None:
            return cached
        if not vs.prefixes and not vs.ranges:  # vs.exact_only
            hits = set()
            exact = vs.exact
            if len(index) < len(exact):  # (the same hits, from the smaller side)
                for key, found in index.items():
                    if key in exact:
                        hits.update(found)
            else:
                for key in exact:
                    found = index.get(key)
                    if found:
                        hits.update(found)
            result = self.pattern_hits[memo_key] = [pool[i] for i in sorted(hits)]
            return result
        hits = set()
        for (system, code), positions in index.items():
            if vs.matches(system, code):
                hits.update(positions)
        result = self.pattern_hits[memo_key] = [pool[i] for i in sorted(hits)]
        return result

    def _code_index(self, source, rtype, code_get) -> dict:
        """(system, code) -> positions in of_type(source, rtype), at the type's default code
        element (`code`, `medicationCodeableConcept`, …); built once per request and type."""
        index = self.code_index.get((source, rtype))
        if index is not None:
            return index
        index = self.code_index[(source, rtype)] = {}
        key = DEFAULT_CODE_KEY.get(rtype)
        wanted = self.rs.indexed_codes.get((source, rtype))  # None: every code
        for i, r in enumerate(self.of_type(source, rtype)):
            value = r.get(key) if key is not None else None
            if value.__class__ is dict:
                found = value.get("coding")
                if found.__class__ is list and found:  # the usual CodeableConcept, inline
                    for coding in found:
                        if coding.__class__ is not dict:
                            continue
                        code = coding.get("code")
                        if code is None:
                            continue
                        if code.__class__ is not str:
                            code = str(code)
                        if wanted is not None and code not in wanted:
                            continue
                        pair = (coding.get("system"), code)
                        hit = index.get(pair)
                        if hit is None:
                            index[pair] = [i]
                        elif hit[-1] != i:
                            hit.append(i)
                    continue
            if key is None:
                pairs = _codings_fast(code_get, r)
            else:
                if value is None and key == "medicationCodeableConcept":
                    value = _contained_medication_code(r)
                if value is None:
                    continue
                pairs = codings(value if value.__class__ is list else [value])
            for pair in pairs:
                hit = index.get(pair)
                if hit is None:
                    index[pair] = [i]
                elif hit[-1] != i:
                    hit.append(i)
        return index

    # ---- facts ---------------------------------------------------------------------------
    def fact(self, name: str) -> FactValue | None:
        cache = self.cache
        found = cache.get(name, NOT_YET)
        if found is not NOT_YET:
            return found
        cache[name] = None  # guards against re-entry
        if name in self.unknown:
            return None
        fact = self.rs.facts[name]
        result = self._read(fact) if fact.kind == "data" else self._derive(fact)
        cache[name] = result
        return result

    def _read(self, fact) -> FactValue | None:
        readers = self.readers
        items = readers.get(fact.reader_id)
        if items is None:
            codes = fact.exact_codes
            index = self.code_index.get(fact.pool_key) if codes is not None else None
            if index is not None and index.keys().isdisjoint(codes):
                found = ()  # what candidates() would find: no resource has one of its codes
            else:
                found = self.candidates(fact)  # (reads no fact or parameter: safe to do first)
            if not found and not fact.joins:  # what _items would find, sooner
                within = fact.within
                if within is not None and within not in self.day_params:
                    self.days(within)  # (its window parameter, worked out as _items would)
                readers[fact.reader_id] = []
                return None
            items = readers[fact.reader_id] = self._items(fact, found)  # window applied
        if not items:  # nothing to check or select
            return None
        items = self._plausible(fact, items)
        if fact.conflict is not None and len(items) > 1:
            items = self._conflicts(fact, items)
        return self._select(fact, items)

    def _items(self, fact, candidates) -> list[Item]:
        """Every value the `candidates` hold, before window, plausibility and selection."""
        items = []
        append = items.append
        rtype = fact.resource_type
        joins = [(get, self._targets(other)) for get, other in fact.joins] if fact.joins else ()
        fast, slow = fact.where_fast, fact.where_slow
        dates = self.dates.get(fact.date_id)
        if dates is None:
            dates = self.dates[fact.date_id] = {}
        references = self.references
        date_gets = fact.date_gets
        value_get = fact.value_get
        quantity = fact.type == "quantity"
        value_is_date = fact.value_is_date
        target = fact.unit
        only = fast[0] if len(fast) == 1 else None
        high = low = None
        if fact.within is not None:
            within = self.days(fact.within)
            if within is not None:  # (a window parameter without a value: no window)
                high = self.now_ts
                low = high - within * DAY
        for resource in candidates:
            if only is not None:
                if not only(resource):
                    continue
            elif fast and not all(test(resource) for test in fast):
                continue
            rid = id(resource)
            dated = dates.get(rid)
            if dated is None:
                dated = NO_DATE
                for get in date_gets:
                    found = get(resource)
                    if found:
                        dated = stamped(found[0])
                        if dated[0] is not None:
                            break
                dates[rid] = dated
            when, ts = dated
            if low is not None and not (low <= ts <= high):  # outside the window (or undated)
                continue
            if slow and not self._passes(slow, resource):
                continue
            if joins and not all(_points_at(get(resource), targets) for get, targets in joins):
                continue
            reference = references.get(rid)
            if reference is None:
                own = resource.get("id")
                reference = references[rid] = f"{rtype}/{own}" if own else rtype
            if value_get is None:
                append(Item(reference, when, reference, None, None, ts))
                continue
            if value_is_date:  # the date already read is the value (l3_date, crp_date …)
                if when is not None:
                    append(Item(when, when, reference, None, None, ts))
                continue
            for raw in value_get(resource):
                if quantity and raw.__class__ is dict:  # the usual case, inline
                    number = raw.get("value")
                    unit = raw.get("code") or raw.get("unit") or target
                    if number.__class__ is float or number.__class__ is int:
                        try:  # an integer beyond float's range (10**309) overflows: _item says so
                            if unit == target:
                                append(Item(number * 1.0, when, reference, number, unit, ts))
                                continue
                            k = units._cached_factor(unit, target)
                            if k.__class__ is float:
                                append(Item(number * k, when, reference, number, unit, ts))
                                continue
                        except OverflowError:
                            pass
                item = self._item(fact, raw, when, reference, ts)
                if item is not None:
                    append(item)
        return items

    def _targets(self, name) -> frozenset[str]:
        """`Type/id` of every resource a resource fact holds (its `select` applies)."""
        fv = self.fact(name)
        if fv is None or fv.item is None:
            return frozenset()
        items = fv.items if fv.items is not None else [fv.item]
        return frozenset(i.reference for i in items if i.reference)

    def _passes(self, tests, resource) -> bool:
        """All `where` filters hold; each (filter, resource) is tested once per request."""
        memo = self.where_memo
        for test in tests:
            key = (id(test), id(resource))
            result = memo.get(key)
            if result is None:
                result = memo[key] = bool(test(resource))
            if not result:
                return False
        return True

    def _item(self, fact, raw, when, reference, ts=NO_TS) -> Item | None:
        kind = fact.type
        if kind == "quantity":
            if fact.answers is not None and type(raw) is dict and "coding" in raw:
                return self._answer(fact, raw, when, reference, ts)
            if type(raw) is dict:
                number, unit = raw.get("value"), raw.get("code") or raw.get("unit")
            elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
                number, unit = raw, fact.unit
            else:
                return None
            if type(number) is not float and (
                not isinstance(number, (int, float)) or isinstance(number, bool)
            ):
                return None
            if unit is None:
                unit = fact.unit
            k = 1.0 if unit == fact.unit else units._cached_factor(unit, fact.unit)
            if k.__class__ is str:  # the conversion failed (cached, no exception per value)
                self._exclude(
                    fact,
                    reference,
                    _shown_number(number),
                    unit,
                    f"unit {unit!r} does not convert to {fact.unit!r}",
                )
                return None
            try:
                value = number * k
            except OverflowError:
                value = math.inf
            if not math.isfinite(value):  # never a measurement: implausible, whatever the limits
                self._exclude(fact, reference, _shown_number(number), unit,
                              "implausible: not a finite number")
                return None
            return Item(value, when, reference, number, unit, ts)
        if kind == "code":
            pairs = codings([raw])
            return Item(pairs[0][1], when, reference, None, None, ts) if pairs else None
        if kind == "date":
            value, stamp = stamped(raw)
            return Item(value, value, reference, None, None, stamp) if value else None
        if kind == "boolean":
            return Item(raw, when, reference, None, None, ts) if isinstance(raw, bool) else None
        return Item(reference, when, reference, None, None, ts)

    def _answer(self, fact, concept, when, reference, ts) -> Item | None:
        """A coded answer read as the number the pack's `answers` gives it (LOINC LA9625-0 → 3)."""
        for system, code in codings([concept]):
            number = fact.answers.get((system, code))
            if number is not None:
                return Item(float(number), when, reference, code, None, ts)
        return None

    def _before(self, fact, items):
        """The values dated `min`–`max` days before the date of another fact's value."""
        other, low, high = fact.before
        fv = self.fact(other)
        low, high = self.days(low), self.days(high)
        if fv is None or fv.item is None or fv.item.date is None or low is None or high is None:
            return []
        anchor = fv.item.date
        out = []
        for item in items:
            if item.date is not None:
                days = (anchor - item.date).total_seconds() / DAY
                if ge(days, low) and le(days, high):
                    out.append(item)
        return out

    def _plausible(self, fact, items):
        limits = fact.plausible
        if not limits or fact.type != "quantity":
            return items
        low, high = limits.get("min"), limits.get("max")
        above, below = limits.get("above"), limits.get("below")
        kept = []
        for item in items:
            v = item.value
            bad = (
                (low is not None and lt(v, low))
                or (high is not None and gt(v, high))
                or (above is not None and le(v, above))
                or (below is not None and ge(v, below))
            )
            if bad:
                self._exclude(
                    fact,
                    item.reference,
                    item.raw_value,
                    item.raw_unit,
                    phrase(self.settings.locale, "outside", limits=_limits_text_cached(
                        tuple(sorted(limits.items())), fact.unit, self.settings.locale)),
                    item,
                )
            else:
                kept.append(item)
        return kept

    def _conflicts(self, fact, items):
        """Exclude values that disagree: `any` — all of them when the largest and smallest differ
        by more than the limit; `same_day` — both values of every pair measured less than 24 hours
        apart that differ by more than the limit (no calendar day, so no time-zone dependence)."""
        scope, relative, limit = fact.conflict
        if isinstance(limit, str):
            p = self.param(limit)
            if p is None:
                return items
            limit = p.value * units.factor(p.unit, "1" if relative else fact.unit)

        from . import conflicts  # (imports this module)

        bad: dict[int, str] = {}  # id(item) -> reason
        if scope == "any":
            high = max(items, key=_value_key)
            low = min(items, key=_value_key)
            if conflicts.disagree(high.value, low.value, relative, limit):
                reason = _conflict_text(fact, high, low, relative, limit, self.settings.locale)
                bad = {id(item): reason for item in items}
        else:
            dated = sorted((i for i in items if i.date is not None), key=_date_key)
            for key, (high, low) in conflicts.same_day(dated, relative, limit).items():
                bad[key] = _conflict_text(fact, high, low, relative, limit, self.settings.locale)
        if not bad:
            return items
        kept = []
        for item in items:
            reason = bad.get(id(item))
            if reason is None:
                kept.append(item)
            else:
                self._exclude(fact, item.reference, item.raw_value, item.raw_unit, reason, item)
        return kept

    def _exclude(self, fact, reference, value, unit, reason, item=None):
        self.excluded.add(fact.name)
        key = (fact.name, reference, value, unit, reason)
        if key in self.dq_seen:
            return
        self.dq_seen.add(key)
        entry = {"fact": fact.name}
        for k, v in (("resource", reference), ("value", value), ("unit", unit), ("reason", reason)):
            if v is not None:
                entry[k] = v
        if item is not None and item.date is not None:
            entry["date"] = format_date(item.date)
        self.data_quality.append(entry)

    def _select(self, fact, items) -> FactValue | None:
        if fact.before is not None and items:
            items = self._before(fact, items)
        if not items:
            return None
        how = fact.select
        if how == "latest":
            return FactValue(items[0] if len(items) == 1 else max(items, key=_date_key))
        if how == "all":
            return FactValue(_latest(items), sorted(items, key=_date_key, reverse=True))
        if how == "latest":
            return FactValue(_latest(items))
        if how == "earliest":
            return FactValue(min(items, key=_date_key))
        if how == "max":
            return FactValue(max(items, key=lambda i: i.value))
        if how == "min":
            return FactValue(min(items, key=lambda i: i.value))
        if how == "latest_session_max":
            last = _latest(items)
            day = last.date.date() if last.date else None
            same = [i for i in items if (i.date.date() if i.date else None) == day]
            return FactValue(max(same, key=lambda i: i.value))
        if how == "closest":
            dated = [i for i in items if i.date is not None]
            target_days, tolerance = self.days(fact.days_ago), self.days(fact.tolerance)
            if target_days is None or tolerance is None:
                return None
            best = None
            for i in dated:
                distance = abs((self.now - i.date).total_seconds() / DAY - target_days)
                if distance <= tolerance and (
                    best is None
                    or distance < best[0]
                    or distance == best[0]
                    and i.date > best[1].date
                ):
                    best = (distance, i)
            return FactValue(best[1]) if best else None
        return None

    def _derive(self, fact) -> FactValue | None:
        inputs = []

        def lookup(name):
            if name == "now":
                return self.now
            if name.__class__ is tuple:  # (DATE_OF, fact): the date of the fact's value
                fv = self.fact(name[1])
                if fv is None or fv.item is None:
                    return None
                inputs.append(fv.item)
                return fv.item.date
            if name in self.rs.facts:
                fv = self.fact(name)
                if fv is None or fv.item is None:
                    return None
                inputs.append(fv.item)
                return fv.item.value
            p = self.param(name)
            return None if p is None else p.value

        value = fact.derive(lookup)
        if value is None:
            return None
        dates = [i.date for i in inputs if i.date is not None]
        refs = sorted({i.reference for i in inputs if i.reference})
        item = Item(value, max(dates) if dates else None, ", ".join(refs) or None, value, fact.unit)
        if fact.plausible and not self._plausible(fact, [item]):
            return None
        return FactValue(item)

    # ---- parameters ----------------------------------------------------------------------
    def param(self, name: str) -> ParamValue | None:
        found = self.params.get(name, NOT_YET)
        if found is not NOT_YET:
            return found
        key = (name, self.settings.profile, self.ct_cutoffs)
        shared = self.rs.fixed_params.get(key)
        if shared is not None:
            self.params[name] = shared
            return shared
        p = self.rs.params[name]
        spec = p.spec_for(self.settings.profile, self.ct_cutoffs)
        result = None
        if spec is not None:
            if "value" in spec:  # the same for every request with these settings
                result = ParamValue(float(spec["value"]), p.unit, spec.get("source"), p.pack,
                                    p.is_local(self.settings.profile, self.ct_cutoffs))
                if len(self.rs.fixed_params) < 4096:
                    self.rs.fixed_params[key] = result
                    self._fixed()[0][name] = result
            else:
                sex = self.value("sex") if "sex" in self.rs.facts else None
                chosen = spec.get(sex) if sex in ("male", "female") else None
                if isinstance(chosen, dict):
                    chosen = self._band(chosen)
                if chosen is not None:
                    result = ParamValue(float(chosen), p.unit, spec.get("source"), p.pack,
                                        p.is_local(self.settings.profile, self.ct_cutoffs))
        self.params[name] = result
        return result

    def _band(self, spec):
        by = self.fact(spec["by"])
        if by is None or by.item is None:
            return None
        for band in spec["bands"]:
            if "below" not in band or lt(by.item.value, band["below"]):
                return band["value"]
        return None

    def days(self, value) -> float | None:
        if value is None or isinstance(value, (int, float)):
            return value
        found = self.day_params.get(value, NO_DAYS)
        if found is NO_DAYS:
            p = self.param(value)
            found = self.day_params[value] = (
                None if p is None else p.value * units.factor(p.unit, "d")
            )
            fixed = self._fixed()
            if p is not None and fixed[0].get(value) is p:
                fixed[1][value] = found
        return found

    def _fixed(self) -> tuple[dict, dict]:
        """(parameters, windows in days) that need no patient data, for these settings."""
        key = (self.settings.profile, self.ct_cutoffs)
        found = self.rs.fixed_by_settings.get(key)
        if found is None:
            found = ({}, {})
            if len(self.rs.fixed_by_settings) < 64:
                self.rs.fixed_by_settings[key] = found
        return found

    # ---- what conditions ask -------------------------------------------------------------
    def has(self, name) -> bool:
        fv = self.fact(name)
        return fv is not None and fv.item is not None

    def value(self, name):
        cache = self.cache
        fv = cache[name] if name in cache else self.fact(name)
        if fv is None:
            return None
        item = fv.item  # (FactValue.value, without the property call)
        return None if item is None else item.value

    def age_days(self, name):
        fv = self.fact(name)
        if fv is None or fv.item is None or fv.item.date is None:
            return None
        return (self.now - fv.item.date).total_seconds() / DAY

    def implausible(self, names) -> bool | None:
        """True if a value was excluded; unknown if not and a fact asked about is unknown."""
        cache = self.cache
        if names is None:
            plausible = self.rs.plausible_facts
            for name in plausible:
                if name not in cache:
                    self.fact(name)
            if self.excluded:
                return True
            unknown = self.unknown
            return None if unknown and any(n in unknown for n in plausible) else False
        for name in names:
            if name not in cache:
                self.fact(name)
        if self.excluded & names:
            return True
        return None if names & self.unknown else False

    def finding(self, code) -> bool | None:
        if code in self.findings:
            return True
        return None if code in self.undetermined else False

    def record_fact(self, text, result, fact_name):
        """record() without extras: note the fact (if any) and trace the condition."""
        if fact_name is not None and self.evidence is not None:
            self.evidence.append(fact_name)
        if self.trace is not None:
            self.trace.append({"rule": self.rule_id, "condition": text, "result": result})
        return result

    def record(self, text, result, fact_name, **extra):
        if self.evidence is not None:
            if fact_name is not None:
                self._note_fact(fact_name)
            if "finding" in extra and extra["finding"] in self.findings:
                self._note({"finding": extra["finding"]})
            if "implausible" in extra:
                names = extra["implausible"]
                for entry in self.data_quality:
                    if names is True or entry["fact"] in names:
                        self._note(dict(entry, excluded=True))
        if self.trace is not None:
            self.trace.append({"rule": self.rule_id, "condition": text, "result": result})
        return result

    def _compare(self, name, fn, symbol, number, ref):
        left = self.value(name)
        right, threshold, notes = number, None, []
        if ref is not None:
            other, k, kind = ref
            if kind == "param":
                p = self.param(other)
                right = None if p is None else p.value * k
                notes.extend(self.rs.params[other].band_facts)
                if p is not None:
                    threshold = dict(self._threshold_head(other, symbol, p))
                elif left is not None:
                    decided = self._decided(other, fn, left, k)
                    if decided is not None:
                        result, values = decided
                        notes.append(name)
                        param = self.rs.params[other]
                        spec = param.spec_for(self.settings.profile, self.ct_cutoffs)
                        shown = " / ".join(_num(v) for v in sorted(set(values)))
                        sex = self.value("sex") if "sex" in self.rs.facts else None
                        why = phrase(self.settings.locale,
                                     "both_sexes" if sex not in ("male", "female") else "every_band")
                        entry = {
                            "parameter": other,
                            "comparison": f"{symbol} {shown} ({why})",
                            "value": float(min(values)),
                            "unit": param.unit,
                            "fact": name,
                            "result": result,
                        }
                        if spec.get("source"):
                            entry["source"] = spec["source"]
                            citation = self.rs.citation(spec["source"])
                            if citation:
                                entry["citation"] = citation
                        notes.append(entry)
                        return result, tuple(notes), left, None
            else:
                right = self.value(other)
                right = None if right is None else right * k
                notes.append(other)
        result = None if left is None or right is None else fn(left, right)
        notes.append(name)
        if threshold is not None:
            threshold["fact"] = name
            if result is not None:
                threshold["result"] = result
            notes.append(threshold)
        return result, tuple(notes), left, right

    def compare_result(self, name, fn, number, ref) -> bool | None:
        """_compare's result alone (the same facts and parameters read, in the same order)."""
        left = self.value(name)
        if ref is None:
            right = number
        else:
            other, k, kind = ref
            if kind == "param":
                p = self.param(other)
                right = None if p is None else p.value * k
                if p is None and left is not None:
                    decided = self._decided(other, fn, left, k)
                    return None if decided is None else decided[0]
            else:
                right = self.value(other)
                right = None if right is None else right * k
        return None if left is None or right is None else fn(left, right)

    def _decided(self, name, fn, left, k):
        """(result, values) when a parameter has no value because the sex is neither male nor
        female or its band fact (BMI) is missing, but the comparison comes out the same for every
        value it could take (a grip below both sexes' cut-offs; an SMI below 43 at any BMI).
        None otherwise, and always when the sex or band fact is unknown for unavailable data."""
        spec = self.rs.params[name].spec_for(self.settings.profile, self.ct_cutoffs)
        if spec is None or "value" in spec:
            return None
        sex = self.value("sex") if "sex" in self.rs.facts else None
        if sex not in ("male", "female") and "sex" in self.unknown:
            return None
        values = []
        for one in (sex,) if sex in ("male", "female") else ("male", "female"):
            chosen = spec.get(one)
            if isinstance(chosen, dict):
                band = self._band(chosen)
                if band is None:
                    if chosen["by"] in self.unknown:
                        return None
                    values.extend(b["value"] for b in chosen["bands"])
                else:
                    values.append(band)
            elif chosen is None:
                return None
            else:
                values.append(chosen)
        results = {fn(left, float(v) * k) for v in values}
        return (results.pop(), values) if len(results) == 1 else None

    def _threshold_head(self, other, symbol, p) -> dict:
        """The evidence entry of a threshold before its fact and result (kept per rule set)."""
        heads = self.rs.threshold_heads
        key = (other, symbol, p)
        head = heads.get(key)
        if head is None:
            head = {
                "parameter": other,
                "comparison": f"{symbol} {_num(p.value)}",
                "value": p.value,
                "unit": p.unit,
            }
            if p.source:
                head["source"] = p.source
                citation = self.rs.citation(p.source)
                if citation:
                    head["citation"] = citation
            if p.pack:
                head["pack"] = p.pack  # the pack that supplied the number
            if p.local:
                head["local"] = True
            if len(heads) < 4096 and p.value != 0:  # (0.0 and -0.0 are equal keys, not texts)
                heads[key] = head
        return head

    def _note_fact(self, name):
        """Remember that the current rule used `name`; entries are built only if the rule fires."""
        self.evidence.append(name)

    def materialize(self, notes) -> list[dict]:
        """Evidence entries for the notes a rule left (fact names and threshold/finding dicts)."""
        out: list[dict] = []
        seen: set = set()
        for note in notes:
            if note.__class__ is str:
                key = ("fact", note)  # one entry per fact
                if key in seen:
                    continue
                seen.add(key)
                out.append(self.fact_entry(note))
                continue
            key = _entry_key(note)
            if key is None:
                if note not in out:
                    out.append(note)
            elif key not in seen:
                seen.add(key)
                out.append(note)
        return out

    def fact_entry(self, name) -> dict:
        fv = self.fact(name)
        fact = self.rs.facts[name]
        entry = {"fact": name}
        if fact.label:
            entry["label"] = fact.label.get(self.settings.locale) or fact.label.get("en") or name
        if name in self.unknown:
            entry["unavailable"] = True  # its resource type could not be fetched
        elif fv is None or fv.item is None:
            entry["missing"] = True
        elif fv.items is not None:
            entry["count"] = len(fv.items)
            entry["resources"] = [i.reference for i in fv.items if i.reference]
            if fv.item.date:
                entry["date"] = format_date(fv.item.date)
            if self.recognition and fact.valueset is not None:
                how = [
                    {"resource": ref, "by": note.by, "text": note.text}
                    for ref in entry["resources"]
                    for note in self.recognition.get(ref, ())
                    if note.value_set == fact.valueset.name
                ]
                if how:
                    entry["recognised"] = how
        else:
            item = fv.item
            value = item.value
            entry["value"] = (
                round(value, 6)
                if isinstance(value, float)
                else format_date(value)
                if isinstance(value, datetime)
                else value
            )
            if fact.type == "quantity" and fact.unit:
                entry["unit"] = fact.unit
            if item.date is not None:
                entry["date"] = format_date(item.date)
            if item.reference and fact.type != "date":
                entry["resource"] = item.reference
            if item.raw_unit and item.raw_unit != fact.unit and fact.kind == "data":
                entry["original"] = {"value": item.raw_value, "unit": item.raw_unit}
        return entry

    def _note(self, entry):
        self.evidence.append(entry)


def _codings_fast(code_get, resource):
    """(system, code) pairs at a fact's code path; a direct read for one-element paths (`code`)."""
    key = getattr(code_get, "single_key", None)
    if key is None:
        return codings(code_get(resource))
    value = resource.get(key)
    if value is None:
        if key == "medicationCodeableConcept":
            value = _contained_medication_code(resource)
        if value is None:
            return ()
    if isinstance(value, dict):
        out = []
        for coding in value.get("coding") or ():
            if isinstance(coding, dict) and "code" in coding:
                out.append((coding.get("system"), str(coding["code"])))
        if not out and "code" in value:
            out.append((value.get("system"), str(value["code"])))
        return out
    return codings(value if isinstance(value, list) else [value])


def _points_at(values, targets) -> bool:
    """Any Reference among `values` names one of `targets` (`Type/id`; absolute URLs too)."""
    if not targets:
        return False
    for value in values:
        ref = value.get("reference") if isinstance(value, dict) else value
        if isinstance(ref, str):
            parts = ref.rstrip("/").split("/")
            if len(parts) >= 2 and f"{parts[-2]}/{parts[-1]}" in targets:
                return True
            # versioned: Type/id/_history/n
            if (
                len(parts) >= 4
                and parts[-2] == "_history"
                and f"{parts[-4]}/{parts[-3]}" in targets
            ):
                return True
    return False


def close(a: float, b: float) -> bool:
    """a and b agree to 12 significant digits (relative difference ≤ 1e-12): equal for every
    comparison. Removes binary floating-point noise ((60 - 58.8) / 60 = 0.02000000000000005,
    24.999999999999996 for a BMI of 25) far below any clinical resolution. Not display rounding."""
    return a == b or abs(a - b) <= REL_TOL * max(abs(a), abs(b))


REL_TOL = 1e-12


def lt(a, b) -> bool:
    return a < b and not close(a, b)


def le(a, b) -> bool:
    return a <= b or close(a, b)


def gt(a, b) -> bool:
    return a > b and not close(a, b)


def ge(a, b) -> bool:
    return a >= b or close(a, b)


def eq(a, b) -> bool:
    return close(a, b)


def ne(a, b) -> bool:
    return not close(a, b)


def _entry_key(entry: dict):
    """A hashable identity for the evidence entries built by the engine (None: compare whole)."""
    try:
        if "excluded" in entry:
            return ("x", entry["fact"], entry.get("resource"), entry.get("value"), entry["reason"])
        if "parameter" in entry:
            return (
                "p",
                entry["parameter"],
                entry.get("fact"),
                entry["comparison"],
                entry.get("result"),
            )
        if len(entry) == 1 and "finding" in entry:
            return ("f", entry["finding"])
    except (KeyError, TypeError):
        return None
    return None


def _shown_number(number):
    """A number as evidence shows it: an integer beyond 64 bits in scientific notation (a
    310-digit 'grip strength' is not repeated in full on a card)."""
    if isinstance(number, int) and not isinstance(number, bool) and number.bit_length() > 64:
        digits = str(abs(number))
        return f"{'-' if number < 0 else ''}{digits[0]}.{digits[1:3]}e+{len(digits) - 1}"
    return number


def _value_key(item):
    return item.value


def _conflict_text(fact, high, low, relative, limit, locale="en"):
    def one(item):
        if item.date is None:
            when = ""
        elif fact.conflict[0] == "same_day":
            when = f" ({item.date.strftime('%Y-%m-%d %H:%M')})"
        else:
            when = f" ({format_date(item.date)})"
        return f"{item.value:.{fact.precision}f} {unit}{when}"

    unit = units.display(fact.unit, locale) if locale != "en" else fact.unit
    allowed = f"{limit * 100:g} %" if relative else f"{limit:g} {unit}"
    return phrase(locale, "conflict", first=one(high), second=one(low), allowed=allowed)


def _contained_medication_code(resource):
    """The code of a contained Medication named by `medicationReference: {reference: "#id"}`."""
    ref = resource.get("medicationReference")
    target = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(target, str) or not target.startswith("#"):
        return None
    for contained in resource.get("contained") or ():
        if (
            isinstance(contained, dict)
            and contained.get("resourceType") == "Medication"
            and contained.get("id") == target[1:]
        ):
            return contained.get("code")
    return None


def _latest(items):
    return max(items, key=_date_key)


def _date_key(item):
    return item.ts


def _num(value):
    return f"{value:g}"


@lru_cache(maxsize=1024)
def _limits_text_cached(items, unit, locale="en"):
    return _limits_text(dict(items), unit, locale)


def _limits_text(limits, unit, locale="en"):
    parts = []
    for key, symbol in (("above", ">"), ("min", "≥"), ("below", "<"), ("max", "≤")):
        if key in limits:
            parts.append(f"{symbol} {limits[key]:g}")
    shown = unit if locale == "en" else units.display(unit, locale)
    return phrase(locale, "and").join(parts) + (f" {shown}" if shown else "")
