"""The single exception raised when a request is not authenticated."""

from __future__ import annotations


class AuthError(Exception):
    """A rejected credential; ``reason`` is for logs only and never holds the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
