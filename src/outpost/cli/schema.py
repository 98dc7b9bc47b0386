"""``outpost schema``: write the JSON Schema of provider and hosts files."""

from __future__ import annotations

import argparse
from pathlib import Path

from outpost.config.schema import (
    HOSTS_SCHEMA_FILE,
    PROVIDER_SCHEMA_FILE,
    hosts_schema,
    provider_schema,
    render,
)
from outpost.config.settings import Settings

DEFAULT_SCHEMA_DIR = Path("schema")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``schema`` subcommand to the ``outpost`` parser."""
    parser = commands.add_parser(
        "schema",
        help="write JSON Schema of provider and hosts files for editor completion",
        description=(
            f"Write {PROVIDER_SCHEMA_FILE} and {HOSTS_SCHEMA_FILE}. Point an "
            "editor at them with a first line such as "
            "'# yaml-language-server: $schema=../schema/provider.schema.json'."
        ),
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_SCHEMA_DIR,
        metavar="DIR",
        help="directory to write the two files into (default: ./schema)",
    )
    parser.set_defaults(
        handler=run, providers=None, hosts=None, allow_missing_credentials=None
    )


def write_schemas(directory: Path) -> list[Path]:
    """Write both schema files into ``directory``, creating it if needed."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in (
        (PROVIDER_SCHEMA_FILE, provider_schema()),
        (HOSTS_SCHEMA_FILE, hosts_schema()),
    ):
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Write the schema files and print their paths."""
    for path in write_schemas(args.output):
        print(f"wrote {path}")
    return 0
