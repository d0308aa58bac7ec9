"""The finding codes of the output contract (shared/clinical/findings.md) with English displays."""

from __future__ import annotations

FINDINGS: dict[str, str] = {
    "sarcopenia-screening-due": "Sarcopenia screening due",
    "ct-body-composition-available": "CT available for L3 body composition",
    "sarcopenia-case-finding-positive": "Sarcopenia case finding positive",
    "probable-sarcopenia": "Probable sarcopenia",
    "possible-sarcopenia": "Possible sarcopenia",
    "sarcopenia": "Sarcopenia",
    "severe-sarcopenia": "Severe sarcopenia",
    "low-skeletal-muscle-index": "Low skeletal muscle index (CT L3)",
    "sarcopenic-obesity": "Sarcopenic obesity",
    "pre-cachexia": "Cancer pre-cachexia",
    "cancer-cachexia": "Cancer cachexia",
    "refractory-cachexia": "Refractory cancer cachexia",
    "systemic-inflammation": "Systemic inflammation (mGPS ≥ 1)",
    "chemotherapy-toxicity-risk": "Low muscle mass before chemotherapy",
    "surgical-risk-prehabilitation": "Low muscle mass before major surgery",
    "implausible-measurement": "Implausible measurement ignored",
}

HOOKS = ("patient-view", "order-select", "order-sign")
OVERRIDE_REASON_SYSTEM = "https://sarcopenia-cds.org/CodeSystem/override-reason"
OPEN_ORDER_STATUSES = frozenset({"draft", "active", "on-hold"})
