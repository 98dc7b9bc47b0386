"""``outpost add-provider``: an interactive wizard that writes a provider file.

The wizard asks for the basics, the auth scheme and its fields, forwarding
rules, rate limits and default headers, then shows the YAML and writes it
only after the user confirms. Before the preview the text is loaded with the
real config loader, so a saved file passes ``outpost check`` once its
credential variables are set. Ctrl-C at any question exits with status 130
and writes nothing. The wizard asks for variable names, never for secrets.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from outpost.auth import AUTH_TYPES
from outpost.catalogue import credential_variables
from outpost.cli.authform import ask_auth
from outpost.cli.forwarding_form import ask_default_headers, ask_forwarding
from outpost.cli.prompts import ask_choice, ask_confirm, ask_parsed, parse_with_model
from outpost.config.loader import load_config
from outpost.config.models import ProviderFile
from outpost.config.schema import PROVIDER_SCHEMA_FILE
from outpost.config.settings import Settings
from outpost.config.source import ConfigErrors
from outpost.policy.routes import RoutePolicy

EXIT_NOT_SAVED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 130


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``add-provider`` subcommand to the ``outpost`` parser."""
    parser = commands.add_parser(
        "add-provider",
        help="write a provider file with an interactive wizard",
        description=(
            "Ask for a provider's basics, auth, rules, rate limits and headers, "
            "preview the YAML and write it after confirmation."
        ),
    )
    parser.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="file to write (default: NAME.yaml in the first providers directory)",
    )
    parser.add_argument(
        "--providers",
        action="append",
        type=Path,
        metavar="DIR",
        help="providers directory; the file goes into the first one",
    )
    parser.set_defaults(handler=run, hosts=None, allow_missing_credentials=None)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the wizard; return 0 when saved, 1 when declined, 130 on Ctrl-C."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(
            "error: add-provider is interactive and needs a terminal; write the "
            "file by hand or copy one with 'outpost init DIR --catalogue NAME'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    console = Console(highlight=False)
    try:
        return _run(args.output, settings.provider_dirs[0], console)
    except (KeyboardInterrupt, EOFError):
        console.print("Cancelled.")
        return EXIT_CANCELLED


def _run(output: Path | None, providers_dir: Path, console: Console) -> int:
    console.print("[bold]New Outpost provider[/bold] (Ctrl-C cancels at any time)")
    document = _ask_basics()
    auth_class = AUTH_TYPES[_ask_auth_type()]
    document["auth"] = ask_auth(auth_class, document["name"], console)
    headers = ask_default_headers()
    if headers:
        document["default_headers"] = headers
    document["forwarding"] = ask_forwarding()

    destination = output or providers_dir / f"{document['name']}.yaml"
    text = render_provider(document, destination)
    problems = check_provider_text(text, document["name"])
    if problems:
        for problem in problems:
            console.print(f"error: {problem}", style="red", markup=False)
        return EXIT_USAGE

    console.print(
        Panel(Syntax(text, "yaml", theme="ansi_dark"), title=Text(str(destination)))
    )
    if destination.exists() and not ask_confirm(
        f"{destination} exists. Overwrite it?", False
    ):
        console.print("Nothing was written.")
        return EXIT_NOT_SAVED
    if not ask_confirm(f"Save to {destination}?", True):
        console.print("Nothing was written.")
        return EXIT_NOT_SAVED

    try:
        write_atomically(destination, text)
    except OSError as exc:
        # The preview above still shows the text, so nothing typed is lost.
        console.print(
            f"error: cannot write {destination}: {exc}", style="red", markup=False
        )
        return EXIT_USAGE
    _print_next_steps(console, destination, document)
    return 0


def _ask_basics() -> dict[str, Any]:
    name = ask_parsed(
        "Provider name (used in /p/NAME/...)", parse_with_model(ProviderFile, "name")
    )
    base_url = ask_parsed(
        "Upstream base URL, e.g. https://api.example.com",
        parse_with_model(ProviderFile, "base_url"),
    )
    description = ask_parsed("Description (optional)", str.strip)
    document: dict[str, Any] = {"name": name}
    if description:
        document["description"] = description
    document["base_url"] = base_url
    return document


def _ask_auth_type() -> str:
    choices = []
    for name in sorted(AUTH_TYPES):
        lines = (AUTH_TYPES[name].__doc__ or "").strip().splitlines()
        summary = lines[0].replace("``", "") if lines else ""
        choices.append((name, name, summary.removeprefix(f"{name}: ")))
    return ask_choice("Auth type", choices)


class _FlowMapping(dict[str, Any]):
    """A mapping written on one line, used for allow rules and windows."""


class _ProviderDumper(yaml.SafeDumper):
    pass


_ProviderDumper.add_representer(
    _FlowMapping,
    lambda dumper, data: dumper.represent_mapping(
        "tag:yaml.org,2002:map", data, flow_style=True
    ),
)


def render_provider(document: dict[str, Any], destination: Path) -> str:
    """Return the YAML text of ``document`` with explanatory comments on top."""
    shaped = dict(document)
    forwarding = dict(document["forwarding"])
    if "allow" in forwarding:
        forwarding["allow"] = [_FlowMapping(rule) for rule in forwarding["allow"]]
    if "rate_limits" in forwarding:
        forwarding["rate_limits"] = {
            category: [_FlowMapping(window) for window in windows]
            for category, windows in forwarding["rate_limits"].items()
        }
    shaped["forwarding"] = forwarding
    body = yaml.dump(
        shaped, Dumper=_ProviderDumper, sort_keys=False, allow_unicode=True, width=88
    )
    return "".join(_header_comments(document, destination)) + body


def _header_comments(document: dict[str, Any], destination: Path) -> list[str]:
    lines = []
    schema = _find_schema(destination)
    if schema is not None:
        lines.append(f"# yaml-language-server: $schema={schema}\n")
    lines.append(f"# {document['name']}: written by 'outpost add-provider'.\n")
    variables = credential_variables(document["auth"])
    if variables:
        names = ", ".join(variables)
        lines.append(f"# Credential: export {names} before 'outpost serve'.\n")
        lines.append("# This file holds only the variable name, never the secret.\n")
    return lines


def _find_schema(destination: Path) -> str | None:
    directory = destination.resolve().parent
    for candidate in (directory / "schema", directory.parent / "schema"):
        schema = candidate / PROVIDER_SCHEMA_FILE
        if schema.is_file():
            return Path(os.path.relpath(schema, directory)).as_posix()
    return None


def check_provider_text(text: str, name: str) -> list[str]:
    """Load ``text`` with the real loader and return every error message.

    Credential variables get placeholder values, so only the file itself is
    judged. Patterns are compiled as the server compiles them at start.
    """
    document = yaml.safe_load(text)
    env = {
        variable: "placeholder" for variable in credential_variables(document["auth"])
    }
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / f"{name}.yaml").write_text(text, encoding="utf-8")
        try:
            config = load_config([Path(scratch)], None, env)
        except ConfigErrors as exc:
            return [error.message for error in exc.errors]
    try:
        for definition in config.providers.values():
            RoutePolicy.from_forwarding(definition.spec.forwarding)
    except ValueError as exc:
        return [str(exc)]
    return []


def write_atomically(destination: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``destination``, then rename."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _print_next_steps(
    console: Console, destination: Path, document: dict[str, Any]
) -> None:
    console.print(f"Saved {destination}", style="green", markup=False)
    console.print("Next steps:")
    for variable in credential_variables(document["auth"]):
        console.print(f"  export {variable}=...", markup=False)
    console.print(f"  outpost check --providers {destination.parent}", markup=False)
