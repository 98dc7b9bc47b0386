"""Caller identity against a real Outpost process: address, key and rights.

The client address is chosen by binding the client socket (127.0.0.1,
127.0.0.2, ::1), and every request is written byte for byte, so that
header tricks (repeated lines, raw UTF-8, empty values) reach Outpost as
sent. Private and documentation addresses appear only as header values.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TEST_SECRET, StartOutpost
from tests.support.outpost import OutpostServer
from tests.support.rawhttp import RawResponse, request_bytes, send_raw
from tests.support.rejections import access_line, assert_envelope, new_request_id
from tests.support.upstream import RecordedRequest, RecordingUpstream

AGENT1_PSK = "psk-test-agent-1"
AGENT2_PSK = "psk-test-agent-2"
SECRET_ENV = {"OUTPOST_TEST_SECRET": TEST_SECRET}
HIGH_LIMITS = {"default": [{"capacity": 100000, "window_ms": 1000}]}
WWW_AUTHENTICATE = 'X-Outpost-Auth realm="outpost"'
MANAGEMENT_PATHS = ["/readyz", "/providers", "/metrics", "/openapi.json", "/docs"]
# SIOCGIFADDR: the Linux ioctl that reads the IPv4 address of an interface.
SIOCGIFADDR = 0x8915


def provider(name: str, base_url: str, **forwarding: Any) -> dict[str, Any]:
    """Return a bearer provider named ``name`` whose upstream is ``base_url``."""
    return {
        "name": name,
        "base_url": base_url,
        "auth": {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"},
        "forwarding": {"rate_limits": HIGH_LIMITS, **forwarding},
    }


def host(identifier: str, cidr: str, **fields: Any) -> dict[str, Any]:
    """Return one hosts.yaml entry."""
    return {"id": identifier, "cidrs": [cidr], **fields}


@dataclass
class Client:
    """Sends raw requests to one Outpost from a chosen local address."""

    outpost: OutpostServer
    upstream: RecordingUpstream

    def send(
        self,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        *,
        method: str = "GET",
        source: str = "127.0.0.1",
        server: str = "127.0.0.1",
    ) -> tuple[RawResponse, list[RecordedRequest]]:
        """Send one request; return the response and what the upstream received."""
        data = request_bytes(method, target, headers)
        before = self.upstream.count
        response = send_raw(self.outpost.port, data, host=server, source=source)
        return response, self.upstream.requests[before:]


def start_client(
    start_outpost: StartOutpost,
    upstream: RecordingUpstream,
    hosts: dict[str, Any] | None,
    **kwargs: Any,
) -> Client:
    """Start Outpost with one transparent provider ``github`` and ``hosts``."""
    outpost = start_outpost(
        [provider("github", upstream.url)], hosts=hosts, env=SECRET_ENV, **kwargs
    )
    return Client(outpost, upstream)


# --- Two agents with keys, different providers and different rights ---------


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """Outpost with agent-1 on 127.0.0.1 and agent-2 on 127.0.0.2.

    agent-1 may use github and pay but no sensitive call; agent-2 may use
    only pay, sensitive calls included. No host may use ``other``.
    """
    upstream = RecordingUpstream()
    pay_rules = [
        {"path": "/charges", "methods": ["GET"]},
        {"path": "/charges", "methods": ["POST"], "sensitive": True},
    ]
    providers = [
        provider("github", upstream.url),
        provider("pay", upstream.url, mode="allowlist", allow=pay_rules),
        provider("other", upstream.url),
    ]
    hosts = {
        "hosts": [
            host(
                "agent-1",
                "127.0.0.1/32",
                auth_token_env="AGENT1_KEY",
                providers=["GitHub", "pay"],
            ),
            host(
                "agent-2",
                "127.0.0.2/32",
                auth_token_env="AGENT2_KEY",
                providers=["pay"],
                can_call_sensitive=True,
            ),
        ]
    }
    env = {**SECRET_ENV, "AGENT1_KEY": AGENT1_PSK, "AGENT2_KEY": AGENT2_PSK}
    outpost = OutpostServer(
        tmp_path_factory.mktemp("outpost"), providers, hosts=hosts, env=env
    ).start()
    yield Client(outpost, upstream)
    outpost.stop()
    upstream.close()


def agent1(*headers: tuple[str, str]) -> list[tuple[str, str]]:
    """Return agent-1's key header followed by ``headers``."""
    return [("X-Outpost-Auth", AGENT1_PSK), *headers]


