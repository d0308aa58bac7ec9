"""The integrator's terminal client: `call` signs a CDS Hooks JWT, calls a running service and prints
the cards; `dev-key` makes a key pair and prints the `auth.issuers` entry that trusts it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import hooks as hook_registry

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_URL = "http://127.0.0.1:8080"
DEV_ISS = "https://ehr.example.org/dev-client"
KEY_FILE, JWKS_FILE = "cds-client-key.pem", "cds-client-jwks.json"


class CallError(Exception):
    """A call that cannot be made or was answered with an error (the message says which)."""


def add_call_commands(subparsers) -> None:
    """Add `call` and `dev-key` to the `sarcopenia-cds` sub-commands."""
    call = subparsers.add_parser("call", help="call a running service from the terminal, as an EHR would, and print the cards")
    call.add_argument("hook", choices=sorted(hook_registry.HOOKS), help="the hook to fire")
    source = call.add_mutually_exclusive_group(required=True)
    source.add_argument("--patient", metavar="FILE",
                        help="the patient's data sent as prefetch: a FHIR Bundle, a list of resources, or {resources, orders, context}")
    source.add_argument("--fhir-server", metavar="URL", help="let the service fetch the data from this FHIR server (with --patient-id)")
    call.add_argument("--patient-id", metavar="ID", help="the patient id (default: the Patient in --patient)")
    call.add_argument("--fhir-token", metavar="TOKEN", help="access token sent as fhirAuthorization with --fhir-server")
    call.add_argument("--orders", metavar="FILE", help="draft orders (a Bundle or a list) for order-select / order-sign")
    call.add_argument("--user", default="Practitioner/cli-user", help="context.userId (default Practitioner/cli-user)")
    call.add_argument("--url", default=os.environ.get("SARCOPENIA_CDS_URL", DEFAULT_URL),
                      help=f"the service's base URL as it knows itself (base_url; default {DEFAULT_URL})")
    call.add_argument("--key", metavar="KEY.pem", help="private key (EC P-384 or RSA) that signs the JWT; without it no JWT is sent")
    call.add_argument("--iss", default=DEV_ISS, help=f"JWT issuer registered in auth.issuers (default {DEV_ISS})")
    call.add_argument("--kid", help="JWT header kid (default: the key's RFC 7638 thumbprint, as dev-key prints it)")
    call.add_argument("--jku", help="JWT header jku: the URL of the issuer's JWK Set")
    call.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each answer (default 30)")
    call.add_argument("--json", action="store_true", help="print the service's JSON answer as it came")

    dev_key = subparsers.add_parser("dev-key", help="make an ES384 key pair for `call` and print the auth.issuers entry to paste")
    dev_key.add_argument("--out", required=True, metavar="DIR", help=f"folder for {KEY_FILE} (mode 0600) and {JWKS_FILE}")
    dev_key.add_argument("--iss", default=DEV_ISS, help=f"the issuer name to register (default {DEV_ISS})")


# ---- keys and tokens ------------------------------------------------------------------------

def _algorithm(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name != "secp384r1":
            raise CallError(f"the EC key is on {key.curve.name}; CDS Hooks asks for ES384 (P-384)")
        return "ES384"
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS384"
    raise CallError("the key must be an EC P-384 or an RSA private key")


def public_jwk(key: Any) -> dict[str, Any]:
    """The public JWK of a private key, with kid = its RFC 7638 thumbprint, alg and use."""
    import jwt
    from jwt.api_jwk import PyJWK

    alg = _algorithm(key)
    jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
    jwk["kid"] = _thumbprint(jwk)
    jwk.update({"alg": alg, "use": "sig"})
    PyJWK(jwk)  # a JWK PyJWT (and so the service) reads back
    return jwk


def _thumbprint(jwk: dict[str, Any]) -> str:
    import base64
    import hashlib

    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def load_key(path: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        return load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CallError(f"cannot read the private key {path}: {exc}") from None


def sign(key: Any, *, iss: str, aud: str, kid: str | None = None, jku: str | None = None,
         lifetime: int = 300) -> str:
    """A CDS Hooks 2.0 JWT: iss, sub (the client: iss here), aud = the endpoint URL, exp, iat, jti; kid (and jku) in the header."""
    import jwt

    now = int(time.time())
    claims = {"iss": iss, "sub": iss, "aud": aud, "exp": now + lifetime, "iat": now, "jti": str(uuid.uuid4())}
    headers = {"typ": "JWT", "kid": kid or public_jwk(key)["kid"]}
    if jku:
        headers["jku"] = jku
    return jwt.encode(claims, key, algorithm=_algorithm(key), headers=headers)


def dev_key(out: str, iss: str, stdout=sys.stdout) -> int:
    """Write an ES384 key pair into `out` and print the auth.issuers entry and the call to use it."""
    import yaml
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    key_path = folder / KEY_FILE
    if key_path.exists():
        print(f"sarcopenia-cds dev-key: {key_path} exists; not overwritten (delete it or choose another --out)", file=sys.stderr)
        return EXIT_USAGE
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    jwks = {"keys": [public_jwk(key)]}
    (folder / JWKS_FILE).write_text(json.dumps(jwks, indent=2) + "\n", encoding="utf-8")
    entry = {"auth": {"issuers": [{"iss": iss, "jwks": jwks, "algorithms": ["ES384"]}]}}
    print(f"# private key: {key_path} (keep it secret; for development and testing only)", file=stdout)
    print(f"# public JWK Set: {folder / JWKS_FILE}", file=stdout)
    print("# paste into the service's configuration file (or merge into its auth.issuers):", file=stdout)
    print(yaml.safe_dump(entry, sort_keys=False, width=1000).rstrip(), file=stdout)
    print(f"# then: sarcopenia-cds call patient-view --patient PATIENT.json --key {key_path} --iss {iss}", file=stdout)
    return EXIT_OK


# ---- the call ----------------------------------------------------------------------------------

def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CallError(f"cannot read {what} {path}: {exc}") from None


def _prefetch(resources: list[dict[str, Any]], templates: dict[str, str]) -> dict[str, Any]:
    """Fill each discovery prefetch key from the file's resources, as an EHR would (a read gives the
    resource, a search a searchset Bundle)."""
    from cds_service.pipeline import template_type

    prefetch: dict[str, Any] = {}
    for key, template in templates.items():
        matching = [r for r in resources if r.get("resourceType") == template_type(template)]
        if "?" not in template:
            prefetch[key] = matching[0] if matching else None
        else:
            prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(matching),
                             **({"entry": [{"resource": r} for r in matching]} if matching else {})}
    return prefetch


class Client:
    """HTTP to one service, each request with a JWT of its own for that endpoint when a key is given."""

    def __init__(self, url: str, key: Any, iss: str, kid: str | None, jku: str | None, timeout: float):
        import requests

        self.url, self.key, self.iss, self.kid, self.jku, self.timeout = url.rstrip("/"), key, iss, kid, jku, timeout
        self.http = requests.Session()

    def _headers(self, path: str) -> dict[str, str]:
        if self.key is None:
            return {}
        return {"Authorization": "Bearer " + sign(self.key, iss=self.iss, aud=self.url + path, kid=self.kid, jku=self.jku)}

    def request(self, method: str, path: str, body: Any = None) -> Any:
        import requests

        try:
            response = self.http.request(method, self.url + path, json=body, headers=self._headers(path), timeout=self.timeout)
        except requests.RequestException as exc:
            raise CallError(f"cannot reach {self.url}: {type(exc).__name__}: {str(exc)[:200]}") from None
        if response.status_code != 200:
            raise CallError(f"{method} {path} answered HTTP {response.status_code}: {_problem(response)}")
        try:
            return response.json()
        except ValueError:
            raise CallError(f"{method} {path} answered HTTP 200 but not JSON") from None


def _problem(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason
    issues = body.get("issue") if isinstance(body, dict) else None
    if isinstance(issues, list) and issues:
        text = "; ".join(str(i.get("diagnostics") or i.get("code")) for i in issues if isinstance(i, dict))
        if response.status_code == 401:
            text += " (give --key and --iss of an issuer registered in the service's auth.issuers; `sarcopenia-cds dev-key` makes one)"
        return text
    return json.dumps(body)[:300]


def build_request(args: argparse.Namespace, templates: dict[str, str]) -> dict[str, Any]:
    """The CDS Hooks request body for the command line's hook, patient and orders."""
    from cds_service.engine.explain import bundle_resources

    module = hook_registry.HOOKS[args.hook]
    resources: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    context: dict[str, Any] = {}
    if args.patient:
        try:
            resources, orders, context = bundle_resources(_read_json(args.patient, "the patient file"))
        except ValueError as exc:
            raise CallError(f"{args.patient}: {exc}") from None
    if args.orders:
        try:
            orders = bundle_resources(_read_json(args.orders, "the orders file"))[0]
        except ValueError as exc:
            raise CallError(f"{args.orders}: {exc}") from None
    patient_id = args.patient_id or context.get("patientId") or next(
        (r.get("id") for r in resources if r.get("resourceType") == "Patient"), None)
    if not patient_id:
        raise CallError("no patient id: give --patient-id, or a Patient resource in --patient")
    context = {**context, "userId": context.get("userId") or args.user, "patientId": patient_id}
    if "draftOrders" in module.CONTEXT_SCHEMA["required"]:
        if not orders and "draftOrders" not in context:
            raise CallError(f"{args.hook} needs draft orders: give --orders FILE (a Bundle or a list of MedicationRequest/ServiceRequest)")
        if orders:
            context["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                      "entry": [{"resource": r} for r in orders]}
        if "selections" in module.CONTEXT_SCHEMA["required"] and "selections" not in context:
            context["selections"] = [f"{e['resource']['resourceType']}/{e['resource'].get('id')}"
                                     for e in context["draftOrders"].get("entry", [])]
    body: dict[str, Any] = {"hook": args.hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if args.fhir_server:
        body["fhirServer"] = args.fhir_server.rstrip("/")
        if args.fhir_token:
            body["fhirAuthorization"] = {"access_token": args.fhir_token, "token_type": "Bearer", "expires_in": 300,
                                         "scope": "patient/*.read", "subject": args.user, "patient": patient_id}
    else:
        body["prefetch"] = _prefetch(resources, templates)
    return body


def call(args: argparse.Namespace, stdout=sys.stdout) -> int:
    """Discovery, then the hook's service; prints the cards (or the JSON)."""
    key = load_key(args.key) if args.key else None
    client = Client(args.url, key, args.iss, args.kid, args.jku, args.timeout)
    module = hook_registry.HOOKS[args.hook]
    services = client.request("GET", "/cds-services").get("services", [])
    service = next((s for s in services if s.get("hook") == args.hook), None)
    if service is None:
        raise CallError(f"the service at {args.url} offers no {args.hook} service (discovery lists "
                        f"{', '.join(s.get('id', '?') for s in services) or 'none'})")
    body = build_request(args, service.get("prefetch") or {})
    answer = client.request("POST", f"/cds-services/{service['id']}", body)
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False), file=stdout)
    else:
        print_cards(answer, service["id"], module.HOOK, stdout)
    return EXIT_OK


