"""The request policy: pure decisions, no I/O.

``canonical`` makes the one path that is checked and forwarded, ``patterns``
compiles provider path patterns, ``routes`` classifies a request and gates
sensitive calls, ``callers`` turns an address and a key into a caller. Every
function here is synchronous and deterministic; nothing in this package may
read files, the environment, the network or the clock.
"""

from outpost.policy.callers import Caller, HostPolicy, check_provider
from outpost.policy.canonical import canonicalize_path
from outpost.policy.routes import (
    Route,
    RoutePolicy,
    check_method_override,
    check_sensitive,
)

__all__ = [
    "Caller",
    "HostPolicy",
    "Route",
    "RoutePolicy",
    "canonicalize_path",
    "check_method_override",
    "check_provider",
    "check_sensitive",
]
