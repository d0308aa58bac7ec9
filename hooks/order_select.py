"""order-select: the user selects orders from a pick list (CDS Hooks library 1.0.1, hookVersion 1.0.2)."""

from hooks._common import DRAFT_ORDERS, ENCOUNTER_ID, PATIENT_ID, REFERENCE, draft_order_resources, reference_of

HOOK = "order-select"
SERVICE_ID = "sarcopenia-order-select"
TITLE = "Cancer sarcopenia: risk at order selection"
DESCRIPTION = (
    "When chemotherapy (ATC L01 or RxNorm antineoplastic ingredients) or a surgical procedure is selected for "
    "a patient with low CT skeletal muscle index or sarcopenia, warns of toxicity / post-operative risk and "
    "suggests prehabilitation; with no muscle assessment on record, suggests screening before the first cycle."
)
USAGE = "Reads the selected draft orders (context.selections into context.draftOrders) and the patient's record as for patient-view."

PREFETCH_TOKENS = ("userId", "patientId", "encounterId")

CONTEXT_SCHEMA = {
    "type": "object",
    "required": ["userId", "patientId", "selections", "draftOrders"],
    "properties": {
        "userId": {"type": "string", "pattern": REFERENCE.replace("[A-Za-z]+", "(Practitioner|PractitionerRole)")},
        "patientId": PATIENT_ID,
        "encounterId": ENCOUNTER_ID,
        "selections": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": REFERENCE}},
        "draftOrders": DRAFT_ORDERS,
    },
}


def orders(context: dict) -> list[dict]:
    """The draft orders the user selected: selections point into draftOrders as 'Type/id'."""
    wanted = set(context.get("selections") or [])
    return [r for r in draft_order_resources(context) if reference_of(r) in wanted]


def problems(context: dict) -> list[tuple[str, str]]:
    """Every selection must name a resource inside draftOrders."""
    present = {reference_of(r) for r in draft_order_resources(context)}
    return [
        (f"$.context.selections[{i}]", f"$.context.selections[{i}]: '{sel}' is not in context.draftOrders")
        for i, sel in enumerate(context.get("selections") or [])
        if sel not in present
    ]
