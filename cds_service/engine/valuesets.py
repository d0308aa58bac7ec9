"""Value sets compiled to matchers: exact codes, prefixes (ATC L01), ranges (ICD-10 C00–C97)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ValueSet:
    """A named code set; `matches(system, code)` is what facts and filters call."""

    name: str
    exact: set[tuple[str, str]] = field(default_factory=set)
    prefixes: list[tuple[frozenset[str], str]] = field(default_factory=list)
    ranges: list[tuple[frozenset[str], str, str]] = field(default_factory=list)
    ordered: list[tuple[str, str]] = field(default_factory=list)
    #: (system, code, display) of every entry with a `display` (medication recognition reads them)
    named: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, entry: dict, systems: list[str]) -> None:
        if "code" in entry or "codes" in entry:
            for code in entry.get("codes") or [entry["code"]]:
                for system in systems:
                    self.exact.add((system, str(code)))
                    self.ordered.append((system, str(code)))
                    if entry.get("display"):
                        self.named.append((system, str(code), entry["display"]))
        elif "prefix" in entry:
            self.prefixes.append((frozenset(systems), entry["prefix"]))
        elif "range" in entry:
            low, high = entry["range"]
            self.ranges.append((frozenset(systems), low, high))

    @property
    def exact_only(self) -> bool:
        return not self.prefixes and not self.ranges

    def matches(self, system: str | None, code: str | None) -> bool:
        if code is None:
            return False
        if (system, code) in self.exact:
            return True
        for systems, prefix in self.prefixes:
            if system in systems and code.startswith(prefix):
                return True
        for systems, low, high in self.ranges:
            if system in systems and low <= code[: len(low)] <= high:
                return True
        return False

    def first_code(self) -> tuple[str, str] | None:
        """The first exact code (used by the compact test notation)."""
        return self.ordered[0] if self.ordered else None


def codings(values: list) -> list[tuple[str | None, str]]:
    """(system, code) pairs from a list of code strings, Codings or CodeableConcepts."""
    out = []
    for value in values:
        if isinstance(value, str):
            out.append((None, value))
        elif isinstance(value, dict):
            if "coding" in value:
                for coding in value["coding"] or ():
                    if isinstance(coding, dict) and "code" in coding:
                        out.append((coding.get("system"), str(coding["code"])))
            elif "code" in value:
                out.append((value.get("system"), str(value["code"])))
    return out
