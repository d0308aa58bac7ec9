"""Text templates: `{{name}}` / `{{name.attr}}` variables, parsed once, rendered per card."""

from __future__ import annotations

import re
from collections.abc import Callable

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*\}\}")


class Template:
    """A compiled text: literal pieces and variable names alternate."""

    __slots__ = ("pieces", "text", "variables")

    def __init__(self, text: str):
        self.text = text
        self.pieces = VARIABLE.split(text)  # even indexes literal, odd indexes variable names
        self.variables = self.pieces[1::2]

    def render(self, resolve: Callable[[str], str]) -> str:
        if not self.variables:
            return self.text
        out = []
        for index, piece in enumerate(self.pieces):
            out.append(resolve(piece) if index % 2 else piece)
        return "".join(out)

    def longest(self, longest_of: Callable[[str], int]) -> int:
        """Upper bound of the rendered length, given the longest rendering of each variable."""
        literal = sum(len(p) for p in self.pieces[0::2])
        return literal + sum(longest_of(v) for v in self.variables)


def variables_in(text: str) -> list[str]:
    return VARIABLE.findall(text)


def has_unclosed(text: str) -> bool:
    """True if `{{` appears without being part of a well-formed variable."""
    return "{{" in VARIABLE.sub("", text) or "}}" in VARIABLE.sub("", text)
