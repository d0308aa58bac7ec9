"""Normalised comparison of the JWT ``aud`` with the endpoint URL."""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SLASHES = re.compile(r"/{2,}")


@lru_cache(maxsize=1024)  # the same few audiences come with every call; urlsplit is not free
def normalise_url(url: str) -> str | None:
    """Lower-case scheme and host, drop default ports, repeated and trailing slashes; None if unusable.

    (`…/cds-services//id`, what a client calls after a discovery URL typed with a slash, is the
    same endpoint as `…/cds-services/id`: the service routes both there.)"""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if parts.username is not None or parts.password is not None:
        return None
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _SLASHES.sub("/", parts.path).rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{scheme}://{netloc}{path}{query}{fragment}"


def expected_audience(base_url: str, endpoint_path: str) -> str | None:
    """The normalised URL a token for ``endpoint_path`` must name as its audience."""
    return normalise_url(base_url.rstrip("/") + "/" + endpoint_path.lstrip("/"))


def audience_matches(aud: object, expected: str | None, extra: frozenset[str] = frozenset()) -> bool:
    """True when ``aud`` (a string or an array of strings) names ``expected``, or one of the
    issuer's configured ``extra`` audiences (exact, or as the same normalised URL)."""
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or not values:
        return False
    for value in values:
        if not isinstance(value, str):
            continue
        normal = normalise_url(value)
        if expected is not None and normal == expected:
            return True
        if extra and (value in extra or (normal is not None and normal in extra)):
            return True
    return False
