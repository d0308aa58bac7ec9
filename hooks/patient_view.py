"""patient-view: the user opens a patient's record (CDS Hooks library 1.0.1, maturity 5)."""

from hooks._common import ENCOUNTER_ID, PATIENT_ID, REFERENCE

HOOK = "patient-view"
SERVICE_ID = "sarcopenia-patient-view"
TITLE = "Cancer sarcopenia: muscle status"
DESCRIPTION = (
    "For a patient with active cancer, reports the muscle status (screening due, CT available for L3 "
    "body composition, EWGSOP2 / AWGS 2019 sarcopenia, low CT skeletal muscle index, sarcopenic obesity, "
    "cachexia, systemic inflammation) with its evidence, and suggests referrals."
)
USAGE = (
    "Needs the patient's Conditions, Observations (weight, height, grip, gait, chair stand, CT L3 muscle, "
    "SARC-F, calf circumference, CRP, albumin, ECOG), ImagingStudies and ServiceRequests by prefetch or "
    "through fhirServer + fhirAuthorization (patient/*.read)."
)

#: context fields CDS Hooks allows as prefetch tokens for this hook
PREFETCH_TOKENS = ("userId", "patientId", "encounterId")

CONTEXT_SCHEMA = {
    "type": "object",
    "required": ["userId", "patientId"],
    "properties": {
        "userId": {"type": "string", "pattern": REFERENCE.replace("[A-Za-z]+", "(Practitioner|PractitionerRole|Patient|RelatedPerson)")},
        "patientId": PATIENT_ID,
        "encounterId": ENCOUNTER_ID,
    },
}


def orders(context: dict) -> list[dict]:
    """patient-view carries no orders."""
    return []


def problems(context: dict) -> list[tuple[str, str]]:
    """Checks beyond the schema, as (json path, message); none for this hook."""
    return []
