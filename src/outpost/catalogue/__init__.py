"""Built-in provider files for common APIs, shipped with the package.

Every file here contains ``enabled: false``, so a catalogue entry never becomes
reachable on its own. A user enables one by copying it into a providers
directory with ``outpost init DIR --catalogue NAME``, which flips the copy to
``enabled: true``, and by exporting the credential variable that the file
names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outpost.config.models import ProviderFile
from outpost.config.source import load_yaml

CATALOGUE_DIR = Path(__file__).resolve().parent
SCHEMA_COMMENT = re.compile(r"^# yaml-language-server: \$schema=\S+$", re.MULTILINE)
ENABLED_LINE = re.compile(r"^enabled: false$", re.MULTILINE)


@dataclass(frozen=True)
class CatalogueEntry:
    """One built-in provider file and the facts ``outpost providers`` lists."""

    name: str
    path: Path
    description: str
    mode: str
    auth_type: str
    variables: list[str]


def catalogue_files() -> list[Path]:
    """Return every catalogue file, sorted by name."""
    return sorted(CATALOGUE_DIR.glob("*.yaml"))


def find_entry(name: str) -> Path | None:
    """Return the catalogue file of provider ``name``, or None."""
    path = CATALOGUE_DIR / f"{name.lower()}.yaml"
    return path if path in catalogue_files() else None


def read_entries() -> list[CatalogueEntry]:
    """Parse every catalogue file; a broken one raises ConfigErrors."""
    entries = []
    for path in catalogue_files():
        spec = ProviderFile.model_validate(load_yaml(path).data)
        entries.append(
            CatalogueEntry(
                name=spec.name,
                path=path,
                description=spec.description,
                mode=spec.forwarding.mode,
                auth_type=str(spec.auth["type"]),
                variables=credential_variables(spec.auth),
            )
        )
    return entries


def credential_variables(auth: Mapping[str, Any]) -> list[str]:
    """Return the environment variable names an auth block reads, in order.

    A key names a variable when one of its underscore-separated words is
    ``env`` (``env``, ``username_env``, ``env_seed``), at any depth.
    """
    return list(dict.fromkeys(_walk_variables(auth)))


def _walk_variables(node: Any) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(value, str) and "env" in str(key).split("_"):
                yield value
            else:
                yield from _walk_variables(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_variables(item)


def enabled_copy(text: str, schema_path: str) -> str:
    """Return a catalogue file's text enabled, its schema comment re-pointed.

    Comments and layout are kept, because they document the credential.
    """
    text = ENABLED_LINE.sub("enabled: true", text, count=1)
    comment = f"# yaml-language-server: $schema={schema_path}"
    return SCHEMA_COMMENT.sub(lambda _: comment, text, count=1)
