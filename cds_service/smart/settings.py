"""The `smart` configuration section, read with defaults (one place for every key the launch uses)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cds_service.config import DEFAULTS

#: Every `smart.*` key with its default: the `smart` section of the service configuration.
SMART_DEFAULTS: dict[str, Any] = DEFAULTS["smart"]
DEFAULT_SCOPES: str = SMART_DEFAULTS["scopes"]


class SmartConfigError(ValueError):
    """A `smart.*` value that stops start-up; the message names the key."""


def _norm(url: str) -> str:
    return url.strip().rstrip("/")


@dataclass(frozen=True)
class SmartSettings:
    """The resolved `smart` section plus the service-wide values the launch needs."""

    enabled: bool
    client_id: str | None
    client_secret: str | None
    scopes: str
    allowed_issuers: tuple[str, ...]
    redirect_uri: str | None
    session_ttl_seconds: float
    http_timeout_seconds: float
    fhir_budget_seconds: float
    browser_binding: bool
    session_key_prefix: str
    base_url: str | None
    redis_url: str | None
    allow_http: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SmartSettings:
        section = {**SMART_DEFAULTS, **(config.get("smart") or {})}
        scopes = section["scopes"]
        if isinstance(scopes, (list, tuple)):
            scopes = " ".join(str(s) for s in scopes)
        base_url = config.get("base_url")
        base_url = _norm(base_url) if isinstance(base_url, str) and base_url else None
        redirect_uri = section["redirect_uri"] or (
            f"{base_url}/trend/callback" if base_url else None
        )
        settings = cls(
            enabled=bool(section["enabled"]),
            client_id=section["client_id"] or None,
            client_secret=section["client_secret"] or None,
            scopes=" ".join(str(scopes).split()),
            allowed_issuers=tuple(
                _norm(i) for i in section["allowed_issuers"] or () if isinstance(i, str)
            ),
            redirect_uri=redirect_uri,
            session_ttl_seconds=float(section["session_ttl_seconds"]),
            http_timeout_seconds=float(section["http_timeout_seconds"]),
            fhir_budget_seconds=float(section["fhir_budget_seconds"]),
            browser_binding=bool(section["browser_binding"]),
            session_key_prefix=str(section["session_key_prefix"]),
            base_url=base_url,
            redis_url=(config.get("redis") or {}).get("url") or None,
            allow_http=bool((config.get("fhir") or {}).get("allow_http", True)),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse a launch configuration that cannot work (only when smart.enabled)."""
        if not self.enabled:
            return
        if not self.client_id:
            raise SmartConfigError(
                "configuration key 'smart.client_id': required when smart.enabled is true"
            )
        if not self.redirect_uri:
            raise SmartConfigError(
                "configuration key 'smart.redirect_uri': set it, or set base_url "
                "(the default is {base_url}/trend/callback)"
            )
        if "launch" not in self.scopes.split():
            raise SmartConfigError(
                "configuration key 'smart.scopes': an EHR launch needs the 'launch' scope"
            )
        if self.session_ttl_seconds <= 0:
            raise SmartConfigError(
                "configuration key 'smart.session_ttl_seconds': must be greater than 0"
            )

    def issuer_allowed(self, iss: str) -> bool:
        return _norm(iss) in self.allowed_issuers
