"""Runs the application under granian.

granian parses HTTP in Rust (hyper), which rejects duplicate or malformed
``Content-Length`` headers and answers ``Expect: 100-continue`` only when the
application starts reading the body, so a request rejected by policy never
gets a ``100 Continue`` and never uploads its body.
"""

from __future__ import annotations

from granian.constants import HTTPModes, Interfaces, Loops
from granian.server import Server

from outpost.config.settings import Settings


def run_server(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; in-flight requests get the grace period."""
    server = Server(
        target="outpost.server.worker:create_app",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        log_access=False,
        log_enabled=True,
        workers_kill_timeout=int(settings.shutdown_timeout),
    )
    server.serve()
