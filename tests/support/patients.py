"""Small synthetic patients for protocol tests, dated relative to the fixed test clock (2026-11-28)."""

from __future__ import annotations

from typing import Any

LOINC = "http://loinc.org"
MEASURE = "https://sarcopenia-cds.org/CodeSystem/measure"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"


def _obs(ident: str, system: str, code: str, value: float, unit: str, when: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": ident, "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/sev-1"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
        **extra,
    }


def severe_sarcopenia() -> list[dict[str, Any]]:
    """Synthetic woman, 68, pancreatic cancer, severe sarcopenia with cachexia.

    Hand computation (EWGSOP2, Martin 2013):
      grip 14.0 kg < 16 kg (women)                  → low strength
      L3 SMI = 92.4 cm² / 1.62² m² = 35.21 < 41      → low muscle (CT surrogate)
      gait 0.6 m/s ≤ 0.8                            → low performance  ⇒ severe sarcopenia
      weight 58.0 → 52.0 kg over 180 days = 10.34 % > 5 % ⇒ cancer cachexia (Fearon 2011)
    """
    return [
        {"resourceType": "Patient", "id": "sev-1", "gender": "female", "birthDate": "1958-03-14",
         "name": [{"family": "Synthetic", "given": ["Severe"]}]},
        {"resourceType": "Condition", "id": "sev-1-c1",
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
         "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
         "code": {"coding": [{"system": ICD10, "code": "C25.0", "display": "Malignant neoplasm of head of pancreas"}]},
         "subject": {"reference": "Patient/sev-1"}, "onsetDateTime": "2026-06-02"},
        {"resourceType": "ImagingStudy", "id": "sev-1-ct", "status": "available", "subject": {"reference": "Patient/sev-1"},
         "started": "2026-11-08T10:00:00Z",
         "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}],
         "series": [{"uid": "1.2.3.4", "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"},
                     "bodySite": {"system": "http://snomed.info/sct", "code": "818982008", "display": "Abdomen and Pelvis"}}]},
        _obs("sev-1-h", LOINC, "8302-2", 162, "cm", "2026-11-20T09:00:00Z"),
        _obs("sev-1-w0", LOINC, "29463-7", 58.0, "kg", "2026-06-01T09:00:00Z"),
        _obs("sev-1-w1", LOINC, "29463-7", 52.0, "kg", "2026-11-20T09:00:00Z"),
        _obs("sev-1-g1", MEASURE, "grip-strength", 13.5, "kg", "2026-11-20T09:10:00Z"),
        _obs("sev-1-g2", MEASURE, "grip-strength", 14.0, "kg", "2026-11-20T09:12:00Z"),
        _obs("sev-1-gait", MEASURE, "gait-speed", 0.6, "m/s", "2026-11-20T09:20:00Z"),
        _obs("sev-1-l3", MEASURE, "l3-skeletal-muscle-area", 92.4, "cm2", "2026-11-09T10:00:00Z",
             derivedFrom=[{"reference": "ImagingStudy/sev-1-ct"}]),
    ]


def no_cancer() -> list[dict[str, Any]]:
    """Synthetic man with only a history of cancer (Z85.3): no sarcopenia findings at all."""
    return [
        {"resourceType": "Patient", "id": "hist-1", "gender": "male", "birthDate": "1950-01-01"},
        {"resourceType": "Condition", "id": "hist-1-c1",
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
         "code": {"coding": [{"system": ICD10, "code": "Z85.3"}]}, "subject": {"reference": "Patient/hist-1"}},
    ]
