"""``outpost serve``, ``outpost check`` and ``outpost providers``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from outpost import __version__
from outpost.cli import schema, starter, token, wizard
from outpost.cli.catalogue import add_catalogue_flag, print_catalogue
from outpost.cli.flags import add_source_flags
from outpost.cli.logs import configure_logging
from outpost.config.loader import LoadedConfig, load_config
from outpost.config.settings import (
    SETTINGS_VARIABLE,
    Settings,
    parse_cidr_list,
    settings_from_env,
)
from outpost.config.source import ConfigErrors

EXIT_CONFIG_ERROR = 2
log = logging.getLogger("outpost.server")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="outpost", description="Capability-based credential proxy for AI agents."
    )
    parser.add_argument("--version", action="version", version=f"outpost {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the proxy")
    _add_config_flags(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.add_argument(
        "--default-provider", help="provider for requests that select none"
    )
    serve.add_argument(
        "--trusted-proxies",
        help="comma-separated CIDRs whose X-Forwarded-For is believed",
    )
    serve.add_argument("--store", help="state store URL, e.g. redis://127.0.0.1:6379/0")
    serve.add_argument(
        "--rate-limit-queue-timeout",
        type=float,
        help="seconds a request may wait for a rate-limit token (default 2)",
    )
    serve.add_argument(
        "--max-signed-body-bytes",
        type=int,
        help="largest body a body-signing auth scheme may buffer (default 10 MiB)",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=float,
        help="seconds in-flight requests get to finish on SIGTERM (default 30)",
    )
    serve.add_argument(
        "--log-level", help="DEBUG, INFO, WARNING or ERROR (default INFO)"
    )
    _add_pid_file_flag(serve)
    serve.add_argument(
        "--metrics-dir",
        type=Path,
        metavar="DIR",
        help="directory for the workers' metric files, emptied at start "
        "(default: a new temporary directory)",
    )

    reload = commands.add_parser(
        "reload", help="make a running server reload providers and hosts (SIGHUP)"
    )
    _add_pid_file_flag(reload)

    check = commands.add_parser(
        "check", help="validate providers and hosts, exit 2 on error"
    )
    _add_config_flags(check)
    providers = commands.add_parser("providers", help="list configured providers")
    _add_config_flags(providers)
    add_catalogue_flag(providers)
    for module in (schema, starter, token, wizard):
        module.register(commands)
    return parser


def _add_pid_file_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pid-file",
        type=Path,
        metavar="FILE",
        help="file holding the server's process id "
        "(default: outpost.pid beside the state file)",
    )


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    add_source_flags(parser)
    parser.add_argument(
        "--allow-missing-credentials",
        action="store_true",
        default=None,
        help="load providers whose credential variable is unset; they respond 503",
    )


def resolve_settings(args: argparse.Namespace) -> Settings:
    """Apply flags over environment variables over defaults."""
    settings = settings_from_env()
    overrides = {
        "provider_dirs": getattr(args, "providers", None),
        "hosts_file": getattr(args, "hosts", None),
        "allow_missing_credentials": getattr(args, "allow_missing_credentials", None),
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "workers": getattr(args, "workers", None),
        "default_provider": getattr(args, "default_provider", None),
        "store_url": getattr(args, "store", None),
        "rate_limit_queue_timeout": getattr(args, "rate_limit_queue_timeout", None),
        "max_signed_body_bytes": getattr(args, "max_signed_body_bytes", None),
        "shutdown_timeout": getattr(args, "shutdown_timeout", None),
        "log_level": getattr(args, "log_level", None),
        "pid_file": getattr(args, "pid_file", None),
        "metrics_dir": getattr(args, "metrics_dir", None),
    }
    for name, value in overrides.items():
        if value is not None:
            setattr(settings, name, value)
    proxies = getattr(args, "trusted_proxies", None)
    if proxies is not None:
        settings.trusted_proxies = parse_cidr_list("--trusted-proxies", proxies)
    settings.log_level = settings.log_level.upper()
    return settings


def load_or_report(settings: Settings) -> LoadedConfig | None:
    """Load the configuration, printing every error to stderr on failure."""
    try:
        return load_config(
            settings.provider_dirs,
            settings.hosts_file,
            os.environ,
            allow_missing_credentials=settings.allow_missing_credentials,
        )
    except ConfigErrors as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        print(f"{len(exc.errors)} configuration error(s)", file=sys.stderr)
        return None


def command_check(settings: Settings) -> int:
    """Validate everything; exit 0 when valid, 2 otherwise."""
    config = load_or_report(settings)
    if config is None:
        return EXIT_CONFIG_ERROR
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for definition in config.providers.values():
        if definition.missing_env:
            names = ", ".join(definition.missing_env)
            print(
                f"warning: provider {definition.name!r} needs {names}", file=sys.stderr
            )
    hosts = len(config.hosts.hosts) if config.hosts else 0
    print(f"ok: {len(config.providers)} provider(s), {hosts} host(s)")
    return 0


def command_providers(settings: Settings) -> int:
    """Print one line per enabled provider."""
    config = load_or_report(settings)
    if config is None:
        return EXIT_CONFIG_ERROR
    for definition in config.providers.values():
        status = "ready"
        if definition.missing_env:
            status = "needs " + ", ".join(definition.missing_env)
        spec = definition.spec
        print(
            f"{spec.name:<16} {spec.forwarding.mode:<12} "
            f"{definition.auth_config.type:<26} {spec.base_url}  [{status}]"
        )
    return 0


def command_serve(settings: Settings) -> int:
    """Validate the configuration, then run the server until SIGTERM or SIGINT."""
    configure_logging(settings.log_level)
    config = load_or_report(settings)
    if config is None:
        return EXIT_CONFIG_ERROR
    for warning in config.warnings:
        log.warning("%s", warning)
    for definition in config.providers.values():
        if definition.missing_env:
            log.warning(
                "provider %s responds 503: set %s and restart Outpost",
                definition.name,
                ", ".join(definition.missing_env),
            )
    log.info(
        "starting outpost on %s:%s with %s worker(s) and providers %s",
        settings.host,
        settings.port,
        settings.workers,
        ", ".join(sorted(config.providers)) or "(none)",
    )
    from outpost.server.runner import run_server

    os.environ[SETTINGS_VARIABLE] = settings.to_json()
    run_server(settings)
    log.info("outpost stopped")
    return 0


def command_reload(settings: Settings) -> int:
    """Send SIGHUP to the server named by the pid file; exit 1 if none runs."""
    pid_file = settings.resolved_pid_file()
    try:
        pid = int(pid_file.read_text().strip())
    except FileNotFoundError:
        print(
            f"error: pid file {str(pid_file)!r} not found; is outpost serve "
            "running? Pass the server's --pid-file",
            file=sys.stderr,
        )
        return 1
    except ValueError:
        print(
            f"error: pid file {str(pid_file)!r} contains no process id", file=sys.stderr
        )
        return 1
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(
            f"error: no process {pid} from {str(pid_file)!r}; the server is not "
            "running",
            file=sys.stderr,
        )
        return 1
    print(f"sent SIGHUP to outpost (pid {pid}); its log says whether it reloaded")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``outpost`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = resolve_settings(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    if getattr(args, "handler", None) is not None:
        return int(args.handler(args, settings))
    if args.command == "providers" and args.catalogue:
        return print_catalogue()
    commands = {
        "serve": command_serve,
        "check": command_check,
        "providers": command_providers,
        "reload": command_reload,
    }
    return commands[args.command](settings)


if __name__ == "__main__":
    sys.exit(main())
