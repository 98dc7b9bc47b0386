"""``outpost providers --catalogue``: list the built-in provider files."""

from __future__ import annotations

import argparse

from outpost.catalogue import CATALOGUE_DIR, read_entries


def add_catalogue_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--catalogue`` to the ``providers`` subcommand."""
    parser.add_argument(
        "--catalogue",
        action="store_true",
        help="list the built-in provider catalogue instead of the configured ones",
    )


def print_catalogue() -> int:
    """Print one line per catalogue entry, then how to enable one."""
    for entry in read_entries():
        variables = ", ".join(entry.variables) or "-"
        print(
            f"{entry.name:<18} {entry.mode:<12} {entry.auth_type:<16} "
            f"{variables:<40} {entry.description}"
        )
    print(
        f"\n{CATALOGUE_DIR} holds these files, all disabled. Copy one, enabled, "
        "with 'outpost init DIR --catalogue NAME', then export its variables."
    )
    return 0
