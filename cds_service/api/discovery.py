"""GET {base}/cds-services: one service per hook, prefetch templates from the rule packs."""

from __future__ import annotations

from flask import Blueprint, current_app

import hooks as hook_registry
from cds_service.api.http import json_response

bp = Blueprint("discovery", __name__)


def discovery_document(ruleset) -> dict:
    """The discovery response for the active rule set."""
    services = []
    for hook in hook_registry.HOOKS.values():
        entry = {
            "hook": hook.HOOK,
            "title": hook.TITLE,
            "description": hook.DESCRIPTION,
            "id": hook.SERVICE_ID,
            "usageRequirements": hook.USAGE,
        }
        templates = ruleset.prefetch_templates(hook.HOOK)
        if templates:
            entry["prefetch"] = dict(templates)
        services.append(entry)
    return {"services": services}


@bp.get("/cds-services")
def discovery():
    """The discovery document (lists services, never patient data)."""
    state = current_app.extensions["cds"]
    return json_response(discovery_document(state.rules.current))
