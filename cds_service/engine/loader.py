"""Read YAML files into plain data plus a map from JSON path to (line, column)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .diagnostics import DUPLICATE_ERROR, YAML_ERROR, PackError, Source
from .tables import expand_tables

_constructor = yaml.constructor.SafeConstructor()
_LOADER = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)  # libyaml when present: same nodes and marks, faster
_STRING_TAGS = {"tag:yaml.org,2002:timestamp"}


_TAB_INDENT = re.compile(r"^[ ]*(?:-[ ]+)*[ ]*\t")
_INDENT_PROBLEMS = (
    "did not find expected key",
    "expected <block end>",
    "did not find expected '-' indicator",
    "mapping values are not allowed",
    "found a tab character that violates indentation",
)
TAB_MESSAGE = "tabs are not allowed for indentation in YAML; use spaces"


def read_source(path: Path, display: str) -> tuple[Source | None, list[PackError]]:
    """Parse one YAML file; on a syntax error return no source and a rule_yaml_error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [PackError(display, 1, 1, YAML_ERROR, "$", "no such file or folder"
                                + (" (name the bundled packs `bundled`)" if Path(display).name == "rules" else ""))]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [PackError(display, 1, 1, YAML_ERROR, "$", str(exc))]
    tabs = tab_errors(text, display)
    if tabs:
        return None, tabs
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message, indent = _plain(exc, text, line)
        return None, [PackError(display, line, col if indent is None else indent + 1, YAML_ERROR, "$", message)]
    except yaml.YAMLError as exc:
        return None, [PackError(display, 1, 1, YAML_ERROR, "$", str(exc))]
    marks: dict[tuple, tuple[int, int]] = {}
    errors: list[PackError] = []
    data = _build(node, (), marks, errors, display) if node is not None else None
    expand_tables(path, display, data, marks, errors)
    return Source(display, data, marks), errors


def tab_errors(text: str, display: str) -> list[PackError]:
    """One error for every line indented with a tab (YAML forbids them; PyYAML's own message,
    "found character that cannot start any token", does not say so)."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        match = _TAB_INDENT.match(line)
        if match and not line.lstrip(" -\t").startswith("#"):
            out.append(PackError(display, number, match.end(), YAML_ERROR, "$", TAB_MESSAGE))
    return out


def _plain(exc: yaml.MarkedYAMLError, text: str, line: int) -> tuple[str, int | None]:
    """PyYAML's problem in plain words (and, for an indentation mistake, the line's indentation:
    the message says which lines to line up)."""
    problem = str(exc.problem or exc)
    if not any(problem.startswith(p) for p in _INDENT_PROBLEMS):
        return problem, None
    lines = text.splitlines()
    here = lines[line - 1] if 0 < line <= len(lines) else ""
    indent = len(here) - len(here.lstrip(" "))
    above = []  # (line number, indentation) of the nearest lines above at each smaller-or-other level
    for number in range(line - 1, 0, -1):
        other = lines[number - 1]
        if not other.strip() or other.lstrip().startswith("#"):
            continue
        width = len(other) - len(other.lstrip(" "))
        if not above or width < above[-1][1]:
            above.append((number, width))
        if width == 0:
            break
    levels = ", ".join(f"{w} (line {n})" for n, w in above[:3])
    return (f"wrong indentation: this line is indented {indent} space{'s' if indent != 1 else ''}, which "
            f"lines up with nothing above it (lines above are indented {levels}); keys of one mapping "
            "and items of one list must start in the same column"), indent


def _build(node, path, marks, errors, display):
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            if key in out:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                errors.append(
                    PackError(
                        display,
                        line,
                        col,
                        DUPLICATE_ERROR,
                        _jp(path + (key,)),
                        f"duplicate key {key!r}",
                    )
                )
            child = path + (key,)
            out[key] = _build(value_node, child, marks, errors, display)
            marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            marks[child + ("=",)] = (
                value_node.start_mark.line + 1,
                value_node.start_mark.column + 1,
            )
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, path + (i,), marks, errors, display) for i, item in enumerate(node.value)
        ]
    if node.tag in _STRING_TAGS:
        return node.value
    return _constructor.construct_object(node)


def _jp(path) -> str:
    from .diagnostics import json_path

    return json_path(path)
