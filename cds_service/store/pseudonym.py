"""Keyed pseudonyms for patient ids: HMAC-SHA256, hex. Raw patient ids are never stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets

#: bytes of a generated key
KEY_BYTES = 32


def new_key() -> bytes:
    """A fresh random key, for the first start of a deployment without a configured key."""
    return secrets.token_bytes(KEY_BYTES)


def key_from_config(value: str) -> bytes:
    """The key bytes for a configured ``privacy.pseudonym_key`` string (its UTF-8 bytes)."""
    if not value:
        raise ValueError("privacy.pseudonym_key must not be empty")
    return value.encode("utf-8")


def pseudonymise(key: bytes, patient_id: str) -> str:
    """HMAC-SHA256 of the patient id under ``key``, as 64 lower-case hex digits."""
    if not isinstance(patient_id, str) or not patient_id:
        raise ValueError("patient_id must be a non-empty string")
    return hmac.new(key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()
