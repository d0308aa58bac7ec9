"""CDS Hooks 2.0 protocol: JSON Schemas, request/response validation, OperationOutcome errors."""

from cds_service.protocol.errors import ProtocolError, operation_outcome
from cds_service.protocol.validation import (
    schema_problems,
    validate_discovery,
    validate_feedback,
    validate_request,
    validate_response,
)

__all__ = [
    "ProtocolError",
    "operation_outcome",
    "schema_problems",
    "validate_discovery",
    "validate_feedback",
    "validate_request",
    "validate_response",
]
