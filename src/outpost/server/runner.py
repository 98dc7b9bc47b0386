"""Runs the server: a main process that supervises worker processes.

The main process checks the port, writes the pid file, handles SIGHUP
(see :mod:`outpost.server.reload`) and starts ``--workers`` processes, each
serving on its own ``SO_REUSEPORT`` listener (:mod:`outpost.server.serve`).
A worker that exits unexpectedly is replaced. SIGINT and SIGTERM stop the
workers gracefully, then the main process exits.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from outpost.config.settings import Settings
from outpost.server.reload import ConfigReloader
from outpost.server.serve import run_worker

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
EXIT_ALREADY_RUNNING = 1
EXIT_WORKERS_FAILED = 1
# A worker that exits sooner than this after starting counts as a failed
# start. After this many failed starts in a row the server gives up.
FAILED_START_SECONDS = 10.0
MAX_FAILED_STARTS = 5
SUPERVISE_INTERVAL = 0.2
# Extra time a stopping worker gets beyond the shutdown timeout, for its
# lifespan shutdown, before it is killed.
KILL_GRACE_SECONDS = 5.0
log = logging.getLogger("outpost.server")


def run_server(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; in-flight requests get the grace period.

    SIGHUP reloads the configuration in place (see :mod:`outpost.server.reload`).
    """
    pid_file = settings.resolved_pid_file()
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    ensure_port_free(settings.host, settings.port)
    claim_pid_file(pid_file)

    metrics_dir, is_temporary = prepare_metrics_directory(settings.metrics_dir)
    # Set before any worker starts, because prometheus-client picks its
    # multi-process storage when it is first imported in a process.
    os.environ[MULTIPROCESS_VARIABLE] = str(metrics_dir)
    try:
        Supervisor(settings).run()
    finally:
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
        if is_temporary:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def claim_pid_file(pid_file: Path) -> None:
    """Write this process's id, or exit if the file names a running server."""
    try:
        other = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        other = 0
    if other and other != os.getpid() and _is_running(other):
        log.error(
            "pid file %s belongs to a running server; stop it, or give this "
            "one its own --pid-file and --port",
            pid_file,
        )
        raise SystemExit(EXIT_ALREADY_RUNNING)
    pid_file.write_text(f"{os.getpid()}\n")


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Supervisor:
    """Starts the worker processes, replaces dead ones and stops them all."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[tuple[BaseProcess, float]] = []
        self._failed_starts = 0

    def run(self) -> None:
        """Run the workers until a stop signal; exit if they keep failing."""
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        ConfigReloader(self.settings).install()
        self._workers = [self._start() for _ in range(self.settings.workers)]
        try:
            while not self.stopping.wait(SUPERVISE_INTERVAL):
                self._replace_dead_workers()
        finally:
            self._stop_all()

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()

    def _start(self) -> tuple[BaseProcess, float]:
        settings = self.settings
        process = self._context.Process(
            target=run_worker,
            args=(settings.host, settings.port, settings.shutdown_timeout),
            name="outpost-worker",
        )
        process.start()
        log.debug("started worker %s", process.pid)
        return process, time.monotonic()

    def _replace_dead_workers(self) -> None:
        for index, (process, started) in enumerate(self._workers):
            if process.is_alive():
                continue
            lifetime = time.monotonic() - started
            log.error(
                "worker %s exited with code %s after %.1f s; starting a new one",
                process.pid,
                process.exitcode,
                lifetime,
            )
            self._failed_starts = (
                self._failed_starts + 1 if lifetime < FAILED_START_SECONDS else 0
            )
            if self._failed_starts >= MAX_FAILED_STARTS:
                log.error(
                    "workers failed to start %d times in a row; stopping. The "
                    "worker log lines above give the cause",
                    self._failed_starts,
                )
                raise SystemExit(EXIT_WORKERS_FAILED)
            self._workers[index] = self._start()

    def _stop_all(self) -> None:
        processes = [process for process, _ in self._workers]
        for process in processes:
            if process.is_alive():
                process.terminate()
        deadline = (
            time.monotonic() + self.settings.shutdown_timeout + KILL_GRACE_SECONDS
        )
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                log.error("worker %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()


def ensure_port_free(host: str, port: int) -> None:
    """Exit with a clear message when another socket is bound to the port.

    Workers bind with SO_REUSEPORT, which lets a second process of the same
    user listen on the same port and silently receive part of the agents'
    connections, pre-shared keys included. A bind without that option fails
    while any other socket is bound to the port, so it is tried first. The
    probe sets SO_REUSEADDR like the workers' listeners, so connections that
    a stopped Outpost left in TIME_WAIT do not block a restart. A socket that
    listens on the port still makes the bind fail.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
