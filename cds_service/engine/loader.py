"""Read YAML files into plain data plus a map from JSON path to (line, column)."""

from __future__ import annotations

from pathlib import Path

import yaml

from .diagnostics import DUPLICATE_ERROR, YAML_ERROR, PackError, Source

_constructor = yaml.constructor.SafeConstructor()
_LOADER = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)  # libyaml when present: same nodes and marks, faster
_STRING_TAGS = {"tag:yaml.org,2002:timestamp"}


def read_source(path: Path, display: str) -> tuple[Source | None, list[PackError]]:
    """Parse one YAML file; on a syntax error return no source and a rule_yaml_error."""
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [PackError(display, line, col, YAML_ERROR, "$", f"{exc.problem or exc}")]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return None, [PackError(display, 1, 1, YAML_ERROR, "$", str(exc))]
    marks: dict[tuple, tuple[int, int]] = {}
    errors: list[PackError] = []
    data = _build(node, (), marks, errors, display) if node is not None else None
    return Source(display, data, marks), errors


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