def agent2(*headers: tuple[str, str]) -> list[tuple[str, str]]:
    """Return agent-2's key header followed by ``headers``."""
    return [("X-Outpost-Auth", AGENT2_PSK), *headers]


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param([], id="absent"),
        pytest.param([""], id="empty"),
        pytest.param(["psk-test-agent-1-WRONG-0123456789"], id="wrong"),
        pytest.param(["psk-test-agent-"], id="prefix"),
        pytest.param(["ключ"], id="non-ascii"),
        pytest.param([AGENT2_PSK], id="other-host-key"),
        pytest.param([AGENT1_PSK, "wrong"], id="correct-then-wrong"),
        pytest.param(["wrong", AGENT1_PSK], id="wrong-then-correct"),
        pytest.param([AGENT1_PSK, AGENT1_PSK], id="correct-twice"),
        pytest.param([f"{AGENT1_PSK}, {AGENT1_PSK}"], id="comma-joined"),
    ],
)
def test_psk_failures_identical(agents: Client, keys: list[str]) -> None:
    request_id = new_request_id()
    headers = [("X-Outpost-Auth", key) for key in keys]
    headers += [("X-Provider", "github"), ("X-Request-Id", request_id)]

    response, received = agents.send("/repos/acme/app/issues", headers)

    error = assert_envelope(response, 401, "PROXY_AUTH_REQUIRED")
    assert error == {
        "code": "PROXY_AUTH_REQUIRED",
        "message": "this host must send its pre-shared key in one X-Outpost-Auth "
        "header; ask the operator for the key",
        "metadata": None,
    }
    assert response.header_values("www-authenticate") == [WWW_AUTHENTICATE]
    assert received == []
    for key in keys:
        if key:
            assert key.encode() not in response.raw + response.body
    assert access_line(agents.outpost, request_id)["reason"] == "psk_invalid"


def test_psk_failures_leave_no_trace(agents: Client) -> None:
    for key in ["ключ", "", "x" * 5000]:
        agents.send("/x", [("X-Outpost-Auth", key), ("X-Provider", "github")])

    output = agents.outpost.output()

    assert "Traceback" not in output
    assert "ключ" not in output
    assert AGENT1_PSK not in output
    assert AGENT2_PSK not in output
    assert TEST_SECRET not in output


def test_correct_psk_admitted(agents: Client) -> None:
    response, received = agents.send("/x", agent1(("X-Provider", "github")))

    assert response.status == 200
    assert len(received) == 1
    assert received[0].header_values("x-outpost-auth") == []


def test_unknown_host_denied(agents: Client) -> None:
    request_id = new_request_id()
    headers = agent1(("X-Provider", "github"), ("X-Request-Id", request_id))

    response, received = agents.send("/x", headers, source="127.0.0.3")

    error = assert_envelope(response, 403, "PROXY_HOST_DENIED")
    assert "127.0.0.3" in error["message"]
    assert received == []
    line = access_line(agents.outpost, request_id)
    assert line["client_ip"] == "127.0.0.3"
    assert line["reason"] == "no_host"


def test_unknown_host_learns_no_providers(agents: Client) -> None:
    headers = agent1(("X-Provider", "does-not-exist"))

    response, _ = agents.send("/x", headers, source="127.0.0.3")

    error = assert_envelope(response, 403, "PROXY_HOST_DENIED")
    assert error["metadata"] is None
    for name in (b"github", b"pay", b"other"):
        assert name not in response.body


def test_healthz_answers_unknown_host(agents: Client) -> None:
    response, received = agents.send("/healthz", source="127.0.0.3")

    assert response.status == 200
    assert response.json() == {"status": "ok"}
    assert received == []


def test_encoded_healthz_answers_known_host(agents: Client) -> None:
    response, received = agents.send("/%68ealthz", agent1())

    assert response.status == 200
    assert response.json() == {"status": "ok"}
    assert received == []


@pytest.mark.parametrize("path", MANAGEMENT_PATHS)
def test_management_denies_unknown_host(agents: Client, path: str) -> None:
    response, received = agents.send(path, agent1(), source="127.0.0.3")

    assert_envelope(response, 403, "PROXY_HOST_DENIED")
    assert received == []


@pytest.mark.parametrize("path", MANAGEMENT_PATHS)
def test_management_needs_psk(agents: Client, path: str) -> None:
    response, received = agents.send(path)

    assert_envelope(response, 401, "PROXY_AUTH_REQUIRED")
    assert received == []


