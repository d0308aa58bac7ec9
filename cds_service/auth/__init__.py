"""JWT authentication (CDS Hooks 2.0 §Security) and CORS for the Flask app."""

from cds_service.auth.errors import AuthError
from cds_service.auth.middleware import init_auth
from cds_service.auth.verify import Authenticator

__all__ = ["AuthError", "Authenticator", "init_auth"]
