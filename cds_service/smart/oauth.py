"""The OAuth side of a SMART EHR launch: the issuer's smart-configuration, PKCE, the authorize
redirect and the code-for-token exchange. Errors are `LaunchError`s whose text is safe to show."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

#: an OAuth error code as it may be shown (RFC 6749 §5.2: %x20-21 / %x23-5B / %x5D-7E; we keep it short)
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
#: a FHIR id (R4: [A-Za-z0-9\-\.]{1,64})
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class LaunchError(Exception):
    """A launch that cannot go on: `status` for the page, `message` safe to show, `reason` for the log."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


@dataclass(frozen=True)
class SmartConfiguration:
    authorization_endpoint: str
    token_endpoint: str
    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    patient: str
    scope: str | None
    app_context: str | None


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy or netrc credentials from the environment
    return session


def check_url(url: Any, what: str, allow_http: bool) -> str:
    """An absolute http(s) URL (https only unless allow_http), or a LaunchError."""
    if not isinstance(url, str):
        raise LaunchError(502, f"the EHR's SMART configuration has no {what}", f"{what} missing")
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme.lower() not in schemes or not parts.netloc:
        raise LaunchError(
            502, f"the EHR's {what} is not an {' or '.join(schemes)} URL", f"{what} scheme"
        )
    return url


def discover(iss: str, timeout: float, allow_http: bool) -> SmartConfiguration:
    """GET {iss}/.well-known/smart-configuration (no redirects followed)."""
    url = iss.rstrip("/") + "/.well-known/smart-configuration"
    try:
        with _session() as session:
            response = session.get(
                url, headers={"Accept": "application/json"}, timeout=timeout, allow_redirects=False
            )
    except requests.exceptions.Timeout:
        raise LaunchError(
            502, "the EHR's SMART configuration did not arrive in time", "discovery timeout"
        ) from None
    except requests.exceptions.RequestException as exc:
        raise LaunchError(
            502,
            "the EHR's SMART configuration could not be read",
            f"discovery {type(exc).__name__}",
        ) from None
    if response.status_code != 200:
        raise LaunchError(
            502,
            f"the EHR's SMART configuration answered HTTP {response.status_code}",
            f"discovery HTTP {response.status_code}",
        )
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise LaunchError(
            502, "the EHR's SMART configuration is not a JSON object", "discovery not JSON"
        )
    methods = data.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        raise LaunchError(
            502, "the EHR does not support PKCE with S256, which this app requires", "no S256"
        )
    capabilities = data.get("capabilities")
    return SmartConfiguration(
        authorization_endpoint=check_url(
            data.get("authorization_endpoint"), "authorization_endpoint", allow_http
        ),
        token_endpoint=check_url(data.get("token_endpoint"), "token_endpoint", allow_http),
        capabilities=tuple(c for c in capabilities if isinstance(c, str))
        if isinstance(capabilities, list)
        else (),
    )


def new_state() -> str:
    return secrets.token_urlsafe(32)


def new_verifier() -> str:
    """A PKCE code_verifier: 86 characters of [A-Za-z0-9_-] (RFC 7636 wants 43 to 128)."""
    return secrets.token_urlsafe(64)


def challenge_of(verifier: str) -> str:
    """The S256 code_challenge: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(
    endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str,
    state: str,
    aud: str,
    launch: str,
    code_challenge: str,
) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "aud": aud,
        "launch": launch,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    return endpoint + ("&" if urlsplit(endpoint).query else "?") + urlencode(params)


def exchange_code(
    token_endpoint: str,
    *,
    code: str,
    redirect_uri: str,
    verifier: str,
    client_id: str,
    client_secret: str | None,
    timeout: float,
) -> TokenResponse:
    """POST the code to the token endpoint: public client (client_id in the body) or, with a secret,
    confidential client with client_secret_basic."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    auth = None
    if client_secret:
        auth = (client_id, client_secret)  # requests sends HTTP Basic
    else:
        form["client_id"] = client_id
    try:
        with _session() as session:
            response = session.post(
                token_endpoint,
                data=form,
                auth=auth,
                timeout=timeout,
                headers={"Accept": "application/json"},
                allow_redirects=False,
            )
    except requests.exceptions.Timeout:
        raise LaunchError(
            502, "the EHR's token endpoint did not answer in time", "token timeout"
        ) from None
    except requests.exceptions.RequestException as exc:
        raise LaunchError(
            502, "the EHR's token endpoint could not be reached", f"token {type(exc).__name__}"
        ) from None
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code != 200:
        error = data.get("error") if isinstance(data, dict) else None
        code_text = error if isinstance(error, str) and _ERROR_CODE.match(error) else None
        detail = f" ({code_text})" if code_text else ""
        raise LaunchError(
            502,
            f"the EHR's token endpoint refused the authorization (HTTP "
            f"{response.status_code}{detail})",
            f"token HTTP {response.status_code} {code_text or ''}".strip(),
        )
    if not isinstance(data, dict):
        raise LaunchError(
            502, "the EHR's token endpoint answered something that is not JSON", "token not JSON"
        )
    token = data.get("access_token")
    token_type = data.get("token_type")
    if not isinstance(token, str) or not token:
        raise LaunchError(502, "the EHR's token response has no access_token", "no access_token")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise LaunchError(502, "the EHR's token response is not a Bearer token", "token_type")
    patient = data.get("patient")
    if not isinstance(patient, str) or not FHIR_ID.match(patient):
        raise LaunchError(
            502,
            "the EHR did not name a patient in the launch context (token response "
            "'patient'); open the trend from a patient's chart",
            "no patient",
        )
    scope = data.get("scope") if isinstance(data.get("scope"), str) else None
    app_context = data.get("appContext") if isinstance(data.get("appContext"), str) else None
    return TokenResponse(token, patient, scope, app_context)


def app_context_patient(app_context: str | None) -> str | None:
    """The patient named by a CDS Hooks appContext `patient=<id>` (a hint only)."""
    if not app_context:
        return None
    for part in app_context.split("&"):
        key, _, value = part.partition("=")
        if key.strip() == "patient" and value.strip():
            return value.strip()
    return None
