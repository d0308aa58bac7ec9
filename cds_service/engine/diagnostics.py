"""Coded, located load-time diagnostics: PackError, PackErrors and the fixed set of codes."""

from __future__ import annotations

from dataclasses import dataclass

YAML_ERROR = "rule_yaml_error"
SCHEMA_ERROR = "rule_schema_error"
REFERENCE_ERROR = "rule_reference_error"
FHIRPATH_ERROR = "rule_fhirpath_error"
UNIT_ERROR = "rule_unit_error"
TEMPLATE_ERROR = "rule_template_error"
DUPLICATE_ERROR = "rule_duplicate_error"
CYCLE_ERROR = "rule_cycle_error"
TEST_ERROR = "rule_test_error"
UNUSED_ERROR = "rule_unused_error"

CODES = (
    YAML_ERROR,
    SCHEMA_ERROR,
    REFERENCE_ERROR,
    FHIRPATH_ERROR,
    UNIT_ERROR,
    TEMPLATE_ERROR,
    DUPLICATE_ERROR,
    CYCLE_ERROR,
    TEST_ERROR,
    UNUSED_ERROR,
)


def close_names(name: str, candidates) -> list[str]:
    """The existing names nearest to `name` (difflib), best first: those within 0.1 of the best."""
    from difflib import SequenceMatcher, get_close_matches

    close = get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.7)
    if not close:
        return []
    best = SequenceMatcher(None, name, close[0]).ratio()
    return [c for c in close if SequenceMatcher(None, name, c).ratio() >= best - 0.1]


def did_you_mean(name: str, candidates, what: str) -> str:
    """'unknown <what> 'x'; did you mean 'y'?' with the closest existing names, if any."""
    close = close_names(name, candidates)
    text = f"unknown {what} {name!r}"
    if close:
        text += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return text


@dataclass(frozen=True, order=True)
class PackError:
    """One problem in a rule pack, located by file, line, column (1-based) and JSON path."""

    file: str
    line: int
    col: int
    code: str
    json_path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.code}: {self.json_path}: {self.message}"


class PackErrors(Exception):
    """Every diagnostic found while loading rule packs, sorted by location."""

    def __init__(self, errors: list[PackError]):
        self.errors = sorted(set(errors))
        super().__init__("\n".join(str(e) for e in self.errors))


class Collector:
    """Accumulates diagnostics, each located through the Source it came from."""

    def __init__(self) -> None:
        self.errors: list[PackError] = []

    def add(self, src: Source, path: tuple, code: str, message: str, value: bool = True) -> None:
        line, col = src.locate(path, value)
        self.errors.append(PackError(src.file, line, col, code, json_path(path), message))

    def raise_if_any(self) -> None:
        if self.errors:
            raise PackErrors(self.errors)


class Source:
    """A loaded file: its display name, its data and the marks of its YAML nodes."""

    def __init__(self, file: str, data, marks: dict[tuple, tuple[int, int]]):
        self.file = file
        self.data = data
        self.marks = marks

    def locate(self, path: tuple, value: bool = True) -> tuple[int, int]:
        """Line and column of the value at `path` (or of its key), else of the nearest parent."""
        path = tuple(path)
        if value and path + ("=",) in self.marks:
            return self.marks[path + ("=",)]
        while path not in self.marks and path:
            path = path[:-1]
        return self.marks.get(path, (1, 1))


def json_path(path) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out
