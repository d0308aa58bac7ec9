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


#: Time units written as words differ by language; symbols (kg, cm²/m², mg/L) are the same in both.
#: "a" is shown as an age (岁): in the packs a year unit is only used for the patient's age.
_LOCALE_ATOMS = {
    "zh-CN": {"a": "岁", "mo": "个月", "wk": "周", "d": "天", "h": "小时", "min": "分钟"},
}


@lru_cache(maxsize=512)
def display(code: str | None, locale: str = "en") -> str:
    """A readable UCUM code for texts: cm2/m2 → cm²/m², [lbf_av] → lbf, {score} → '';
    time units as words of the locale (d → days, 天)."""
    if not code:
        return ""
    text = _ANNOTATION.sub("", code).rstrip("./")  # mL/min/{1.73_m2} → mL/min
    words = _LOCALE_ATOMS.get(locale)
    if words and text in words:
        return words[text]
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


# ---- strict UCUM spelling for pack units (data units are read leniently, above) ---------------
_PREFIXES = ("Y", "Z", "E", "P", "T", "G", "M", "k", "h", "da", "d", "c", "m", "u", "n", "p", "f")
_METRIC = ("g", "m", "s", "L", "l", "mol", "N", "Pa", "J", "W", "cal", "eq", "U", "kat", "Hz", "V")
_OTHER = (
    "[lb_av]", "[lbf_av]", "[in_i]", "[ft_i]", "[oz_av]", "[iU]", "[IU]", "[degF]", "min", "h",
    "d", "wk", "mo", "a", "%", "Cel", "1", "kcal", "mm[Hg]", "kg", "ug", "mg",
)
# common spellings that are not UCUM, with the UCUM code meant
_MEANT = {
    "lb": "[lb_av]", "lbs": "[lb_av]", "pound": "[lb_av]", "pounds": "[lb_av]",
    "lbf": "[lbf_av]", "kgf": "kg", "kilogram": "kg", "kilograms": "kg", "kgs": "kg", "KG": "kg",
    "Kg": "kg", "gram": "g", "grams": "g", "gm": "g", "in": "[in_i]", "inch": "[in_i]",
    "inches": "[in_i]", "ft": "[ft_i]", "feet": "[ft_i]", "oz": "[oz_av]", "cms": "cm",
    "meter": "m", "meters": "m", "metre": "m", "year": "a", "years": "a", "yr": "a", "yrs": "a",
    "y": "a", "month": "mo", "months": "mo", "week": "wk", "weeks": "wk", "day": "d", "days": "d",
    "hour": "h", "hours": "h", "hr": "h", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "mins": "min", "minute": "min", "minutes": "min", "percent": "%", "pct": "%", "degC": "Cel",
    "°C": "Cel", "score": "{score}", "points": "{score}", "kg/m^2": "kg/m2", "kg/m²": "kg/m2",
    "cm^2/m^2": "cm2/m2", "cm²/m²": "cm2/m2", "cm^2": "cm2", "cm²": "cm2", "m^2": "m2",
    "mg/l": "mg/L", "g/l": "g/L", "mg/dl": "mg/dL", "g/dl": "g/dL", "kcal/day": "kcal/d",
    "g/day": "g/d", "g/kg/day": "g/kg/d", "kcal/kg/day": "kcal/kg/d", "m/sec": "m/s",
}
ACCEPTED = (
    "kg", "g", "[lb_av]", "[lbf_av]", "N", "cm", "m", "[in_i]", "cm2", "m2", "m/s", "s", "min",
    "h", "d", "wk", "mo", "a", "mg/L", "mg/dL", "g/L", "g/dL", "kg/m2", "cm2/m2", "g/d", "kcal/d",
    "g/kg/d", "kcal/kg/d", "%", "1", "{score}", "Cel",
)


def _ucum_atom(atom: str) -> bool:
    if atom in _OTHER or atom in _METRIC:
        return True
    return any(atom.startswith(p) and atom[len(p):] in _METRIC for p in _PREFIXES)


def ucum_problem(code: str) -> str | None:
    """Why `code` is not a UCUM unit as packs must write it (None when it is one): every term an
    atom of UCUM (kg, [lb_av], cm2, {score}, 10*3 …); 'did you mean' for common other spellings."""
    text = _ANNOTATION.sub("1", code.strip()) if code else ""
    ok = bool(text) and not text.startswith(("/", "."))
    if ok:
        for piece in re.split(r"[./]", text):
            match = _TERM.match(piece)
            if not match or not (
                _ucum_atom(match.group(1)) or re.fullmatch(r"10[*^][0-9]+", match.group(1))
            ):
                ok = False
                break
    if ok:
        try:
            parse(code)
        except UnitError:
            ok = False
    if ok:
        return None
    from difflib import get_close_matches

    meant = _MEANT.get(code.strip()) or _MEANT.get(code.strip().lower())
    close = [meant] if meant else get_close_matches(code.strip(), ACCEPTED, n=2, cutoff=0.6)
    message = f"{code!r} is not a UCUM unit"
    if close:
        return message + "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return message + " (write UCUM codes: kg, cm, [lb_av], mg/L, kg/m2, %, d, {score} …)"


def check_ucum(code: str) -> None:
    """Raise UnitError unless `code` is a UCUM unit (pack units: parameters and facts)."""
    problem = ucum_problem(code)
    if problem:
        raise UnitError(problem)
