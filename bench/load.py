"""Load generation with wrk, and the time-to-first-event probe."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import time
from pathlib import Path

from bench.fixtures import HOST_PSK
from bench.procs import RssSampler, Service

LUA_SCRIPT = Path(__file__).with_name("wrk.lua")
WRK_CORE = "0"


def run_wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    provider: str | None = None,
    delay_ms: float | None = None,
) -> dict[str, float]:
    """Run wrk on one core against ``url``; return its summary line as a dict."""
    env = dict(os.environ)
    env["BENCH_PSK"] = HOST_PSK
    if provider:
        env["BENCH_PROVIDER"] = provider
    if delay_ms is not None:
        env["BENCH_DELAY_MS"] = str(delay_ms)
    command = [
        "taskset",
        "-c",
        WRK_CORE,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]
    output = subprocess.run(
        command, env=env, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    for line in output.splitlines():
        if line.startswith("WRK_SUMMARY "):
            summary: dict[str, float] = json.loads(line.split(" ", 1)[1])
            return summary
    raise RuntimeError(f"wrk printed no summary line:\n{output}")


def measure(
    service: Service | None,
    url: str,
    *,
    seconds: float,
    connections: int,
    provider: str | None = None,
    delay_ms: float | None = None,
) -> dict[str, float]:
    """Run wrk and add the server's CPU time per request and its peak RSS."""
    if service is None:
        summary = run_wrk(
            url,
            seconds=seconds,
            connections=connections,
            provider=provider,
            delay_ms=delay_ms,
        )
        return _derive(summary, None, None)

    with RssSampler(service.workers()) as rss:
        before = service.cpu_seconds()
        summary = run_wrk(
            url,
            seconds=seconds,
            connections=connections,
            provider=provider,
            delay_ms=delay_ms,
        )
        cpu = service.cpu_seconds() - before
    return _derive(summary, cpu, rss.max_mb())


def _derive(
    summary: dict[str, float], cpu: float | None, rss_mb: float | None
) -> dict[str, float]:
    requests = max(summary["requests"], 1)
    seconds = summary["duration_us"] / 1e6
    result = dict(summary)
    result["rps"] = summary["requests"] / seconds
    result["mb_per_s"] = summary["bytes"] / seconds / 1e6
    if cpu is not None:
        result["cpu_us_per_request"] = cpu * 1e6 / requests
        result["cpu_seconds"] = cpu
    if rss_mb is not None:
        result["peak_rss_mb"] = rss_mb
    return result


def first_event_ms(
    port: int, path: str, provider: str | None, *, count: int = 40
) -> dict[str, float]:
    """Time from sending a GET to the first ``data:`` byte, over keep-alive.

    Each exchange reads the stream to its end before the next one starts.
    """
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", f"X-Outpost-Auth: {HOST_PSK}"]
    if provider:
        lines.append(f"X-Provider: {provider}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    samples: list[float] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            started = time.perf_counter()
            sock.sendall(request)
            received = b""
            while b"data:" not in received:
                received += _recv(sock)
            samples.append((time.perf_counter() - started) * 1000)
            while not received.endswith(b"0\r\n\r\n"):
                received += _recv(sock)
    samples.sort()
    return {
        "p50_ms": statistics.median(samples),
        "p90_ms": samples[int(len(samples) * 0.9) - 1],
        "max_ms": samples[-1],
    }


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise RuntimeError("the server closed the connection mid-stream")
    return data
