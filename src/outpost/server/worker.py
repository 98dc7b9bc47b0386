"""The factory each server worker process calls to build the application."""

from __future__ import annotations

import os

from outpost.cli.logs import configure_logging
from outpost.config.loader import load_config
from outpost.config.settings import SETTINGS_VARIABLE, Settings
from outpost.proxy.runtime import Runtime
from outpost.server.app import OutpostApp
from outpost.store import open_store


def create_app() -> OutpostApp:
    """Build the application from the settings the parent process exported.

    The parent validated the same files just before, so a failure here means
    they changed in between; the worker then fails loudly instead of serving
    a half-loaded configuration.
    """
    settings = Settings.from_json(os.environ[SETTINGS_VARIABLE])
    configure_logging(settings.log_level)
    config = load_config(
        settings.provider_dirs,
        settings.hosts_file,
        os.environ,
        allow_missing_credentials=settings.allow_missing_credentials,
    )
    store = open_store(settings.store_url, path_default=str(settings.state_file))
    return OutpostApp(Runtime.build(settings, config, store))
