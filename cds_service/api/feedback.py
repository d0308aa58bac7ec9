"""POST {base}/cds-services/{id}/feedback: store each outcome once, linked to the card sent."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Blueprint, current_app

from cds_service.api.http import json_response, read_json
from cds_service.api.services import caller, known_service
from cds_service.logs import log_event
from cds_service.protocol import ProtocolError, validate_feedback
from cds_service.store import FeedbackRejected

bp = Blueprint("feedback", __name__)


@bp.post("/cds-services/<service_id>/feedback")
def post_feedback(service_id: str):
    """Validate and store feedback idempotently, scoped to this service and caller: an entry
    links to a card only when this service sent it to this issuer (and tenant), and its
    outcomeTimestamp must lie between the card's sending and now (both with the clock skew)."""
    state = current_app.extensions["cds"]
    known_service(service_id)
    body = read_json()
    validate_feedback(body)
    issuer, tenant = caller()
    try:
        result = state.store.record_feedback(
            service_id, body["feedback"], state.clock(), issuer=issuer, tenant=tenant,
            clock_skew=timedelta(seconds=state.config["auth"]["clock_skew_seconds"]),
        )
    except FeedbackRejected as rejected:
        raise ProtocolError.single(400, "value", str(rejected), rejected.path) from None
    for entry in body["feedback"]:
        state.metrics.feedback.labels(outcome=entry["outcome"], result="received").inc()
    log_event(logging.INFO, "feedback stored", service=service_id, entries=len(body["feedback"]),
              stored=result.stored, duplicates=result.duplicates, unknown_cards=len(result.unknown_cards))
    return json_response({"stored": result.stored, "duplicates": result.duplicates})
