"""The CDS hooks this service answers: one module per hook, and the registry of them."""

from __future__ import annotations

from types import ModuleType

from hooks import order_select, order_sign, patient_view

#: hook name → the module that describes it
HOOKS: dict[str, ModuleType] = {m.HOOK: m for m in (patient_view, order_select, order_sign)}

#: service id → hook name (one service per hook)
SERVICES: dict[str, str] = {m.SERVICE_ID: m.HOOK for m in HOOKS.values()}

#: user-identifier tokens CDS Hooks 2.0 allows besides context fields, and the resource type behind each
USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


def token_values(hook: ModuleType, context: dict) -> dict[str, str]:
    """The value of every prefetch token this hook allows, for this request's context."""
    values = {f"context.{name}": str(context[name]) for name in hook.PREFETCH_TOKENS if isinstance(context.get(name), str)}
    user = context.get("userId")
    if isinstance(user, str) and "/" in user:
        kind, _, ident = user.partition("/")
        for token, resource_type in USER_TOKENS.items():
            if kind == resource_type and ident:
                values[token] = ident
    return values
