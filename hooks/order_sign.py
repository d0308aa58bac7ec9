"""order-sign: the user is ready to sign orders (CDS Hooks library 1.0.1, hookVersion 1.1.0)."""

from hooks._common import DRAFT_ORDERS, ENCOUNTER_ID, PATIENT_ID, REFERENCE, draft_order_resources

HOOK = "order-sign"
SERVICE_ID = "sarcopenia-order-sign"
TITLE = "Cancer sarcopenia: risk at order signing"
DESCRIPTION = (
    "Before chemotherapy (ATC L01 or RxNorm antineoplastic ingredients) or a surgical procedure is signed for "
    "a patient with low CT skeletal muscle index or sarcopenia, warns of toxicity / post-operative risk and "
    "suggests prehabilitation; with no muscle assessment on record, suggests screening before the first cycle."
)
USAGE = "Reads every order in context.draftOrders (draft, or revised orders being re-signed) and the patient's record as for patient-view."

PREFETCH_TOKENS = ("userId", "patientId", "encounterId")

CONTEXT_SCHEMA = {
    "type": "object",
    "required": ["userId", "patientId", "draftOrders"],
    "properties": {
        "userId": {"type": "string", "pattern": REFERENCE.replace("[A-Za-z]+", "(Practitioner|PractitionerRole)")},
        "patientId": PATIENT_ID,
        "encounterId": ENCOUNTER_ID,
        "draftOrders": DRAFT_ORDERS,
    },
}


def orders(context: dict) -> list[dict]:
    """Every order being signed."""
    return draft_order_resources(context)


def problems(context: dict) -> list[tuple[str, str]]:
    """No checks beyond the schema."""
    return []