@pytest.mark.parametrize(
    ("headers", "source", "expected"),
    [
        pytest.param(agent1(), "127.0.0.1", ["github", "pay"], id="agent-1"),
        pytest.param(agent2(), "127.0.0.2", ["pay"], id="agent-2"),
    ],
)
def test_providers_lists_only_usable(
    agents: Client, headers: list[tuple[str, str]], source: str, expected: list[str]
) -> None:
    response, _ = agents.send("/providers", headers, source=source)

    assert response.status == 200
    listed = response.json()["providers"]
    assert isinstance(listed, list)
    assert sorted(entry["name"] for entry in listed) == expected


def test_sensitive_rule_denied_without_right(agents: Client) -> None:
    request_id = new_request_id()
    headers = agent1(("X-Request-Id", request_id))

    response, received = agents.send(
        "/p/pay/charges", headers, method="POST", source="127.0.0.1"
    )

    assert_envelope(response, 403, "PROXY_SENSITIVE_DENIED")
    assert received == []
    line = access_line(agents.outpost, request_id)
    assert line["reason"] == "sensitive_route"
    assert line["host"] == "agent-1"


def test_transparent_write_denied_without_right(agents: Client) -> None:
    response, received = agents.send(
        "/p/github/repos/a/b/issues", agent1(), method="POST"
    )

    assert_envelope(response, 403, "PROXY_SENSITIVE_DENIED")
    assert received == []


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/p/pay/charges", [("X-HTTP-Method-Override", "POST")]),
        ("/p/pay/charges?_method=POST", []),
    ],
)
def test_override_cannot_reach_sensitive_rule(
    agents: Client, target: str, headers: list[tuple[str, str]]
) -> None:
    response, received = agents.send(target, agent1(*headers))

    assert_envelope(response, 403, "PROXY_SENSITIVE_DENIED")
    assert received == []


def test_sensitive_rule_allowed_with_right(agents: Client) -> None:
    response, received = agents.send(
        "/p/pay/charges", agent2(), method="POST", source="127.0.0.2"
    )

    assert response.status == 200
    assert [(request.method, request.target) for request in received] == [
        ("POST", "/charges")
    ]


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/x", [("X-Provider", "github")]),
        ("/x", [("X-Provider", "GITHUB")]),
        ("/p/github/x", []),
        ("/p/GitHub/x", []),
        ("/x", [("X-Provider", "other")]),
    ],
)
def test_provider_outside_host_list_denied(
    agents: Client, target: str, headers: list[tuple[str, str]]
) -> None:
    request_id = new_request_id()
    headers = agent2(*headers, ("X-Request-Id", request_id))

    response, received = agents.send(target, headers, source="127.0.0.2")

    assert_envelope(response, 403, "PROXY_PROVIDER_DENIED")
    assert received == []
    assert access_line(agents.outpost, request_id)["reason"] == "provider_not_granted"


@pytest.mark.parametrize(
    ("headers", "source", "usable"),
    [
        pytest.param(agent1(), "127.0.0.1", ["github", "pay"], id="agent-1"),
        pytest.param(agent2(), "127.0.0.2", ["pay"], id="agent-2"),
    ],
)
def test_unknown_provider_lists_host_providers(
    agents: Client, headers: list[tuple[str, str]], source: str, usable: list[str]
) -> None:
    headers = [*headers, ("X-Provider", "does-not-exist")]

    response, received = agents.send("/x", headers, source=source)

    error = assert_envelope(response, 400, "PROXY_UNKNOWN_PROVIDER")
    assert error["metadata"] == {"providers": usable}
    assert "other" not in response.body.decode()
    assert received == []


# --- Hosts files that admit nobody or only loopback --------------------------


def test_empty_hosts_denies_everyone(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    client = start_client(start_outpost, upstream, {"hosts": []})

    proxied, received = client.send("/p/github/x")
    ready, _ = client.send("/readyz")
    health, _ = client.send("/healthz")

    assert_envelope(proxied, 403, "PROXY_HOST_DENIED")
    assert_envelope(ready, 403, "PROXY_HOST_DENIED")
    assert health.status == 200
    assert received == []


def local_non_loopback_ipv4() -> str | None:
    """Return an IPv4 address of a local interface outside 127.0.0.0/8."""
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)
            except OSError:
                continue
        address = socket.inet_ntoa(answer[20:24])
        if not ipaddress.ip_address(address).is_loopback:
            return address
    return None


