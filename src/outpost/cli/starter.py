"""``outpost init DIR``: write a starter configuration.

The starter admits loopback callers only and carries one disabled example
provider, so ``outpost check`` passes on it before anything is edited. Built-in
catalogue entries chosen with ``--catalogue`` are copied enabled. Existing
files are kept unless ``--force`` is given, so running ``init`` again on the
same directory adds catalogue entries without touching earlier edits.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from outpost.catalogue import (
    catalogue_files,
    credential_variables,
    enabled_copy,
    find_entry,
)
from outpost.cli.schema import write_schemas
from outpost.config.models import ProviderFile
from outpost.config.schema import HOSTS_SCHEMA_FILE, PROVIDER_SCHEMA_FILE
from outpost.config.settings import Settings
from outpost.config.source import load_yaml

EXIT_USAGE = 2

HOSTS_TEMPLATE = f"""\
# yaml-language-server: $schema=schema/{HOSTS_SCHEMA_FILE}
# Callers allowed to use Outpost, matched by source address (longest prefix
# wins). This starter admits agents on this machine only.
hosts:
  - id: local-agent
    description: Agents running on this machine
    cidrs: [127.0.0.0/8, "::1/128"]
    # Require a pre-shared key in the X-Outpost-Auth header as well:
    # auth_token_env: OUTPOST_LOCAL_AGENT_KEY
    # Calls marked sensitive (payments, trades, deletes) stay denied until
    # this is true.
    can_call_sensitive: false
    # Limit this caller to some providers (default: all):
    # providers: [github]
"""

EXAMPLE_TEMPLATE = f"""\
# yaml-language-server: $schema=../schema/{PROVIDER_SCHEMA_FILE}
# An example provider file: one upstream API per file. It is disabled; copy
# it, or run 'outpost add-provider' for a guided version, then set
# enabled: true and export the credential variable.
name: example
description: Example API, disabled
base_url: https://api.example.com
enabled: false
# The credential comes from an environment variable; Outpost injects it and
# the agent never sees it.
auth: {{type: bearer_static, env: EXAMPLE_API_TOKEN}}
forwarding:
  # allowlist forwards only the paths below; transparent forwards every path
  # that is not denied.
  mode: allowlist
  deny:
    - /admin/**
  allow:
    - {{path: /v1/items, methods: [GET], category: read, cache_ttl: 30}}
    - {{path: "/v1/items/{{id}}", methods: [GET], category: read}}
    - {{path: /v1/items, methods: [POST], category: write}}
    - {{path: "/v1/items/{{id}}", methods: [DELETE], category: write, sensitive: true}}
  rate_limits:
    read:
      - {{capacity: 10, window_ms: 1000}}
    write:
      - {{capacity: 2, window_ms: 1000}}
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``init`` subcommand to the ``outpost`` parser."""
    parser = commands.add_parser(
        "init",
        help="write a starter configuration (hosts.yaml, providers/, schema/)",
        description=(
            "Write DIR/hosts.yaml (loopback callers only), DIR/providers/ with a "
            "disabled example, and DIR/schema/ for editor completion. Existing "
            "files are kept unless --force is given."
        ),
    )
    parser.add_argument(
        "directory", type=Path, metavar="DIR", help="directory to create or complete"
    )
    parser.add_argument(
        "--catalogue",
        action="append",
        default=[],
        metavar="NAME",
        help=(
            "copy this built-in provider into DIR/providers/, enabled; repeat "
            "for several (list them with 'outpost providers --catalogue')"
        ),
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite files that already exist"
    )
    parser.set_defaults(
        handler=run, providers=None, hosts=None, allow_missing_credentials=None
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Write the starter files and print what to do next."""
    root: Path = args.directory
    sources = _catalogue_sources(args.catalogue)
    if sources is None:
        return EXIT_USAGE

    files = {
        root / "hosts.yaml": HOSTS_TEMPLATE,
        root / "providers" / "example.yaml": EXAMPLE_TEMPLATE,
    }
    for source in sources:
        text = source.read_text(encoding="utf-8")
        schema_path = f"../schema/{PROVIDER_SCHEMA_FILE}"
        files[root / "providers" / source.name] = enabled_copy(text, schema_path)

    try:
        (root / "providers").mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            _write(path, text, args.force)
        for path in write_schemas(root / "schema"):
            print(f"wrote {path}")
    except OSError as exc:
        print(f"error: cannot write into {str(root)!r}: {exc}", file=sys.stderr)
        return EXIT_USAGE

    _print_next_steps(root, sources)
    return 0


def _catalogue_sources(names: list[str]) -> list[Path] | None:
    sources = []
    for name in names:
        source = find_entry(name)
        if source is None:
            known = [path.stem for path in catalogue_files()]
            matches = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {matches[0]!r}?" if matches else ""
            print(
                f"error: {name!r} is not in the built-in catalogue{hint}\n"
                f"available: {', '.join(known)}",
                file=sys.stderr,
            )
            return None
        sources.append(source)
    return sources


def _write(path: Path, text: str, force: bool) -> None:
    if path.exists() and not force:
        print(f"kept {path} (exists; --force overwrites it)")
        return
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")


def _print_next_steps(root: Path, sources: list[Path]) -> None:
    variables: list[str] = []
    for source in sources:
        spec = ProviderFile.model_validate(load_yaml(source).data)
        variables.extend(credential_variables(spec.auth))

    print("\nNext steps:")
    for variable in dict.fromkeys(variables):
        print(f"  export {variable}=...")
    print(f"  cd {root}")
    print("  outpost check --hosts hosts.yaml")
    print("  outpost serve --hosts hosts.yaml")
