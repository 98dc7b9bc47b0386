"""The cost of Outpost's serving stack without Outpost's own steps.

Runs Outpost's HTTP server (:mod:`outpost.server.protocol`) with two tiny
ASGI applications in place of Outpost's. One returns a fixed 300-byte
response. The other forwards every request to the upstream nginx with
Outpost's client (:mod:`outpost.proxy.http1`), with no policy, state,
logging or header filtering. nginx as a reverse proxy runs beside them for scale.
Each runs alone on core 1 under the same wrk load as ``make bench``.

Run: ``python -m bench.floor [--seconds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop

from bench import fixtures
from bench.fixtures import Ports
from bench.load import measure
from bench.procs import Service, free_port, wait_for_port
from bench.run import PROXY_CORE, SIDE_CORE, start_nginx

FIXED_BODY = fixtures.json_body(fixtures.SMALL_SIZE)
FIXED_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(FIXED_BODY)).encode()),
]


async def fixed_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Return the same small JSON response to every request."""
    await send({"type": "http.response.start", "status": 200, "headers": FIXED_HEADERS})
    await send({"type": "http.response.body", "body": FIXED_BODY})


def forwarding_app(upstream_port: int) -> Any:
    """Return an application that forwards GETs with Outpost's client."""
    from outpost.config.models import Timeouts
    from outpost.config.urls import parse_base_url
    from outpost.proxy.http1 import Http1Transport

    origin = f"http://127.0.0.1:{upstream_port}"
    transport = Http1Transport(parse_base_url(origin), Timeouts())

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [("authorization", "Bearer bench")]
        url = origin + scope["raw_path"].decode()
        async with transport.open(scope["method"], url, headers, None) as response:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        (name.encode(), value.encode())
                        for name, value in response.headers
                    ],
                }
            )
            while (chunk := await response.read_chunk()) is not None:
                await send(
                    {"type": "http.response.body", "body": chunk, "more_body": True}
                )
            await send({"type": "http.response.body", "body": b""})

    return app


async def serve(app: Any, port: int) -> None:
    """Serve ``app`` on 127.0.0.1:``port`` until killed."""
    from outpost.server.protocol import HttpServerProtocol, ServerLimits

    loop = asyncio.get_running_loop()
    connections: set[HttpServerProtocol] = set()
    limits = ServerLimits()
    server = await loop.create_server(
        lambda: HttpServerProtocol(app, limits, connections), "127.0.0.1", port
    )
    await server.serve_forever()


def serve_main(kind: str, port: int, upstream_port: int) -> None:
    """Entry point of the measured server process."""
    app = fixed_app if kind == "fixed" else forwarding_app(upstream_port)
    uvloop.run(serve(app, port))


def main(argv: list[str] | None = None) -> int:
    """Measure the fixed response, the bare forward and nginx; print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_main(args.serve[0], int(args.serve[1]), int(args.serve[2]))
        return 0

    root = Path(tempfile.mkdtemp(prefix="outpost-floor-"))
    ports = Ports(free_port(), free_port(), free_port(), free_port())
    fixtures.write_bodies(root)
    upstream = start_nginx(
        root,
        "upstream",
        fixtures.upstream_nginx_conf(root, ports),
        SIDE_CORE,
        ports.upstream,
    )
    anchor = start_nginx(
        root,
        "anchor",
        fixtures.anchor_nginx_conf(root, ports),
        PROXY_CORE,
        ports.anchor,
    )
    try:
        rows = [("nginx reverse proxy", _measure(anchor, ports.anchor, args.seconds))]
        anchor.stop()
        for kind, label in (
            ("fixed", "Outpost's server, fixed response"),
            ("forward", "Outpost's server and client, bare forward"),
        ):
            port = free_port()
            command = [
                sys.executable,
                "-m",
                "bench.floor",
                "--serve",
                kind,
                str(port),
                str(ports.upstream),
            ]
            service = Service(kind, command, cores=PROXY_CORE, log=root / kind)
            wait_for_port(port)
            try:
                rows.append((label, _measure(service, port, args.seconds)))
            finally:
                service.stop()
    finally:
        upstream.stop()

    print("| stack | req/s | CPU µs/req |")
    print("|---|--:|--:|")
    for label, result in rows:
        print(
            f"| {label} | {result['rps']:,.0f} | {result['cpu_us_per_request']:.1f} |"
        )
    return 0


def _measure(service: Service, port: int, seconds: float) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/v1/small.json"
    measure(service, url, seconds=1, connections=32)
    return measure(service, url, seconds=seconds, connections=32)


if __name__ == "__main__":
    sys.exit(main())
