"""Files for one benchmark run: upstream response bodies, nginx configs, Outpost config.

Everything is written under one scratch directory and every server listens
on 127.0.0.1 only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

# Values the load generator sends and the anchors inject. They protect
# nothing: every server in the run is on loopback and lives for one run.
HOST_PSK = "bench-psk-4f1c2a9e7b3d5608"
UPSTREAM_TOKEN = "bench-upstream-token-91d3"
PROVIDER = "bench"
SSE_PROVIDER = "sse"

SMALL_SIZE = 300
LARGE_SIZE = 100 * 1024
STREAM_SIZE = 10 * 1024 * 1024
SSE_EVENTS = 20


@dataclass(frozen=True)
class Ports:
    """The loopback ports of one run."""

    upstream: int
    sse: int
    anchor: int
    outpost: int


def json_body(size: int) -> bytes:
    """Return a JSON object of exactly ``size`` bytes."""
    head = b'{"id":"resp_0001","object":"list","data":"'
    tail = b'"}'
    filler = size - len(head) - len(tail) - 1
    return head + b"x" * filler + tail + b"\n"


def sse_body(events: int) -> bytes:
    """Return a server-sent event stream like a streamed completion."""
    lines = []
    for index in range(events):
        data = {"id": "chatcmpl-1", "index": index, "delta": {"content": "token "}}
        lines.append(f"data: {json.dumps(data)}\n\n")
    lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def write_bodies(root: Path) -> None:
    """Write the fixed response bodies that the upstream nginx serves from disk."""
    www = root / "www" / "v1"
    www.mkdir(parents=True, exist_ok=True)
    (www / "small.json").write_bytes(json_body(SMALL_SIZE))
    (www / "large.json").write_bytes(json_body(LARGE_SIZE))
    (www / "stream.bin").write_bytes(bytes(range(256)) * (STREAM_SIZE // 256))
    (www / "events.sse").write_bytes(sse_body(SSE_EVENTS))


def upstream_nginx_conf(root: Path, ports: Ports) -> str:
    """Return the config of the upstream: static files, long keep-alive."""
    temp = root / "upstream-temp"
    temp.mkdir(exist_ok=True)
    return f"""
user root;
worker_processes 1;
pid {root}/upstream.pid;
error_log {root}/upstream.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    types {{
        application/json json;
        text/event-stream sse;
        application/octet-stream bin;
    }}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    etag off;
    server {{
        listen 127.0.0.1:{ports.upstream};
        root {root}/www;
        location / {{ }}
    }}
}}
"""


def anchor_nginx_conf(root: Path, ports: Ports) -> str:
    """Return the config of the nginx reverse proxy used as the anchor.

    It does what Outpost does on the wire: drops the caller headers, injects
    the credential, keeps a pool of upstream connections, writes a JSON
    access line per request, and streams server-sent events unbuffered.
    """
    temp = root / "anchor-temp"
    temp.mkdir(exist_ok=True)
    proxy = f"""
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer {UPSTREAM_TOKEN}";
            proxy_set_header X-Outpost-Auth "";
            proxy_set_header X-Provider "";"""
    return f"""
user root;
worker_processes 1;
pid {root}/anchor.pid;
error_log {root}/anchor.error.log warn;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    log_format json escape=json '{{"time":"$time_iso8601","request_id":'
        '"$request_id","client_ip":"$remote_addr","method":"$request_method",'
        '"path":"$uri","status":$status,"upstream_status":"$upstream_status",'
        '"bytes_out":$bytes_sent,"total_ms":$request_time,'
        '"upstream_ms":"$upstream_response_time"}}';
    access_log {root}/anchor.access.log json buffer=64k flush=1s;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    upstream backend {{
        server 127.0.0.1:{ports.upstream};
        keepalive 64;
    }}
    upstream sse_backend {{
        server 127.0.0.1:{ports.sse};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{ports.anchor};
        location /sse/ {{
            proxy_pass http://sse_backend/;
            proxy_buffering off;{proxy}
        }}
        location / {{
            proxy_pass http://backend;
            proxy_buffer_size 16k;
            proxy_buffers 64 64k;
            proxy_busy_buffers_size 256k;
            proxy_max_temp_file_size 0;{proxy}
        }}
    }}
}}
"""


def allow_rules() -> list[dict[str, object]]:
    """Return 50 allow rules; the benchmark's paths match only the last ones."""
    rules: list[dict[str, object]] = []
    for index in range(23):
        rules.append(
            {
                "path": f"/v2/tenants/{{tenant}}/collection{index}/*",
                "methods": ["GET"],
                "category": "read",
            }
        )
        rules.append(
            {
                "path": f"/v2/tenants/{{tenant}}/collection{index}",
                "methods": ["POST"],
                "category": "write",
            }
        )
    rules.append({"path": "/v2/admin/**", "methods": ["DELETE"], "sensitive": True})
    rules.append({"path": "/v1/events.sse", "methods": ["GET"], "category": "stream"})
    rules.append({"path": "/v1/*.bin", "methods": ["GET"], "category": "read"})
    rules.append({"path": "/v1/{name}", "methods": ["GET", "HEAD"], "category": "read"})
    assert len(rules) == 50
    return rules


def rate_limits() -> dict[str, list[dict[str, int]]]:
    """Return two windows per category, high enough never to reject."""
    windows = [
        {"capacity": 1_000_000, "window_ms": 1000},
        {"capacity": 100_000_000, "window_ms": 3_600_000},
    ]
    return {name: windows for name in ("default", "read", "write", "stream")}


def write_outpost_config(root: Path, ports: Ports) -> tuple[Path, Path]:
    """Write the providers directory and hosts.yaml; return both paths."""
    providers = root / "providers"
    providers.mkdir(exist_ok=True)
    bench = {
        "name": PROVIDER,
        "base_url": f"http://127.0.0.1:{ports.upstream}",
        "auth": {"type": "bearer_static", "env": "BENCH_UPSTREAM_TOKEN"},
        "forwarding": {
            "mode": "allowlist",
            "allow": allow_rules(),
            "deny": ["/v1/internal/**"],
            "rate_limits": rate_limits(),
        },
    }
    sse = {
        "name": SSE_PROVIDER,
        "base_url": f"http://127.0.0.1:{ports.sse}",
        "auth": {"type": "bearer_static", "env": "BENCH_UPSTREAM_TOKEN"},
        "forwarding": {"mode": "transparent", "rate_limits": rate_limits()},
    }
    for spec in (bench, sse):
        path = providers / f"{spec['name']}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))

    hosts = root / "hosts.yaml"
    entry = {
        "id": "bench-agent",
        "cidrs": ["127.0.0.0/8"],
        "auth_token_env": "BENCH_HOST_PSK",
        "can_call_sensitive": False,
    }
    hosts.write_text(yaml.safe_dump({"hosts": [entry]}, sort_keys=False))
    return providers, hosts
