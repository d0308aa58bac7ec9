"""Code tables: a value-set entry `{system: S, table: FILE.csv}` read as one entry per CSV row.

Long reference lists (the WHO ATC L01 substance names, RxNorm clinical drugs) are data, not rules:
they live in CSV files beside the pack (columns `code,display`), so the pack stays readable. Every
row becomes `{system: S, code: …, display: …}` at load, located at the `table:` line of the pack;
a missing file, a file outside the pack's folder, a wrong header or an empty code is an error that
names the CSV file and line."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .diagnostics import REFERENCE_ERROR, PackError

HEADER = ["code", "display"]


def expand_tables(path: Path, display: str, data, marks: dict, errors: list[PackError]) -> None:
    """Replace each `table:` entry of the pack's value sets by the rows of its CSV file."""
    value_sets = data.get("value_sets") if isinstance(data, dict) else None
    if not isinstance(value_sets, dict):
        return
    for name, entries in value_sets.items():
        if not isinstance(entries, list) or not any(isinstance(e, dict) and "table" in e for e in entries):
            continue
        out: list = []
        new_marks: dict = {}
        for i, entry in enumerate(entries):
            where = ("value_sets", name, i)
            at = marks.get(where, (1, 1))
            if not (isinstance(entry, dict) and "table" in entry):
                _move(marks, new_marks, where, ("value_sets", name, len(out)))
                out.append(entry)
                continue
            rows = _rows(path, display, entry, where, at, errors)
            for code, text in rows:
                row = {k: v for k, v in entry.items() if k != "table"}
                row.update(code=code, display=text)
                target = ("value_sets", name, len(out))
                for key in ("", "system", "code", "display"):
                    new_marks[target + ((key,) if key else ())] = at
                out.append(row)
        for key in [k for k in marks if k[:2] == ("value_sets", name) and len(k) > 2]:
            del marks[key]
        marks.update(new_marks)
        value_sets[name] = out


def _move(marks: dict, into: dict, old: tuple, new: tuple) -> None:
    for key, mark in marks.items():
        if key[: len(old)] == old:
            into[new + key[len(old):]] = mark


def _rows(path: Path, display: str, entry: dict, where: tuple, at: tuple, errors: list[PackError]):
    """(code, display) rows of the entry's CSV file; problems go to `errors`."""
    json_path = "$." + ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in where).replace(".[", "[")
    table = entry.get("table")
    folder = path.parent.resolve()

    def fail(message: str) -> list:
        errors.append(PackError(display, at[0], at[1], REFERENCE_ERROR, json_path + ".table", message))
        return []

    if not isinstance(table, str) or not table.endswith(".csv"):
        return fail("a code table is a .csv file beside the pack (columns code,display)")
    file = (folder / table).resolve()
    if not file.is_relative_to(folder):
        return fail(f"code table {table!r} lies outside the pack's folder")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return fail(f"code table {table!r} not found beside the pack")
    except (OSError, UnicodeDecodeError) as exc:
        return fail(f"code table {table!r} cannot be read: {exc}")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header != HEADER:
        return fail(f"code table {table!r}: the first line must be 'code,display' (found {','.join(header or [])!r})")
    rows, seen = [], set()
    for number, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            fail(f"{table}:{number}: a row is 'code,display', both not empty (found {','.join(row)!r})")
            continue
        code, name = row[0].strip(), row[1].strip()
        if (code, name) in seen:  # one code may carry two names (a WHO INN and a US adopted name)
            fail(f"{table}:{number}: {code},{name} is listed twice")
            continue
        seen.add((code, name))
        rows.append((code, name))
    return rows
