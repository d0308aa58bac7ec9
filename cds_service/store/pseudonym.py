"""Keyed pseudonyms for patient ids: HMAC-SHA256, hex. Raw patient ids are never stored.

The key never lives in the database it protects (a dump plus a list of MRNs would re-identify
every patient): it is ``privacy.pseudonym_key``, or the file ``privacy.pseudonym_key_file``, or
for a SQLite database a file created 0600 beside it. docs/security.md has the rotation procedure."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger("cds_service.store")

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


def key_file_beside(database_path: str) -> Path:
    """Where a SQLite database's generated pseudonym key lives: ``<database>-pseudonym.key``."""
    return Path(f"{database_path}-pseudonym.key")


def load_or_create_key_file(path: str | os.PathLike[str], legacy: bytes | None = None) -> bytes:
    """The key in ``path`` (64 hex digits), creating the file 0600 with ``legacy`` (a key an
    older version kept in the database, so existing pseudonyms stay valid) or a new random key.
    Several workers starting at once agree: the file is created exclusively and the winner's
    key is read by all."""
    path = Path(path)
    if not path.exists():
        key = legacy if legacy is not None else new_key()
        temporary = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key.hex().encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)  # fails when another worker's file got there first
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    text = path.read_text(encoding="ascii").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{path}: a pseudonym key file holds the key as hex digits") from None
    if len(key) < 16:
        raise ValueError(f"{path}: the pseudonym key is shorter than 16 bytes")
    if path.stat().st_mode & 0o077:
        log.warning("pseudonym key file is readable by others than its owner; chmod 600 it",
                    extra={"file": path.name})
    return key
