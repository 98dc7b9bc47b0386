"""Outpost's ASGI application driven in-process, for quick A/B measurements.

Runs the worker's real application (config, SQLite store, upstream client,
access log to a file) against the benchmark's upstream nginx, with ASGI
messages made in Python instead of the HTTP server. It leaves out parsing
the agent's requests, so its numbers are lower than the end-to-end ones,
but they vary far less, which makes a change of a few microseconds visible.

Run: ``python -m bench.inprocess [--requests N] [--profile tottime]``. Pin it
with ``taskset -c 1`` for steadier numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from bench import fixtures
from bench.fixtures import HOST_PSK, PROVIDER, Ports
from bench.procs import free_port
from bench.run import SIDE_CORE, start_nginx

CONCURRENCY = 32
HEADERS = [
    (b"host", b"127.0.0.1:8080"),
    (b"x-outpost-auth", HOST_PSK.encode()),
    (b"x-provider", PROVIDER.encode()),
    (b"user-agent", b"wrk"),
]


def build_app(root: Path, ports: Ports, store_url: str | None) -> Any:
    """Build the application the way a server worker does."""
    providers, hosts = fixtures.write_outpost_config(root, ports)
    os.environ["BENCH_HOST_PSK"] = HOST_PSK
    os.environ["BENCH_UPSTREAM_TOKEN"] = fixtures.UPSTREAM_TOKEN
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(root))

    from outpost.config.settings import SETTINGS_VARIABLE, Settings

    settings = Settings(
        provider_dirs=[providers],
        hosts_file=hosts,
        state_file=root / "state.db",
        store_url=store_url,
    )
    os.environ[SETTINGS_VARIABLE] = settings.to_json()
    log = (root / "outpost.stdout").open("w")
    saved, sys.stdout = sys.stdout, log
    try:
        from outpost.server.worker import create_app

        return create_app()
    finally:
        sys.stdout = saved


async def one_request(app: Any, path: bytes) -> None:
    """Send one GET through the application and check it succeeded."""
    loop = asyncio.get_running_loop()
    never = loop.create_future()
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await never
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {
        "type": "http",
        "method": "GET",
        "path": path.decode(),
        "raw_path": path,
        "query_string": b"",
        "headers": HEADERS,
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "http_version": "1.1",
    }
    await app(scope, receive, send)
    never.cancel()
    if statuses != [200]:
        raise RuntimeError(f"expected one 200 response, got {statuses}")


async def drive(app: Any, path: bytes, requests: int, sort: str | None) -> float:
    """Send ``requests`` requests, 32 at a time; return CPU us per request."""

    async def client(count: int) -> None:
        for _ in range(count):
            await one_request(app, path)

    await asyncio.gather(*(client(10) for _ in range(CONCURRENCY)))
    per_client = requests // CONCURRENCY
    profile = cProfile.Profile() if sort else None
    started = time.process_time()
    if profile:
        profile.enable()
    await asyncio.gather(*(client(per_client) for _ in range(CONCURRENCY)))
    if profile:
        profile.disable()
    cpu = time.process_time() - started
    if profile and sort:
        pstats.Stats(profile).sort_stats(sort).print_stats(40)
    return cpu * 1e6 / (per_client * CONCURRENCY)


def main(argv: list[str] | None = None) -> int:
    """Measure once and print the CPU time per request."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--path", default="/v1/small.json")
    parser.add_argument("--store", help="store URL; default: SQLite, as served")
    parser.add_argument(
        "--profile", metavar="SORT", help="print a cProfile sorted by SORT"
    )
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="outpost-inprocess-"))
    ports = Ports(free_port(), free_port(), free_port(), free_port())
    fixtures.write_bodies(root)
    upstream = start_nginx(
        root,
        "upstream",
        fixtures.upstream_nginx_conf(root, ports),
        SIDE_CORE,
        ports.upstream,
    )
    try:
        app = build_app(root, ports, args.store)
        path = args.path.encode()
        cpu = uvloop.run(drive(app, path, args.requests, args.profile))
    finally:
        upstream.stop()
    print(f"CPU per request: {cpu:.1f} us (in-process, without HTTP parsing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
