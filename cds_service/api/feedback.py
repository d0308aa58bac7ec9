"""POST {base}/cds-services/{id}/feedback: store each outcome once, linked to the card sent."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app

from cds_service.api.http import json_response, read_json
from cds_service.api.services import known_service
from cds_service.logs import log_event
from cds_service.protocol import validate_feedback

bp = Blueprint("feedback", __name__)


@bp.post("/cds-services/<service_id>/feedback")
def post_feedback(service_id: str):
    """Validate and store feedback idempotently."""
    state = current_app.extensions["cds"]
    known_service(service_id)
    body = read_json()
    validate_feedback(body)
    result = state.store.record_feedback(service_id, body["feedback"], state.clock())
    for entry in body["feedback"]:
        state.metrics.feedback.labels(outcome=entry["outcome"], result="received").inc()
    log_event(logging.INFO, "feedback stored", service=service_id, entries=len(body["feedback"]),
              stored=result.stored, duplicates=result.duplicates, unknown_cards=len(result.unknown_cards))
    return json_response({"stored": result.stored, "duplicates": result.duplicates})
