"""Arithmetic over facts and parameters for derived facts, unit-checked with pint at load."""

from __future__ import annotations

import ast
from collections.abc import Callable
from datetime import datetime

import pint

from . import units

FUNCTIONS = (
    "min",
    "max",
    "abs",
    "days_between",
    "calendar_days_between",
    "years_between",
    "date_of",
)
DATE = "date"  # the unit marker of a date-valued operand
DATE_OF = "date_of"  # lookup((DATE_OF, name)) gives the date of the fact's value


class ExpressionError(ValueError):
    """An expression that cannot be compiled; `kind` is 'reference', 'unit' or 'syntax'."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def names_in(text: str) -> set[str]:
    """Every bare name an expression uses (functions excluded)."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return set()
    called = {
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - called


def compile_expression(text: str, unit_of_name: Callable[[str], str | None], target_unit: str):
    """Return fn(lookup) -> float | None, giving the value in `target_unit`.

    `unit_of_name(name)` gives a name's UCUM unit, DATE for dates, or None if the name is unknown;
    `lookup(name)` at run time gives the value (in that unit) or None when unknown."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError("syntax", f"cannot parse {text!r}: {exc.msg}") from exc
    fn, unit = _node(tree.body, unit_of_name)
    if unit == DATE:
        raise ExpressionError("unit", f"{text!r} is a date, not a quantity in {target_unit!r}")
    try:
        scale = float((unit / units.unit_of(target_unit)).to("dimensionless").magnitude)
    except pint.errors.DimensionalityError as exc:
        raise ExpressionError(
            "unit",
            f"{text!r} has dimension {unit.dimensionality} "
            f"({unit.units:~}), which does not convert to {target_unit!r}",
        ) from exc
    except units.UnitError as exc:
        raise ExpressionError("unit", str(exc)) from exc

    def evaluate(lookup):
        try:
            value = fn(lookup)
        except (ZeroDivisionError, OverflowError, ValueError, TypeError):
            return None
        return None if value is None else value * scale

    return evaluate


def _node(node, unit_of_name):
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        value = float(node.value)
        return (lambda lookup: value), units.Q_(1.0, "dimensionless")
    if isinstance(node, ast.Name):
        unit = unit_of_name(node.id)
        if unit is None:
            raise ExpressionError("reference", f"unknown name {node.id!r}")
        name = node.id
        if unit == DATE:
            return (lambda lookup: lookup(name)), DATE
        try:
            quantity = units.unit_of(unit)
        except units.UnitError as exc:
            raise ExpressionError("unit", str(exc)) from exc
        return (lambda lookup: lookup(name)), quantity
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        fn, unit = _node(node.operand, unit_of_name)
        _no_date(unit, "a sign")
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        return (lambda lookup: _apply(lambda a: sign * a, fn(lookup))), unit
    if isinstance(node, ast.BinOp):
        return _binop(node, unit_of_name)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        return _call(node, unit_of_name)
    raise ExpressionError("syntax", f"not allowed in an expression: {ast.unparse(node)!r}")


def _binop(node, unit_of_name):
    left, lu = _node(node.left, unit_of_name)
    if isinstance(node.op, ast.Pow):
        if not (
            isinstance(node.right, ast.Constant) and isinstance(node.right.value, (int, float))
        ):
            raise ExpressionError("syntax", "the exponent must be a number")
        _no_date(lu, "a power")
        exponent = node.right.value
        return (lambda lookup: _apply(lambda a: a**exponent, left(lookup))), lu**exponent
    right, ru = _node(node.right, unit_of_name)
    _no_date(lu, "arithmetic")
    _no_date(ru, "arithmetic")
    if isinstance(node.op, ast.Mult):
        return (lambda lookup: _apply2(lambda a, b: a * b, left(lookup), right(lookup))), lu * ru
    if isinstance(node.op, ast.Div):
        return (lambda lookup: _apply2(lambda a, b: a / b, left(lookup), right(lookup))), lu / ru
    if isinstance(node.op, (ast.Add, ast.Sub)):
        k = _same_dimension_factor(ru, lu, ast.unparse(node))
        if isinstance(node.op, ast.Add):
            return (lambda lookup: _apply2(lambda a, b: a + k * b, left(lookup), right(lookup))), lu
        return (lambda lookup: _apply2(lambda a, b: a - k * b, left(lookup), right(lookup))), lu
    raise ExpressionError("syntax", f"operator not allowed: {ast.unparse(node)!r}")


def _call(node, unit_of_name):
    name = node.func.id
    if name not in FUNCTIONS:
        raise ExpressionError("reference", f"unknown function {name}()")
    if name == "date_of":  # the date of a fact's value (a weight's date), a date operand
        if len(node.args) != 1 or not isinstance(node.args[0], ast.Name):
            raise ExpressionError("syntax", "date_of() takes the name of one fact")
        fact = node.args[0].id
        if unit_of_name(fact) is None or fact == "now":
            raise ExpressionError("reference", f"unknown name {fact!r}")
        key = (DATE_OF, fact)
        return (lambda lookup: lookup(key)), DATE
    args = [_node(a, unit_of_name) for a in node.args]
    if name in ("days_between", "calendar_days_between", "years_between"):
        if len(args) != 2 or any(u != DATE for _, u in args):
            raise ExpressionError("unit", f"{name}() takes two dates")
        (a, _), (b, _) = args
        if name == "days_between":
            return (lambda lookup: _apply2(_days, a(lookup), b(lookup))), units.unit_of("d")
        if name == "calendar_days_between":
            return (lambda lookup: _apply2(_calendar_days, a(lookup), b(lookup))), units.unit_of(
                "d"
            )
        return (lambda lookup: _apply2(_years, a(lookup), b(lookup))), units.unit_of("a")
    if not args:
        raise ExpressionError("syntax", f"{name}() needs arguments")
    for _, u in args:
        _no_date(u, f"{name}()")
    if name == "abs":
        if len(args) != 1:
            raise ExpressionError("syntax", "abs() takes one argument")
        fn, unit = args[0]
        return (lambda lookup: _apply(abs, fn(lookup))), unit
    first_unit = args[0][1]
    factors = [_same_dimension_factor(u, first_unit, ast.unparse(node)) for _, u in args]
    pick = min if name == "min" else max
    fns = [fn for fn, _ in args]

    def extreme(lookup):
        values = [fn(lookup) for fn in fns]
        if any(v is None for v in values):
            return None
        return pick(v * k for v, k in zip(values, factors, strict=True))

    return extreme, first_unit


def _same_dimension_factor(unit, target, text) -> float:
    try:
        return float((unit / target).to("dimensionless").magnitude)
    except pint.errors.DimensionalityError as exc:
        raise ExpressionError(
            "unit", f"{text!r} mixes {unit.units:~} and {target.units:~}"
        ) from exc


def _no_date(unit, where) -> None:
    if unit == DATE:
        raise ExpressionError("unit", f"a date cannot be used in {where}")


def _apply(fn, a):
    return None if a is None else fn(a)


def _apply2(fn, a, b):
    return None if a is None or b is None else fn(a, b)


def _as_datetime(value):
    return value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)


def _days(a, b) -> float:
    a, b = _as_datetime(a), _as_datetime(b)
    if (a.tzinfo is None) != (b.tzinfo is None):
        a, b = a.replace(tzinfo=None), b.replace(tzinfo=None)
    return (b - a).total_seconds() / 86400.0


def _calendar_days(a, b) -> float:
    """Whole calendar days from a to b, each date as written (in its own time-zone offset)."""
    a = a.date() if isinstance(a, datetime) else a
    b = b.date() if isinstance(b, datetime) else b
    return float((b - a).days)


def _years(a, b) -> float:
    a = a.date() if isinstance(a, datetime) else a
    b = b.date() if isinstance(b, datetime) else b
    years = b.year - a.year - ((b.month, b.day) < (a.month, a.day))
    return float(years)
