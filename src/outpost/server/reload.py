"""Configuration reload on SIGHUP, without restarting a worker.

Restarting workers would make each load the configuration in its factory,
so a broken file would stop them from starting and take the server down.
Outpost reloads in place instead:

1. The main process catches SIGHUP and loads the configuration files. When
   they are invalid it logs the errors and stops there, so the workers never
   see a broken configuration.
2. When they are valid it forwards SIGHUP to every worker process.
3. Each worker loads the files again in a thread, builds a new
   :class:`~outpost.proxy.runtime.Runtime` and swaps it in. Requests already
   running finish on the old runtime, which is closed once they are done.

A worker whose own load fails (the files changed again between the two
loads) logs the error and keeps serving its current configuration.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from outpost.config.loader import LoadedConfig, load_config
from outpost.config.settings import Settings
from outpost.config.source import ConfigErrors
from outpost.proxy.runtime import Runtime

if TYPE_CHECKING:
    from outpost.server.app import OutpostApp

log = logging.getLogger("outpost.server")


def load_settings_config(settings: Settings) -> LoadedConfig:
    """Load the providers and hosts named by ``settings``; raises ConfigErrors."""
    return load_config(
        settings.provider_dirs,
        settings.hosts_file,
        os.environ,
        allow_missing_credentials=settings.allow_missing_credentials,
    )


def describe_errors(exc: ConfigErrors) -> str:
    """Join every configuration error into one log-friendly string."""
    return "; ".join(str(error) for error in exc.errors)


class ConfigReloader:
    """Validates a reloaded configuration in the main process, then signals workers.

    The signal handler only sets an event, and a thread does the loading. So
    a burst of SIGHUPs is coalesced and no file I/O runs inside a handler.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.requested = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name="outpost-reload", daemon=True
        )

    def install(self) -> None:
        """Handle SIGHUP in the main process and start the reload thread."""
        signal.signal(signal.SIGHUP, self._on_signal)
        self.thread.start()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.requested.set()

    def _run(self) -> None:
        while True:
            self.requested.wait()
            self.requested.clear()
            try:
                self.reload()
            except Exception:
                # The thread must survive anything, or later reloads would be
                # silently ignored.
                log.exception("configuration reload failed unexpectedly")

    def reload(self) -> bool:
        """Validate the files and forward SIGHUP to the workers if they are valid."""
        try:
            config = load_settings_config(self.settings)
        except ConfigErrors as exc:
            log.error(
                "configuration reload rejected, still serving the previous "
                "configuration: %s",
                describe_errors(exc),
            )
            return False

        workers = [child.pid for child in multiprocessing.active_children()]
        for pid in workers:
            if pid is not None:
                os.kill(pid, signal.SIGHUP)
        log.info(
            "configuration reloaded: providers %s; %d worker(s) signalled",
            ", ".join(sorted(config.providers)) or "(none)",
            len(workers),
        )
        return True


class WorkerReloader:
    """Reloads the configuration inside one worker when SIGHUP arrives."""

    def __init__(self, app: OutpostApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.task: asyncio.Task[None] | None = None
        self.pending = False

    def install(self) -> None:
        """Handle SIGHUP on the running event loop; called at lifespan startup."""
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.schedule)

    def schedule(self) -> None:
        """Start a reload, or queue one more if a reload is running."""
        if self.task is not None and not self.task.done():
            self.pending = True
            return
        self.task = asyncio.get_running_loop().create_task(self._reload_until_idle())

    async def _reload_until_idle(self) -> None:
        while True:
            self.pending = False
            await self.reload()
            if not self.pending:
                return

    async def reload(self) -> bool:
        """Load the files, swap the new runtime in and retire the old one."""
        try:
            config = await asyncio.to_thread(load_settings_config, self.settings)
        except ConfigErrors as exc:
            log.error(
                "worker %d kept its configuration; reload failed: %s",
                os.getpid(),
                describe_errors(exc),
            )
            return False

        runtime = Runtime.build(self.settings, config, self.app.runtime.store)
        old = self.app.swap_runtime(runtime)
        log.debug("worker %d serves the reloaded configuration", os.getpid())
        asyncio.get_running_loop().create_task(self.app.close_when_idle(old))
        return True