def print_cards(answer: dict[str, Any], service_id: str, hook: str, stdout=sys.stdout) -> None:
    """The cards as a terminal shows them: indicator, summary, detail (Markdown), suggestions, links."""
    from rich.console import Console, Group
    from rich.markdown import Markdown
    from rich.panel import Panel
    from rich.text import Text

    console = Console(file=stdout, width=min(110, max(60, _columns())), highlight=False,
                      force_terminal=stdout.isatty() if hasattr(stdout, "isatty") else False)
    cards = answer.get("cards") or []
    console.print(f"{service_id} ({hook}): {len(cards)} card{'s' if len(cards) != 1 else ''}")
    colours = {"critical": "red", "warning": "yellow", "info": "blue"}
    for card in cards:
        parts: list[Any] = [Text(card.get("summary", ""), style="bold")]
        if card.get("detail"):
            parts.append(Markdown(card["detail"]))
        for suggestion in card.get("suggestions") or []:
            parts.append(Text(f"suggestion: {suggestion.get('label', '')}"))
        for link in card.get("links") or []:
            parts.append(Text(f"link: {link.get('label', '')} <{link.get('url', '')}>"))
        source = card.get("source") or {}
        if source.get("label"):
            parts.append(Text(f"source: {source['label']}" + (f" <{source['url']}>" if source.get("url") else ""),
                              style="dim"))
        indicator = card.get("indicator", "info")
        console.print(Panel(Group(*parts), title=indicator, title_align="left",
                            border_style=colours.get(indicator, "white")))
    for action in answer.get("systemActions") or []:
        console.print(f"system action: {action.get('type')} {action.get('description', '')}")


def _columns() -> int:
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


def run_call_commands(args: argparse.Namespace) -> int:
    """Entry point of `call` and `dev-key` (errors: one line on stderr, exit 1)."""
    try:
        if args.command == "dev-key":
            return dev_key(args.out, args.iss)
        if args.fhir_server and not args.patient_id:
            print("sarcopenia-cds call: --fhir-server needs --patient-id", file=sys.stderr)
            return EXIT_USAGE
        return call(args)
    except CallError as exc:
        print(f"sarcopenia-cds {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
