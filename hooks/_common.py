"""Pieces of context schema shared by the hooks (CDS Hooks library 1.0.1)."""

REFERENCE = r"^[A-Za-z]+/[A-Za-z0-9\-\.]{1,64}$"

#: a FHIR id (R4: [A-Za-z0-9\-\.]{1,64}) that is not "." or "..", which would make
#: {fhirServer}/Patient/{{context.patientId}} name the Patient endpoint itself or its parent
FHIR_ID = {"type": "string", "pattern": r"^[A-Za-z0-9\-\.]{1,64}$", "not": {"type": "string", "pattern": r"^\.{1,2}$",
                                                                          "description": "'.' and '..' are not FHIR ids"}}
PATIENT_ID = FHIR_ID
ENCOUNTER_ID = FHIR_ID

DRAFT_ORDERS = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {
        "resourceType": {"const": "Bundle"},
        "entry": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["resource"],
                "properties": {"resource": {"type": "object", "required": ["resourceType"]}},
            },
        },
    },
}


def draft_order_resources(context: dict) -> list[dict]:
    """The resources inside context.draftOrders (a Bundle of draft requests)."""
    bundle = context.get("draftOrders") or {}
    return [e["resource"] for e in bundle.get("entry", []) if isinstance(e, dict) and isinstance(e.get("resource"), dict)]


def reference_of(resource: dict) -> str:
    """'Type/id' of a resource."""
    return f"{resource.get('resourceType')}/{resource.get('id')}"
