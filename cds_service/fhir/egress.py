"""Where the service may send a FHIR call: https only (unless `fhir.allow_http`), an issuer's
configured `fhir_servers` only, and otherwise no loopback, link-local or private address.

The address check runs where the socket is opened: the host is resolved once, every address it
resolves to is checked, and the connection goes to a checked address (pinned), so a name that
resolves to a public address for a check and to 127.0.0.1 for the connection (DNS rebinding)
cannot slip through. Every refusal looks, to the caller, exactly like a server that cannot be
reached (`UNREACHABLE`), so `fhirServer` cannot be used to map which internal ports are open;
the operator's log says which rule refused.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.poolmanager import PoolManager

from cds_service.auth.audience import normalise_url

log = logging.getLogger("cds_service.fhir")

#: the one message for every refused call and every failed connection
UNREACHABLE = "the FHIR server could not be reached or closed the connection"


class EgressRefused(Exception):
    """A FHIR call the egress policy does not send; ``reason`` is for the log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(UNREACHABLE)
        self.reason = reason


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast address (never loopback, link-local, private,
    shared, reserved, multicast or unspecified; an IPv4-mapped IPv6 address counts as its IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class EgressPolicy:
    """The configured rules for outgoing FHIR calls (from `fhir` and `auth.issuers`)."""

    def __init__(self, fhir: Mapping[str, Any], issuers: Iterable[Mapping[str, Any]] = (),
                 trusted: Iterable[str] = ()) -> None:
        """``trusted``: other FHIR base URLs an operator configured (the SMART allowed issuers),
        called wherever they are, like the issuers' ``fhir_servers``."""
        self.allow_http = bool(fhir.get("allow_http", True))
        self.allow_private = bool(fhir.get("allow_private_addresses", False))
        self.issuer_servers: dict[str, frozenset[str]] = {}
        for issuer in issuers or ():
            servers = frozenset(filter(None, (normalise_url(s) for s in issuer.get("fhir_servers") or ())))
            if servers:
                self.issuer_servers[str(issuer.get("iss"))] = servers
        self.configured: frozenset[str] = frozenset(filter(None, map(normalise_url, trusted))).union(
            *self.issuer_servers.values())

    def server_for(self, fhir_server: Any, iss: str | None) -> str | None:
        """The `fhirServer` of a call from issuer `iss`, or None when the issuer lists its
        servers and this is not one of them (the call then goes on as if none were given)."""
        if not isinstance(fhir_server, str):
            return None
        listed = self.issuer_servers.get(iss or "")
        if listed is not None and normalise_url(fhir_server) not in listed:
            log.warning("fhirServer not among the issuer's fhir_servers; not called",
                        extra={"issuer": iss, "host": _host(fhir_server)})
            return None
        return fhir_server

    def check_url(self, url: str) -> None:
        """Raise EgressRefused for a URL this policy never calls (scheme)."""
        scheme = urlsplit(url).scheme.lower()
        if scheme != "https" and not (scheme == "http" and self.allow_http):
            raise _refused("http is not allowed (fhir.allow_http: false)" if scheme == "http"
                           else f"scheme {scheme or 'none'!r} is not allowed", url)

    def guards_addresses(self, server: str) -> bool:
        """True when connections for `server` must go to public addresses only: always, unless
        `fhir.allow_private_addresses` or the server is one an operator listed for an issuer."""
        return not self.allow_private and normalise_url(server) not in self.configured

    @staticmethod
    def session(guarded: bool) -> requests.Session:
        """A new requests session, connecting to public addresses only when ``guarded``."""
        session = requests.Session()
        session.trust_env = False  # no proxy from the environment: the check is on what we connect to
        if guarded:
            adapter = GuardedAdapter()
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        return session


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _refused(reason: str, url_or_host: str) -> EgressRefused:
    host = _host(url_or_host) if "://" in url_or_host else url_or_host
    log.warning("FHIR call refused by the egress policy", extra={"reason": reason, "host": host})
    return EgressRefused(reason)


def public_addresses(host: str, port: int) -> list[tuple[Any, ...]]:
    """getaddrinfo for (host, port), or EgressRefused when any resolved address is not public
    (a name that also resolves to an internal address is refused as a whole)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _refused(f"the host does not resolve ({type(exc).__name__})", host) from None
    bad = sorted({info[4][0] for info in infos if not is_public_address(info[4][0])})
    if not infos or bad:
        raise _refused("the host resolves to a loopback, link-local or private address "
                       "(fhir.allow_private_addresses: false)", host)
    return infos


class _GuardedConnectionMixin:
    """Opens the socket to a checked address of the host (resolved once, here)."""

    def _new_conn(self):  # type: ignore[no-untyped-def]
        try:
            infos = public_addresses(self._dns_host, self.port)  # type: ignore[attr-defined]
        except EgressRefused as exc:
            raise NewConnectionError(self, UNREACHABLE) from exc  # type: ignore[arg-type]
        error: OSError | None = None
        timeout = self.timeout  # type: ignore[attr-defined]
        for family, kind, proto, _name, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if isinstance(timeout, (int, float)):  # else urllib3's "default" sentinel or None
                    sock.settimeout(timeout)
                sock.connect(address)
                return sock
            except TimeoutError as exc:
                sock.close()
                raise ConnectTimeoutError(self, UNREACHABLE) from exc
            except OSError as exc:
                sock.close()
                error = exc
        raise NewConnectionError(self, UNREACHABLE) from error  # type: ignore[arg-type]


class GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    """An HTTP connection to public addresses only."""


class GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    """An HTTPS connection to public addresses only (TLS still checks the host name)."""


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """A requests adapter whose connections are opened by the guarded connection classes."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        self.poolmanager = PoolManager(num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
