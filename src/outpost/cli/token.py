"""``outpost token set|get|delete``: manage stored tokens.

These are the tokens that ``bearer_store`` sends and the refresh tokens
that ``oauth2_refresh_token`` trades for access tokens.

The token goes into the same store that ``outpost serve`` uses (``--store``,
else the SQLite state file), under the provider's ``key``. Running servers
read it on their next request, so no restart is needed. The value is read
from standard input or a hidden prompt, never from the command line, where
shell history and process listings would keep it. ``get`` prints only a
masked form.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from typing import TextIO

from outpost.auth.bearer_store import TOKEN_CHARACTERS, BearerStoreConfig
from outpost.auth.oauth2 import RefreshTokenConfig, refresh_token_store_key
from outpost.cli.flags import add_source_flags
from outpost.config.loader import load_config
from outpost.config.settings import Settings
from outpost.config.source import ConfigErrors
from outpost.store import Store, StoreUnavailableError, open_store

EXIT_FAILURE = 1
EXIT_CONFIG_ERROR = 2
VISIBLE_PREFIX = 4
"""Characters of a token that ``get`` shows, and only for long tokens."""
MIN_LENGTH_FOR_PREFIX = 16


class TokenCommandError(Exception):
    """A token command cannot run; the message gives the reason and the fix."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``token`` subcommand to the ``outpost`` parser."""
    parser = commands.add_parser(
        "token",
        help="set, show or delete a provider's stored token",
        description=(
            "Manage the token of a provider with auth type bearer_store, or the "
            "refresh token of one with auth type oauth2_refresh_token. "
            "'set' reads the token from standard input, or from a hidden prompt "
            "on a terminal; it is never taken from the command line."
        ),
    )
    parser.add_argument("action", choices=["set", "get", "delete"])
    parser.add_argument("--provider", required=True, help="provider name, e.g. slack")
    add_source_flags(parser)
    parser.add_argument(
        "--store", help="state store URL, e.g. redis://127.0.0.1:6379/0"
    )
    parser.set_defaults(handler=run, allow_missing_credentials=None)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one token action and return the exit code."""
    try:
        key = store_key(settings, args.provider)
        return asyncio.run(_run_action(args.action, args.provider, key, settings))
    except TokenCommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def store_key(settings: Settings, provider: str) -> str:
    """Return the store key of ``provider``'s token, or raise TokenCommandError."""
    try:
        # Token commands never use the hosts file, so a host's pre-shared key
        # variable, unset in the operator's shell, must not stop them.
        config = load_config(
            settings.provider_dirs,
            None,
            os.environ,
            allow_missing_credentials=True,
        )
    except ConfigErrors as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        raise TokenCommandError(
            f"{len(exc.errors)} configuration error(s)", EXIT_CONFIG_ERROR
        ) from None

    definition = config.providers.get(provider.lower())
    usable = sorted(
        name
        for name, item in config.providers.items()
        if isinstance(item.auth_config, BearerStoreConfig | RefreshTokenConfig)
    )
    if definition is None:
        raise TokenCommandError(
            f"unknown provider {provider!r}; providers with a stored token: "
            f"{', '.join(usable) or '(none)'}"
        )
    auth = definition.auth_config
    if isinstance(auth, RefreshTokenConfig):
        return refresh_token_store_key(auth.refresh_token_key, definition.name)
    if not isinstance(auth, BearerStoreConfig):
        raise TokenCommandError(
            f"provider {definition.name!r} uses auth type {auth.type!r}, which "
            "takes no stored token; only bearer_store and oauth2_refresh_token "
            f"providers do: {', '.join(usable) or '(none)'}"
        )
    return auth.store_key(definition.name)


async def _run_action(action: str, provider: str, key: str, settings: Settings) -> int:
    value = read_token(sys.stdin) if action == "set" else None
    store = _open(settings)
    try:
        if value is not None:
            await store.set(key, value.encode("ascii"))
            print(f"stored token under {key!r}: {mask(value)}")
            return 0
        current = await store.get(key)
        if action == "delete":
            await store.delete(key)
            state = "deleted" if current is not None else "no token was stored"
            print(f"{state} under {key!r}")
            return 0
        if current is None:
            print(
                f"no token is stored under {key!r}; set one with outpost token "
                f"set --provider {provider}",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        print(f"{key}: {mask(current.decode('ascii', errors='replace'))}")
        return 0
    except StoreUnavailableError as exc:
        raise TokenCommandError(str(exc)) from None
    finally:
        await store.close()


def _open(settings: Settings) -> Store:
    url = settings.store_url
    if url is not None and url.lower().startswith("memory:"):
        raise TokenCommandError(
            "memory:// lives inside one server process, so a token set here "
            "would never reach it; use the server's --store URL or state file"
        )
    if url is None:
        # The server creates this directory too; a token may be set first.
        settings.state_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        return open_store(url, path_default=str(settings.state_file))
    except (ValueError, StoreUnavailableError) as exc:
        raise TokenCommandError(str(exc)) from None


def read_token(stream: TextIO) -> str:
    """Read a token from a pipe, or from a hidden prompt on a terminal.

    Surrounding whitespace, such as the newline that ``echo`` adds, is
    removed. The token itself never appears in an error.
    """
    if stream.isatty():
        value = getpass.getpass("token (input hidden): ")
    else:
        value = stream.read()
    value = value.strip()
    if not value:
        raise TokenCommandError(
            "no token given; pipe it in, for example from a file with "
            "'outpost token set --provider NAME < token.txt'"
        )
    if not TOKEN_CHARACTERS.fullmatch(value.encode("utf-8")):
        raise TokenCommandError(
            f"the token ({len(value)} characters) contains spaces, control or "
            "non-ASCII characters, which cannot be sent in an HTTP header"
        )
    return value


def mask(value: str) -> str:
    """Return a form of ``value`` safe to print: a short prefix and the length.

    Tokens shorter than 16 characters show no prefix, because four characters
    would be a large part of them.
    """
    shown = value[:VISIBLE_PREFIX] if len(value) >= MIN_LENGTH_FOR_PREFIX else ""
    return f"{shown}… ({len(value)} characters)"
