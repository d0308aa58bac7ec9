"""A known history of hook calls, cards and feedback, whose report figures are worked out by hand.

- January 2026, pack sarcopenia@1.0.0: 100 calls lasting 1, 2, …, 100 ms (the last answered 500).
  20 calls send a low-smi card, 30 others a cachexia card. Feedback: 5 low-smi cards accepted (3
  with the dietitian referral, 2 with the physiotherapy referral), 4 overridden (3
  patient-declined, 1 measurement-doubtful); 2 cachexia cards overridden already-under-care.
  3 further calls had low-smi suppressed by earlier feedback; 2 left cachexia undetermined for
  want of Observation data.
- February 2026, same pack: 100 calls of 10 ms; 20 low-smi cards, 30 cachexia cards; no feedback.
- March 2026, pack sarcopenia@1.1.0: 100 calls of 5 ms; 20 low-smi cards and no cachexia card
  (the finding stopped firing after the pack change).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

OLD, NEW = "sarcopenia@1.0.0", "sarcopenia@1.1.0"
REASON_SYSTEM = "https://sarcopenia-cds.org/CodeSystem/override-reason"


def _card(uuid: str, finding: str) -> dict:
    return {"uuid": uuid, "primary": finding, "findings": [finding],
            "suggestions": {f"{uuid}-diet": "dietitian-referral", f"{uuid}-pt": "pt-referral"}}


def build(store) -> None:
    """Write the history through the store's own API."""
    feedback: list[tuple[datetime, dict]] = []
    months = [(datetime(2026, 1, 5, tzinfo=UTC), OLD, lambda i: float(i + 1), True),
              (datetime(2026, 2, 5, tzinfo=UTC), OLD, lambda i: 10.0, True),
              (datetime(2026, 3, 5, tzinfo=UTC), NEW, lambda i: 5.0, False)]
    for start, pack, duration, cachexia in months:
        for i in range(100):
            at = start + timedelta(minutes=10 * i)
            tag = f"{start:%m}-{i:03d}"
            cards, states = [], []
            if i < 20:
                cards.append(_card(f"smi-{tag}", "low-smi"))
            elif i < 50 and cachexia:
                cards.append(_card(f"cax-{tag}", "cachexia"))
            elif start.month == 1 and i in (60, 61, 62):
                states.append(("low-smi", "suppressed", None))
            elif start.month == 1 and i in (70, 71):
                states.append(("cachexia", "undetermined", "Observation"))
            store.record_call(
                hook_instance=f"hi-{tag}", service_id="sarcopenia-patient-view", hook="patient-view",
                patient_id=f"Patient/p-{i % 37}", pack_version=pack, called_at=at, cards=cards,
                status=500 if (start.month == 1 and i == 99) else 200, duration_ms=duration(i),
                detail={"rules_fired": []}, states=states,
            )
            if start.month != 1 or not cards:
                continue
            uuid = cards[0]["uuid"]
            stamp = (at + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
            entry = None
            if i < 3:
                entry = {"card": uuid, "outcome": "accepted", "outcomeTimestamp": stamp,
                         "acceptedSuggestions": [{"id": f"{uuid}-diet"}]}
            elif i < 5:
                entry = {"card": uuid, "outcome": "accepted", "outcomeTimestamp": stamp,
                         "acceptedSuggestions": [{"id": f"{uuid}-pt"}]}
            elif i < 9:
                code = "patient-declined" if i < 8 else "measurement-doubtful"
                entry = {"card": uuid, "outcome": "overridden", "outcomeTimestamp": stamp,
                         "overrideReason": {"reason": {"system": REASON_SYSTEM, "code": code}}}
            elif i in (20, 21):
                entry = {"card": uuid, "outcome": "overridden", "outcomeTimestamp": stamp,
                         "overrideReason": {"reason": {"system": REASON_SYSTEM, "code": "already-under-care"}}}
            if entry is not None:
                feedback.append((at + timedelta(hours=1), entry))
    for received, entry in feedback:
        store.record_feedback("sarcopenia-patient-view", [entry], received)
