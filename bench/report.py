"""Markdown tables and target checks for one benchmark result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

START = "<!-- results:start -->"
END = "<!-- results:end -->"


def _ms(microseconds: float) -> str:
    return f"{microseconds / 1000:.2f}"


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def scenario_table(results: dict[str, Any]) -> list[str]:
    """Return the main table: every scenario against every target."""
    lines = [
        "| response | target | req/s | MB/s | p50 ms | p99 ms | proxy CPU µs/req "
        "| peak RSS MiB |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for scenario, targets in results["scenarios"].items():
        for target, row in targets.items():
            lines.append(
                f"| {scenario} | {target} | {row['rps']:,.0f} "
                f"| {row['mb_per_s']:,.1f} | {_ms(row['p50_us'])} "
                f"| {_ms(row['p99_us'])} "
                f"| {_number(row.get('cpu_us_per_request'))} "
                f"| {_number(row.get('peak_rss_mb'))} |"
            )
    return lines


def ratio_table(results: dict[str, Any]) -> list[str]:
    """Return Outpost divided by nginx for CPU per request and throughput."""
    lines = [
        "| response | CPU/req Outpost ÷ nginx | req/s Outpost ÷ nginx |",
        "|---|--:|--:|",
    ]
    for scenario, targets in results["scenarios"].items():
        outpost, nginx = targets["outpost"], targets["nginx"]
        cpu = outpost["cpu_us_per_request"] / nginx["cpu_us_per_request"]
        rps = outpost["rps"] / nginx["rps"]
        lines.append(f"| {scenario} | {cpu:.2f} | {rps:.2f} |")
    return lines


def paced_table(results: dict[str, Any]) -> list[str]:
    """Return latency at a fixed, unsaturated rate, and what each proxy adds."""
    direct = results["paced"]["direct"]
    lines = [
        "| target | req/s | p50 ms | p99 ms | added p99 ms | proxy CPU µs/req |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for target, row in results["paced"].items():
        added = (row["p99_us"] - direct["p99_us"]) / 1000
        lines.append(
            f"| {target} | {row['rps']:,.0f} | {_ms(row['p50_us'])} "
            f"| {_ms(row['p99_us'])} | {added:.2f} "
            f"| {_number(row.get('cpu_us_per_request'))} |"
        )
    return lines


def first_event_table(results: dict[str, Any]) -> list[str]:
    """Return time to the first server-sent event per target."""
    lines = ["| target | p50 ms | p90 ms | max ms |", "|---|--:|--:|--:|"]
    for target, row in results["first_event_ms"].items():
        lines.append(
            f"| {target} | {row['p50_ms']:.2f} | {row['p90_ms']:.2f} "
            f"| {row['max_ms']:.2f} |"
        )
    return lines


def workers_table(results: dict[str, Any]) -> list[str]:
    """Return small-response throughput with one and two workers."""
    workers = results.get("workers")
    if not workers:
        return ["(not run)"]
    lines = [
        "| workers | req/s | p99 ms | CPU µs/req |",
        "|--:|--:|--:|--:|",
    ]
    for name, row in workers.items():
        lines.append(
            f"| {name.split('_')[0]} | {row['rps']:,.0f} | {_ms(row['p99_us'])} "
            f"| {_number(row.get('cpu_us_per_request'))} |"
        )
    return lines


def check_targets(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Return (target, measured value, met) for every performance target."""
    small = results["scenarios"]["small_json"]
    cpu_ratio = (
        small["outpost"]["cpu_us_per_request"] / small["nginx"]["cpu_us_per_request"]
    )
    paced = results["paced"]
    added_p99 = (paced["outpost"]["p99_us"] - paced["direct"]["p99_us"]) / 1000
    saturated_added = (small["outpost"]["p99_us"] - small["direct"]["p99_us"]) / 1000
    first = results["first_event_ms"]
    first_added = first["outpost"]["p50_ms"] - first["direct"]["p50_ms"]
    stream = results["scenarios"]["stream_10m"]
    stream_share = stream["outpost"]["mb_per_s"] / stream["nginx"]["mb_per_s"]
    rss = max(row["peak_rss_mb"] for row in _outpost_rows(results))
    checks = [
        (
            "small response: proxy CPU ≤ 4x nginx",
            f"{cpu_ratio:.2f}x",
            cpu_ratio <= 4,
        ),
        ("stretch: proxy CPU ≤ 3x nginx", f"{cpu_ratio:.2f}x", cpu_ratio <= 3),
        (
            "p99 added latency ≤ 2 ms, 32 connections, paced",
            f"{added_p99:.2f} ms",
            added_p99 <= 2,
        ),
        (
            "p99 added latency ≤ 2 ms, 32 connections, saturated",
            f"{saturated_added:.2f} ms",
            saturated_added <= 2,
        ),
        (
            "first SSE event within 5 ms of direct",
            f"+{first_added:.2f} ms",
            first_added <= 5,
        ),
        (
            "10 MB stream ≥ 50% of nginx",
            f"{stream_share * 100:.0f}%",
            stream_share >= 0.5,
        ),
        ("peak RSS ≤ 150 MiB per worker", f"{rss:.0f} MiB", rss <= 150),
    ]
    workers = results.get("workers")
    if workers:
        scale = workers["2_workers"]["rps"] / workers["1_workers"]["rps"]
        checks.append(("2 workers ≥ 1.7x one worker", f"{scale:.2f}x", scale >= 1.7))
    return checks


def _outpost_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [targets["outpost"] for targets in results["scenarios"].values()]


def render_markdown(results: dict[str, Any]) -> str:
    """Return every table of one run as Markdown."""
    machine = results["machine"]
    lines = [
        f"Run of {results['date']} with `{results['command']}`, "
        f"{results['seconds_per_run']:g} s per measured run.",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, Linux "
        f"{machine['kernel']}, Python {machine['python']}, {machine['nginx']}.",
        f"Outpost access lines written in the pinned run: {results['access_lines']:,}.",
        "",
        "### Throughput, latency, CPU and memory at saturation",
        "",
        *scenario_table(results),
        "",
        "### Outpost compared with nginx",
        "",
        *ratio_table(results),
        "",
        f"### Small response at a fixed rate (each of 32 connections waits "
        f"{results['paced_delay_ms']:g} ms between requests)",
        "",
        *paced_table(results),
        "",
        "### Time to the first server-sent event",
        "",
        *first_event_table(results),
        "",
        "### Workers, both cores shared with wrk and the upstream",
        "",
        *workers_table(results),
        "",
        "### Targets",
        "",
        "| target | measured | met |",
        "|---|--:|---|",
    ]
    for name, value, met in check_targets(results):
        lines.append(f"| {name} | {value} | {'yes' if met else 'no'} |")
    return "\n".join(lines) + "\n"


def update_docs(path: Path, table: str) -> None:
    """Replace the generated block of ``path`` with ``table``."""
    text = path.read_text() if path.exists() else f"{START}\n{END}\n"
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{table}{END}{tail}")
