"""End-to-end benchmark: Outpost next to nginx and the upstream served directly.

One command (``make bench``) installs nginx and wrk when missing, starts
every server on 127.0.0.1, measures, and writes ``bench/results/<time>.json``
plus the summary table in ``docs/benchmarks.md``. The proxy under test is
pinned to core 1; wrk, the upstream nginx and the SSE upstream run on core 0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import fixtures
from bench.fixtures import PROVIDER, SSE_PROVIDER, Ports
from bench.load import first_event_ms, measure
from bench.procs import Service, free_port, wait_for_port
from bench.report import render_markdown, update_docs

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
PROXY_CORE = "1"
SIDE_CORE = "0"

# name, path on the upstream, connections
SCENARIOS = [
    ("small_json", "/v1/small.json", 32),
    ("json_100k", "/v1/large.json", 32),
    ("stream_10m", "/v1/stream.bin", 8),
    ("sse", "/v1/events.sse", 32),
]
# 32 connections, each pausing 20 ms before its next request: about 1,600
# requests/s offered, under half of what one Outpost worker serves, so the
# latency shows the proxy's own delay rather than queueing.
PACED_DELAY_MS = 20.0


def ensure_tools() -> None:
    """Install nginx and wrk from the Debian archive when either is missing."""
    if shutil.which("nginx") and shutil.which("wrk"):
        return
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "nginx", "wrk"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def start_nginx(root: Path, name: str, conf: str, cores: str, port: int) -> Service:
    """Start one nginx with ``conf`` in the foreground and wait for its port."""
    path = root / f"{name}.conf"
    path.write_text(conf)
    command = ["nginx", "-p", str(root), "-c", str(path), "-g", "daemon off;"]
    service = Service(name, command, cores=cores, log=root / f"{name}.log")
    wait_for_port(port)
    return service


def start_outpost(root: Path, ports: Ports, workers: int, cores: str | None) -> Service:
    """Start ``outpost serve`` with the realistic config; stdout to a file."""
    providers, hosts = fixtures.write_outpost_config(root, ports)
    env = dict(os.environ)
    env["BENCH_HOST_PSK"] = fixtures.HOST_PSK
    env["BENCH_UPSTREAM_TOKEN"] = fixtures.UPSTREAM_TOKEN
    env["OUTPOST_STATE_FILE"] = str(root / "state.db")
    env["OUTPOST_LOG_LEVEL"] = "INFO"
    command = [
        sys.executable,
        "-m",
        "outpost.cli.main",
        "serve",
        "--providers",
        str(providers),
        "--hosts",
        str(hosts),
        "--port",
        str(ports.outpost),
        "--workers",
        str(workers),
    ]
    log = root / f"outpost-{workers}w.stdout"
    service = Service("outpost", command, cores=cores, log=log, env=env)
    wait_for_port(ports.outpost)
    # The port opens before every worker has built its application.
    time.sleep(1.0)
    return service


def run_scenarios(
    services: dict[str, Service | None], ports: Ports, seconds: float
) -> dict[str, Any]:
    """Measure every scenario against every target, one target at a time."""
    targets = {
        "direct": (ports.upstream, None),
        "nginx": (ports.anchor, None),
        "outpost": (ports.outpost, PROVIDER),
    }
    results: dict[str, Any] = {}
    for scenario, path, connections in SCENARIOS:
        results[scenario] = {}
        for target, (port, provider) in targets.items():
            url = f"http://127.0.0.1:{port}{path}"
            service = services[target]
            measure(service, url, seconds=1, connections=connections, provider=provider)
            result = measure(
                service,
                url,
                seconds=seconds,
                connections=connections,
                provider=provider,
            )
            results[scenario][target] = result
            _progress(scenario, target, result)
    return results


def run_paced(
    services: dict[str, Service | None], ports: Ports, seconds: float
) -> dict[str, Any]:
    """Measure latency for the small response at a rate well below saturation."""
    results: dict[str, Any] = {}
    for target, port, provider in (
        ("direct", ports.upstream, None),
        ("nginx", ports.anchor, None),
        ("outpost", ports.outpost, PROVIDER),
    ):
        url = f"http://127.0.0.1:{port}/v1/small.json"
        result = measure(
            services[target],
            url,
            seconds=seconds,
            connections=32,
            provider=provider,
            delay_ms=PACED_DELAY_MS,
        )
        results[target] = result
        _progress("small_json_paced", target, result)
    return results


def run_first_event(ports: Ports) -> dict[str, Any]:
    """Time to the first server-sent event: direct, via nginx, via Outpost."""
    return {
        "direct": first_event_ms(ports.sse, "/v1/chat", None),
        "nginx": first_event_ms(ports.anchor, "/sse/v1/chat", None),
        "outpost": first_event_ms(ports.outpost, "/v1/chat", SSE_PROVIDER),
    }


def run_workers(root: Path, ports: Ports, seconds: float) -> dict[str, Any]:
    """Small-response throughput with one and two workers on both cores."""
    results: dict[str, Any] = {}
    url = f"http://127.0.0.1:{ports.outpost}/v1/small.json"
    for workers in (1, 2):
        service = start_outpost(root, ports, workers, cores=None)
        try:
            measure(service, url, seconds=1, connections=32, provider=PROVIDER)
            result = measure(
                service, url, seconds=seconds, connections=32, provider=PROVIDER
            )
        finally:
            service.stop()
        results[f"{workers}_workers"] = result
        _progress("small_json_both_cores", f"outpost x{workers}", result)
    return results


def machine() -> dict[str, Any]:
    """Describe the machine and the software versions of this run."""
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": nginx.strip(),
    }


def count_access_lines(path: Path) -> int:
    """Count the access-log lines Outpost wrote, to show logging was on."""
    with path.open("rb") as handle:
        return sum(1 for line in handle if b'"decision"' in line)


def _progress(scenario: str, target: str, result: dict[str, Any]) -> None:
    cpu = result.get("cpu_us_per_request")
    cpu_text = "" if cpu is None else f" cpu {cpu:8.1f} us/req"
    print(
        f"{scenario:22} {target:12} {result['rps']:9.0f} req/s "
        f"p50 {result['p50_us'] / 1000:7.2f} ms p99 {result['p99_us'] / 1000:7.2f} ms"
        f"{cpu_text} non-2xx {result['non_2xx']} errors {result['errors']}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the whole suite; return the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="length of each measured run"
    )
    parser.add_argument(
        "--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md"
    )
    parser.add_argument(
        "--skip-workers", action="store_true", help="skip the --workers 2 runs"
    )
    args = parser.parse_args(argv)

    if (os.cpu_count() or 1) < 2:
        parser.error("the benchmark pins the proxy and the load to two cores")
    ensure_tools()
    root = Path(tempfile.mkdtemp(prefix="outpost-bench-"))
    ports = Ports(free_port(), free_port(), free_port(), free_port())
    fixtures.write_bodies(root)
    started = datetime.datetime.now(datetime.UTC)

    services: list[Service] = []
    try:
        upstream = start_nginx(
            root,
            "upstream",
            fixtures.upstream_nginx_conf(root, ports),
            SIDE_CORE,
            ports.upstream,
        )
        services.append(upstream)
        sse_command = [sys.executable, "-m", "bench.sse_upstream", str(ports.sse)]
        sse = Service("sse", sse_command, cores=SIDE_CORE, log=root / "sse.log")
        services.append(sse)
        wait_for_port(ports.sse)
        anchor = start_nginx(
            root,
            "anchor",
            fixtures.anchor_nginx_conf(root, ports),
            PROXY_CORE,
            ports.anchor,
        )
        services.append(anchor)
        outpost = start_outpost(root, ports, 1, PROXY_CORE)
        services.append(outpost)

        targets: dict[str, Service | None] = {
            "direct": None,
            "nginx": anchor,
            "outpost": outpost,
        }
        results: dict[str, Any] = {
            "date": started.isoformat(timespec="seconds"),
            "command": "make bench",
            "seconds_per_run": args.seconds,
            "machine": machine(),
            "scenarios": run_scenarios(targets, ports, args.seconds),
            "paced_delay_ms": PACED_DELAY_MS,
            "paced": run_paced(targets, ports, args.seconds),
            "first_event_ms": run_first_event(ports),
        }
        outpost.stop()
        services.remove(outpost)
        results["access_lines"] = count_access_lines(root / "outpost-1w.stdout")
        if not args.skip_workers:
            results["workers"] = run_workers(root, ports, args.seconds)
    finally:
        for service in services:
            service.stop()

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    table = render_markdown(results)
    print(table)
    print(f"results: {path.relative_to(ROOT)}")
    if not args.no_docs:
        update_docs(DOCS, table)
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
