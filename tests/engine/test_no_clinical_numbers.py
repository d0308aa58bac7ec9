"""No clinical cut-off lives in Python: the engine's modules contain none of these numbers."""

import ast
from pathlib import Path

import cds_service.engine

FORBIDDEN = {27, 16, 28, 18, 0.8, 52.4, 38.5, 43, 53, 41, 40.8, 34.9, 10, 35}
ENGINE = Path(cds_service.engine.__file__).parent


def _docstring_nodes(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                yield body[0].value


def numeric_literals(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for n in _docstring_nodes(tree)}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and id(node) not in skip
            and not isinstance(node.value, bool)
            and isinstance(node.value, (int, float))
        ):
            yield node.lineno, node.value


def test_engine_modules_have_no_clinical_numbers():
    found = [
        f"{path.name}:{line}: {value!r}"
        for path in sorted(ENGINE.glob("*.py"))
        for line, value in numeric_literals(path)
        if value in FORBIDDEN
    ]
    assert found == []


def test_the_scan_finds_a_planted_number(tmp_path):
    planted = tmp_path / "x.py"
    planted.write_text('"""Docstring mentioning 27 kg is fine."""\nTHRESHOLD = 27\nOTHER = 52.4\n')
    assert sorted(v for _, v in numeric_literals(planted)) == [27, 52.4]
