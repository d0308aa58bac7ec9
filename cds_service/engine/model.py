"""The compiled rule set's parts: facts, parameters, rules, suggestions, links, card groups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .templates import Template
from .valuesets import ValueSet

Text = dict[str, Template]  # locale -> compiled template


@dataclass
class Fact:
    """A named value computed from resources (kind 'data') or from other facts ('derived')."""

    name: str
    label: dict[str, str]
    kind: str
    type: str
    unit: str | None = None
    precision: int = 1
    resource_type: str | None = None
    source: str = "record"
    valueset: ValueSet | None = None
    default_code_path: bool = True
    code_get: Callable | None = None
    where: list[Callable] = field(default_factory=list)
    joins: list[tuple] = field(default_factory=list)  # (reference getter, fact name)
    value_is_date: bool = False  # a date fact whose value paths are its date paths
    where_fast: tuple = ()  # cheap filters, run directly
    where_slow: tuple = ()  # other filters, memoised per (filter, resource) per request
    value_get: Callable | None = None
    date_gets: list[Callable] = field(default_factory=list)
    select: str = "latest"
    within: float | str | None = None
    days_ago: float | str | None = None
    tolerance: float | str | None = None
    plausible: dict = field(default_factory=dict)
    conflict: tuple | None = None  # (scope "same_day"|"any", relative: bool, number | parameter)
    answers: dict | None = None  # (system URI, code) -> number: coded answers read as numbers
    # (fact, min days, max days): only values dated that long before the other fact's value
    before: tuple | None = None
    derive: Callable | None = None
    derive_text: str | None = None
    deps: tuple[str, ...] = ()
    location: tuple = ()
    reader_key: tuple = ()  # facts with equal keys read the same items (shared per request)
    reader_id: int = -1  # the reader key as a small int
    date_id: int = -1  # the date paths as a small int
    pool_key: tuple = ()  # (source, resource type): its pool in a run
    hits_key: tuple = ()  # (source, resource type, value set): its candidates in a run
    only_code: tuple | None = None  # the value set's one code, if it has one exact code only
    # its value set's codes, if exact only and read at the type's default code element
    exact_codes: frozenset | None = None


@dataclass
class Parameter:
    """A threshold or multiplier: one value, by sex, or by profile / CT cut-off set (then sex)."""

    name: str
    unit: str
    label: dict[str, str]
    spec: dict
    selector: str | None  # None, "profiles" or "ct_cutoffs"
    band_facts: tuple[str, ...] = ()
    pack: str = ""  # the pack whose definition is in force
    # profile / CT-set keys (None: the whole parameter) that an override pack changed
    local: frozenset = frozenset()

    def is_local(self, profile: str, ct_cutoffs: str | None) -> bool:
        """Does the value in force for these settings come from an override's own choice?"""
        if not self.local:
            return False
        if self.selector is None:
            return None in self.local
        return (profile if self.selector == "profiles" else ct_cutoffs) in self.local

    def spec_for(self, profile: str, ct_cutoffs: str) -> dict | None:
        if self.selector is None:
            return self.spec
        return self.spec[self.selector].get(profile if self.selector == "profiles" else ct_cutoffs)

    def all_values(self) -> list[float]:
        specs = [self.spec] if self.selector is None else list(self.spec[self.selector].values())
        out: list[float] = []
        for spec in specs:
            if "value" in spec:
                out.append(spec["value"])
            for sex in ("male", "female"):
                value = spec.get(sex)
                if isinstance(value, dict):
                    out.extend(band["value"] for band in value["bands"])
                elif value is not None:
                    out.append(value)
        return out


@dataclass
class Card:
    """A rule's card texts."""

    indicator: str
    summary: Text
    detail: Text | None
    source_label: Text
    source_url: str | None
    source_reference: str | None
    source_icon: str | None


@dataclass
class Rule:
    """A rule: when its condition holds on a hook, it makes its finding."""

    id: str
    finding: str
    title: dict[str, str] | None
    hooks: frozenset[str]
    profiles: frozenset[str] | None
    ct_cutoffs: frozenset[str] | None
    when: Callable
    when_raw: dict
    evidence: tuple[str, ...]
    priority: int
    card: Card
    suggestions: tuple[str, ...]
    links: tuple[str, ...]
    override_reasons: tuple[str, ...]
    order: int
    facts_used: frozenset[str] = frozenset()
    pack: str = ""
    when_types: frozenset[str] = frozenset()  # record resource types the condition reads
    finding_refs: frozenset[str] = frozenset()  # findings the condition refers to
    # `when` without evidence or trace (None: it has no such form; `when` is used)
    test: Callable | None = None
    # unique within the rule set: the id, or `id#n` for the n-th case of a rule written with
    # fragments or a suggestion policy (the id is the rule's, as written, on every case)
    key: str = ""
    def_index: int = -1  # the rule's place among the rule definitions (for diagnostics)
    # the case: the fragment option chosen per fragment name, and the policy entry (or None)
    case: tuple = ()


@dataclass
class Suggestion:
    key: str
    label: Text
    is_recommended: bool | None
    unless_open_order: ValueSet | None
    actions: list[dict]  # {"type", "description": Text, "resource": template tree, "resource_id"}
    label_without_data: Text | None = None  # used when a fact in `needs` has no value
    needs: frozenset[str] = frozenset()  # `requires` + the facts the label shows


@dataclass
class Link:
    key: str
    label: Text
    url: Template
    type: str
    app_context: Template | None


@dataclass
class OverrideReason:
    key: str
    system: str
    code: str
    display: dict[str, str]


@dataclass
class CardGroup:
    id: str
    hooks: frozenset[str] | None
    findings: tuple[str, ...]
    selection_behavior: str
