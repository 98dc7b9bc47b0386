"""Runs the application under granian.

granian parses HTTP in Rust (hyper), which rejects duplicate or malformed
``Content-Length`` headers. It sends ``100 Continue`` for ``Expect:
100-continue`` only when the application starts reading the body, so a
request rejected by policy never gets one and never uploads its body.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

from granian.constants import HTTPModes, Interfaces, Loops
from granian.errors import PidFileError
from granian.server import Server

from outpost.config.settings import Settings
from outpost.server.reload import ConfigReloader

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
EXIT_ALREADY_RUNNING = 1
log = logging.getLogger("outpost.server")


def run_server(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; in-flight requests get the grace period.

    SIGHUP reloads the configuration in place (see :mod:`outpost.server.reload`).
    """
    pid_file = settings.resolved_pid_file()
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    ensure_port_free(settings.host, settings.port)
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
        pid_file=pid_file,
    )
    # granian installs its own SIGHUP handler, which restarts the workers,
    # just before it runs the startup hooks; this hook replaces it.
    server.on_startup(ConfigReloader(settings).install)

    metrics_dir, is_temporary = prepare_metrics_directory(settings.metrics_dir)
    # Set before any worker starts, because prometheus-client picks its
    # multi-process storage when it is first imported in a process.
    os.environ[MULTIPROCESS_VARIABLE] = str(metrics_dir)
    try:
        server.serve()
    except PidFileError:
        log.error(
            "pid file %s belongs to a running server; stop it, or give this "
            "one its own --pid-file and --port",
            pid_file,
        )
        raise SystemExit(EXIT_ALREADY_RUNNING) from None
    finally:
        if is_temporary:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def ensure_port_free(host: str, port: int) -> None:
    """Exit with a clear message when another socket is bound to the port.

    granian binds with SO_REUSEPORT, which lets a second process of the same
    user listen on the same port and silently receive part of the agents'
    connections, pre-shared keys included. A plain bind without that option
    fails while any other socket is bound to the port, so it is tried first.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            log.error(
                "port %s on %s is already in use by another process; stop it or "
                "choose another --port",
                port,
                host,
            )
            raise SystemExit(EXIT_ALREADY_RUNNING) from None


def prepare_metrics_directory(configured: Path | None) -> tuple[Path, bool]:
    """Return an empty directory for the workers' metric sample files.

    A configured directory is created if needed and emptied of the files of
    an earlier run, whose counts would otherwise be added to this run's.
    Without one, a new temporary directory is made. The flag tells whether it
    is temporary, so the caller removes it on exit.
    """
    if configured is None:
        return Path(tempfile.mkdtemp(prefix="outpost-metrics-")), True
    configured.mkdir(parents=True, exist_ok=True)
    for stale in configured.glob("*.db"):
        stale.unlink()
    return configured, False
