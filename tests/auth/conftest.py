"""Fixtures for the auth tests (helpers live in authkit.py, a name unique across tests/)."""

from authkit import clock, jwks_server, keys, make_auth, other_key  # noqa: F401
