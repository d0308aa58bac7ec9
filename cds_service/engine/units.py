"""UCUM codes mapped onto pint units, with conversion factors computed once and cached."""

from __future__ import annotations

import re
from functools import lru_cache

import pint

ureg = pint.UnitRegistry()
Q_ = ureg.Quantity

# UCUM atoms whose spelling differs from pint's (the rest, e.g. kg, mg, dL, m, s, are shared).
_ATOMS = {
    "[lb_av]": "pound",
    "[lbf_av]": "force_pound",
    "[in_i]": "inch",
    "[ft_i]": "foot",
    "[oz_av]": "ounce",
    "a": "year",
    "mo": "month",
    "wk": "week",
    "d": "day",
    "h": "hour",
    "min": "minute",
    "s": "second",
    "L": "liter",
    "dL": "deciliter",
    "mL": "milliliter",
    "%": "percent",
    "Cel": "degC",
    "kcal": "kilocalorie",
    "cal": "calorie",
    "N": "newton",
    "1": "dimensionless",
}
_ANNOTATION = re.compile(r"\{[^{}]*\}")
_TERM = re.compile(r"^(\[[^\]]+\]|[A-Za-z%]+|1|10\*[0-9]+|10\^[0-9]+)(-?[0-9]+)?$")


class UnitError(ValueError):
    """A unit that cannot be read, or two units that cannot be converted."""


@lru_cache(maxsize=512)
def parse(code: str) -> pint.Unit:
    """Turn a UCUM code such as 'g/kg/d', 'cm2/m2', '[lbf_av]' or '{score}' into a pint unit."""
    text = _ANNOTATION.sub("1", code.strip()) if code else ""
    if not text:
        raise UnitError(f"empty unit {code!r}")
    result = ureg.dimensionless
    for op, term in _split(text):
        unit = _term(term, code)
        result = result * unit if op == "." else result / unit
    return result


def _split(text: str):
    parts = re.split(r"([./])", text)
    if parts[0] == "":
        raise UnitError(f"unit {text!r} starts with an operator")
    yield ".", parts[0]
    for i in range(1, len(parts), 2):
        yield parts[i], parts[i + 1]


def _term(term: str, code: str) -> pint.Unit:
    match = _TERM.match(term)
    if not match:
        raise UnitError(f"unknown unit {code!r}")
    atom, exponent = match.group(1), int(match.group(2) or 1)
    if "*" in atom or "^" in atom:  # UCUM powers of ten: 10*9 is base 10, exponent 9
        base, power = re.split(r"[*^]", atom)
        return ureg.dimensionless * (int(base) ** int(power)) ** exponent  # type: ignore[operator]
    name = _ATOMS.get(atom, atom)
    try:
        unit = ureg.Unit(name)
    except (pint.errors.UndefinedUnitError, ValueError, AttributeError, TypeError) as exc:
        raise UnitError(f"unknown unit {code!r} ({atom!r})") from exc
    return unit**exponent


def check(code: str) -> None:
    """Raise UnitError if the code is not a readable unit."""
    parse(code)


def factor(from_code: str, to_code: str) -> float:
    """Multiplier taking a magnitude in `from_code` to `to_code`; force→mass via kilogram-force."""
    result = _cached_factor(from_code, to_code)
    if isinstance(result, str):
        raise UnitError(result)
    return result


@lru_cache(maxsize=4096)
def _cached_factor(from_code: str, to_code: str) -> float | str:
    """The factor, or the error message (failures are cached too: data repeats its bad units)."""
    try:
        return _factor(from_code, to_code)
    except UnitError as exc:
        return str(exc)


def _factor(from_code: str, to_code: str) -> float:
    src, dst = parse(from_code), parse(to_code)
    if isinstance(src, pint.Quantity) or isinstance(dst, pint.Quantity):
        # a power of ten (10*3/uL, 10*9/L) makes a Quantity: its magnitude is part of the unit
        try:
            return float((_quantity(src) / _quantity(dst)).to("dimensionless").magnitude)
        except pint.errors.DimensionalityError:
            raise UnitError(f"cannot convert {from_code!r} to {to_code!r}") from None
    try:
        return float(Q_(1.0, src).to(dst).magnitude)
    except pint.errors.DimensionalityError:
        pass
    if _dim(src) == ureg.newton.dimensionality and _dim(dst) == ureg.kilogram.dimensionality:
        return float(
            Q_(1.0, src).to(ureg.kilogram_force).magnitude
            * Q_(1.0, ureg.kilogram).to(dst).magnitude
        )
    raise UnitError(f"cannot convert {from_code!r} to {to_code!r}")


def _quantity(unit):
    return unit if isinstance(unit, pint.Quantity) else Q_(1.0, unit)


def _dim(unit):
    return unit.dimensionality


def convertible(from_code: str, to_code: str) -> bool:
    try:
        factor(from_code, to_code)
        return True
    except UnitError:
        return False


def unit_of(code: str) -> pint.Quantity:
    """One of the unit, as a pint Quantity (for dimensional analysis of expressions)."""
    unit = parse(code)
    return unit if isinstance(unit, pint.Quantity) else Q_(1.0, unit)


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_DISPLAY_ATOMS = {
    "[lb_av]": "lb",
    "[lbf_av]": "lbf",
    "[in_i]": "in",
    "[ft_i]": "ft",
    "[oz_av]": "oz",
    "a": "years",
    "mo": "months",
    "wk": "weeks",
    "d": "days",
    "Cel": "°C",
    "1": "",
}


@lru_cache(maxsize=512)
def display(code: str | None) -> str:
    """A readable UCUM code for texts: cm2/m2 → cm²/m², [lbf_av] → lbf, {score} → ''."""
    if not code:
        return ""
    text = _ANNOTATION.sub("", code).rstrip("./")  # mL/min/{1.73_m2} → mL/min
    if text in _DISPLAY_ATOMS:
        return _DISPLAY_ATOMS[text]
    out = []
    for piece in re.split(r"([./])", text):
        if piece in ("", ".", "/"):
            out.append({"": "", ".": "·", "/": "/"}[piece])
            continue
        match = _TERM.match(piece)
        if not match:
            out.append(piece)
            continue
        atom, exponent = match.group(1), match.group(2)
        atom = {"[lb_av]": "lb", "[lbf_av]": "lbf", "[in_i]": "in", "[ft_i]": "ft"}.get(atom, atom)
        out.append(atom + (exponent.translate(_SUPERSCRIPT) if exponent else ""))
    return "".join(out)
