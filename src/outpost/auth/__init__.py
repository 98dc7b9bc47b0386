"""Auth modules: each credential scheme is one small class.

Importing this package registers every built-in scheme.
"""

from outpost.auth import bearer_store, static
from outpost.auth.base import AUTH_TYPES, AuthModule, resolve_auth_type

__all__ = ["AUTH_TYPES", "AuthModule", "bearer_store", "resolve_auth_type", "static"]