def test_no_hosts_file_admits_only_loopback(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    client = start_client(start_outpost, upstream, None)

    first, _ = client.send("/p/github/x", method="POST", source="127.0.0.1")
    second, _ = client.send("/p/github/x", method="POST", source="127.0.0.2")

    assert first.status == 200
    assert second.status == 200
    assert "only loopback callers" in client.outpost.output()
    outside = local_non_loopback_ipv4()
    if outside is None:
        pytest.skip("no local address outside loopback to call from")
    # The destination stays 127.0.0.1; only the source address differs.
    denied, received = client.send("/p/github/x", source=outside)
    assert_envelope(denied, 403, "PROXY_HOST_DENIED")
    assert received == []


# --- X-Forwarded-For ---------------------------------------------------------

TEN = host("ten", "10.0.0.0/8")
MAPPED = host("mapped", "::ffff:172.16.0.0/108")


def test_forwarded_headers_ignored_without_trusted_proxies(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    client = start_client(start_outpost, upstream, {"hosts": [TEN]})
    request_id = new_request_id()

    response, received = client.send(
        "/p/github/x",
        [
            ("X-Forwarded-For", "10.1.2.3"),
            ("X-Real-IP", "10.1.2.3"),
            ("Forwarded", "for=10.1.2.3"),
            ("X-Request-Id", request_id),
        ],
    )

    assert_envelope(response, 403, "PROXY_HOST_DENIED")
    assert received == []
    assert access_line(client.outpost, request_id)["client_ip"] == "127.0.0.1"


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """Outpost that believes X-Forwarded-For from 127.0.0.1 only.

    Host ``ten`` is 10.0.0.0/8; host ``mapped`` is written as the
    IPv4-mapped network ::ffff:172.16.0.0/108.
    """
    upstream = RecordingUpstream()
    outpost = OutpostServer(
        tmp_path_factory.mktemp("outpost"),
        [provider("github", upstream.url)],
        hosts={"hosts": [TEN, MAPPED]},
        env=SECRET_ENV,
        args=["--trusted-proxies", "127.0.0.1/32"],
    ).start()
    yield Client(outpost, upstream)
    outpost.stop()
    upstream.close()


@pytest.mark.parametrize(
    ("chain", "client_ip", "host_id"),
    [
        pytest.param(["203.0.113.7, 10.1.2.3"], "10.1.2.3", "ten", id="right-allowed"),
        pytest.param(["10.1.2.3, 203.0.113.7"], "203.0.113.7", None, id="left-spoof"),
        pytest.param(["203.0.113.7", "10.1.2.3"], "10.1.2.3", "ten", id="two-lines"),
        pytest.param(
            ["10.1.2.3", "203.0.113.7"], "203.0.113.7", None, id="lines-spoof"
        ),
        pytest.param(["10.1.2.3, 127.0.0.1"], "10.1.2.3", "ten", id="trusted-skipped"),
        pytest.param(["::ffff:10.1.2.3"], "10.1.2.3", "ten", id="mapped-entry"),
        pytest.param(["172.16.9.9"], "172.16.9.9", "mapped", id="mapped-network"),
        pytest.param(["::ffff:172.16.9.9"], "172.16.9.9", "mapped", id="mapped-both"),
        pytest.param(["172.32.0.1"], "172.32.0.1", None, id="mapped-not-widened"),
    ],
)
def test_forwarded_for_resolves_client(
    behind_proxy: Client, chain: list[str], client_ip: str, host_id: str | None
) -> None:
    request_id = new_request_id()
    headers = [("X-Forwarded-For", entry) for entry in chain]
    headers.append(("X-Request-Id", request_id))

    response, received = behind_proxy.send("/p/github/x", headers)

    line = access_line(behind_proxy.outpost, request_id)
    assert line["client_ip"] == client_ip
    assert line["host"] == host_id
    if host_id is None:
        assert_envelope(response, 403, "PROXY_HOST_DENIED")
        assert received == []
    else:
        assert response.status == 200
        assert len(received) == 1


@pytest.mark.parametrize(
    "value",
    [
        "10.1.2.3, not-an-ip",
        "",
        "10.1.2.3,",
        "10.1.2.3:8080",
        "[::1]",
        "unknown",
        "010.1.2.3",
        "167837955",
        "0x0a.1.2.3",
        "10.1.2.3/8",
    ],
)
def test_forwarded_for_junk_rejected(behind_proxy: Client, value: str) -> None:
    request_id = new_request_id()
    headers = [("X-Forwarded-For", value), ("X-Request-Id", request_id)]

    response, received = behind_proxy.send("/p/github/x", headers)

    assert_envelope(response, 400, "PROXY_BAD_REQUEST")
    assert received == []
    assert access_line(behind_proxy.outpost, request_id)["reason"] == (
        "invalid_forwarded_for"
    )


def test_forwarded_for_ignored_from_untrusted_peer(behind_proxy: Client) -> None:
    response, received = behind_proxy.send(
        "/p/github/x", [("X-Forwarded-For", "10.1.2.3")], source="127.0.0.2"
    )

    assert_envelope(response, 403, "PROXY_HOST_DENIED")
    assert received == []


def test_real_ip_and_forwarded_ignored(behind_proxy: Client) -> None:
    headers = [("X-Real-IP", "10.1.2.3"), ("Forwarded", "for=10.1.2.3")]

    response, received = behind_proxy.send("/p/github/x", headers)

    assert_envelope(response, 403, "PROXY_HOST_DENIED")
    assert received == []


def test_client_address_headers_not_forwarded(behind_proxy: Client) -> None:
    headers = [
        ("X-Forwarded-For", "203.0.113.7, 10.1.2.3"),
        ("X-Real-IP", "198.51.100.4"),
        ("Forwarded", "for=198.51.100.5;host=evil.example"),
        ("X-Forwarded-Host", "evil.example"),
    ]

    response, received = behind_proxy.send("/p/github/x", headers)

    assert response.status == 200
    assert len(received) == 1
    names = {name.lower() for name, _ in received[0].headers}
    assert not names & {"x-forwarded-for", "x-real-ip", "forwarded", "x-forwarded-host"}
    for value in (b"203.0.113.7", b"198.51.100", b"evil.example"):
        assert value not in received[0].raw_head


def test_check_accepts_mapped_network(tmp_path: Path) -> None:
    providers = tmp_path / "providers"
    providers.mkdir()
    (providers / "github.yaml").write_text(
        yaml.safe_dump(provider("github", "http://127.0.0.1:9"))
    )
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(yaml.safe_dump({"hosts": [host("ten", "::ffff:10.0.0.0/104")]}))
    command = [sys.executable, "-m", "outpost.cli.main", "check"]
    command += ["--providers", str(providers), "--hosts", str(hosts)]

    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**SECRET_ENV, "PATH": "/usr/bin:/bin"},
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "1 host(s)" in result.stdout


# --- IPv4-mapped peers on a dual-stack listener -------------------------------


def dual_stack_available() -> bool:
    """Return True if an IPv6 socket on :: also accepts IPv4 here."""
    if not socket.has_ipv6:
        return False
    try:
        bind_v6_only = Path("/proc/sys/net/ipv6/bindv6only").read_text().strip()
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return bind_v6_only == "0"


dual_stack = pytest.mark.skipif(
    not dual_stack_available(), reason="no dual-stack IPv6 loopback here"
)


@dual_stack
def test_mapped_peer_meets_ipv4_rule(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    hosts = {"hosts": [host("local", "127.0.0.0/8")]}
    client = start_client(start_outpost, upstream, hosts, args=["--host", "::"])
    request_id = new_request_id()

    over_ipv4, _ = client.send("/p/github/x", [("X-Request-Id", request_id)])
    over_ipv6, received = client.send("/p/github/x", source="::1", server="::1")

    assert over_ipv4.status == 200
    assert access_line(client.outpost, request_id)["client_ip"] == "127.0.0.1"
    assert_envelope(over_ipv6, 403, "PROXY_HOST_DENIED")
    assert received == []


@dual_stack
def test_mapped_peer_misses_ipv6_rule(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    hosts = {"hosts": [host("any-ipv6", "::/0")]}
    client = start_client(start_outpost, upstream, hosts, args=["--host", "::"])

    over_ipv4, received = client.send("/p/github/x")
    over_ipv6, _ = client.send("/p/github/x", source="::1", server="::1")

    assert_envelope(over_ipv4, 403, "PROXY_HOST_DENIED")
    assert received == []
    assert over_ipv6.status == 200


@dual_stack
def test_mapped_peer_trusted_as_proxy(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    client = start_client(
        start_outpost,
        upstream,
        {"hosts": [TEN]},
        args=["--host", "::", "--trusted-proxies", "127.0.0.1/32"],
    )
    request_id = new_request_id()
    headers = [("X-Forwarded-For", "::ffff:10.1.2.3"), ("X-Request-Id", request_id)]

    response, received = client.send("/p/github/x", headers)

    assert response.status == 200
    assert len(received) == 1
    line = access_line(client.outpost, request_id)
    assert line["client_ip"] == "10.1.2.3"
    assert line["host"] == "ten"
