"""Fill CDS Hooks 2.0 prefetch templates ({{context.patientId}}, {{userPractitionerId}} …)."""

from __future__ import annotations

import re
from urllib.parse import quote

TOKEN = re.compile(r"\{\{\s*([A-Za-z.]+)\s*\}\}")


def tokens_in(template: str) -> list[str]:
    """The token names a template uses."""
    return TOKEN.findall(template)


def render_template(template: str, values: dict[str, str]) -> str | None:
    """The query with every token replaced (URL-escaped), or None when a token has no value."""
    missing = [name for name in tokens_in(template) if name not in values or _is_dot_segment(values[name])]
    if missing:  # a value "." or ".." would turn a read into a search of every patient
        return None
    return TOKEN.sub(lambda m: quote(values[m.group(1)], safe="/-."), template)


def _is_dot_segment(value: str) -> bool:
    return value.strip() in (".", "..")
