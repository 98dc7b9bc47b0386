"""The factory each server worker process calls to build the application."""

from __future__ import annotations

import os
import signal

from outpost.cli.logs import configure_logging
from outpost.config.loader import load_config
from outpost.config.settings import SETTINGS_VARIABLE, Settings
from outpost.proxy.runtime import Runtime
from outpost.server.app import OutpostApp
from outpost.server.reload import WorkerReloader
from outpost.store import open_store


def create_app() -> OutpostApp:
    """Build the application from the settings the parent process exported.

    The parent validated the same files just before, so a failure here means
    they changed in between; the worker then fails loudly instead of serving
    a half-loaded configuration.
    """
    # SIGHUP's default action ends the process, so a forwarded SIGHUP is ignored
    # until the application installs its reload handler at lifespan startup.
    # NOTE: a SIGHUP in that window is lost. If the files changed after this
    # worker read them, it serves the older files until the next reload.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    settings = Settings.from_json(os.environ[SETTINGS_VARIABLE])
    configure_logging(settings.log_level)
    config = load_config(
        settings.provider_dirs,
        settings.hosts_file,
        os.environ,
        allow_missing_credentials=settings.allow_missing_credentials,
    )
    store = open_store(settings.store_url, path_default=str(settings.state_file))
    app = OutpostApp(Runtime.build(settings, config, store))
    app.startup_hooks.append(WorkerReloader(app, settings).install)
    return app
