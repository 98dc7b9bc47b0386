"""Auth modules: each credential scheme is one small class.

Importing this package registers every built-in scheme.
"""

from outpost.auth import (
    aws_sigv4,
    bearer_store,
    github_app,
    hmac_signed,
    oauth2,
    plugin,
    static,
)
from outpost.auth.base import AUTH_TYPES, AuthModule, resolve_auth_type

__all__ = [
    "AUTH_TYPES",
    "AuthModule",
    "aws_sigv4",
    "bearer_store",
    "github_app",
    "hmac_signed",
    "oauth2",
    "plugin",
    "resolve_auth_type",
    "static",
]
