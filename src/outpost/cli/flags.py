"""Command-line flags shared by several subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_source_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--providers`` and ``--hosts``, which locate the configuration."""
    parser.add_argument(
        "--providers",
        action="append",
        type=Path,
        metavar="DIR",
        help="provider directory; repeat for several, later ones override earlier",
    )
    parser.add_argument("--hosts", type=Path, metavar="FILE", help="hosts.yaml path")
