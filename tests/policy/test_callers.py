"""Tests for caller identity: client address resolution, host lookup, the
pre-shared key check and provider access."""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
from typing import Any

import pytest

from outpost.config.models import HostsFile
from outpost.errors import (
    AuthRequiredError,
    BadRequestError,
    HostDeniedError,
    ProviderDeniedError,
)
from outpost.policy import callers
from outpost.policy.callers import Caller, HostPolicy, IPAddress, check_provider
from outpost.secret import Secret

PSK_1 = "psk-test-agent-1"
PSK_2 = "psk-test-agent-2"


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def hosts(*entries: dict[str, Any]) -> HostsFile:
    return HostsFile.model_validate({"hosts": list(entries)})


def policy_with(
    *entries: dict[str, Any],
    psks: dict[str, Secret] | None = None,
    trusted: list[str] | None = None,
) -> HostPolicy:
    return HostPolicy(hosts(*entries), psks or {}, trusted or [])


TEN: dict[str, Any] = {"id": "ten", "cidrs": ["10.0.0.0/8"], "providers": ["github"]}


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        pytest.param("127.0.0.1", [], [], "127.0.0.1", id="peer"),
        pytest.param(
            "127.0.0.1",
            [b"10.1.2.3"],
            [],
            "127.0.0.1",
            id="forwarded-for-ignored-from-untrusted-peer",
        ),
        pytest.param(
            "127.0.0.1",
            [b"10.1.2.3, 203.0.113.7"],
            ["127.0.0.1/32"],
            "203.0.113.7",
            id="rightmost-untrusted-wins",
        ),
        pytest.param(
            "127.0.0.1",
            [b"203.0.113.7, 10.1.2.3"],
            ["127.0.0.1/32"],
            "10.1.2.3",
            id="leftmost-spoof-ignored",
        ),
        pytest.param(
            "127.0.0.1",
            [b"10.1.2.3", b"192.168.0.9"],
            ["127.0.0.1/32", "192.168.0.0/16"],
            "10.1.2.3",
            id="header-lines-combined-trusted-skipped",
        ),
        pytest.param(
            "127.0.0.1",
            [b"192.168.0.1, 192.168.0.2"],
            ["127.0.0.1/32", "192.168.0.0/16"],
            "192.168.0.1",
            id="all-trusted-takes-leftmost",
        ),
        pytest.param(
            "127.0.0.1",
            [],
            ["127.0.0.1/32"],
            "127.0.0.1",
            id="trusted-peer-without-header",
        ),
        pytest.param("::ffff:127.0.0.1", [], [], "127.0.0.1", id="mapped-peer"),
        pytest.param(
            "::ffff:127.0.0.1",
            [b"::ffff:10.1.2.3"],
            ["127.0.0.1/32"],
            "10.1.2.3",
            id="mapped-peer-trusted-mapped-entry",
        ),
        pytest.param(
            "::1", [b"2001:db8::1"], ["::1/128"], "2001:db8::1", id="ipv6-chain"
        ),
    ],
)
def test_resolve_client_ip(
    peer: str, forwarded: list[bytes], trusted: list[str], expected: str
) -> None:
    policy = policy_with(TEN, trusted=trusted)
    assert policy.resolve_client_ip(peer, forwarded) == ip(expected)


@pytest.mark.parametrize(
    "forwarded",
    [
        pytest.param([b"10.1.2.3, not-an-ip"], id="garbage-entry"),
        pytest.param([b"not-an-ip, 10.1.2.3"], id="garbage-left-entry"),
        pytest.param([b"10.1.2.3,,10.1.2.4"], id="empty-entry"),
        pytest.param([b""], id="empty-header"),
        pytest.param([b"10.1.2.3:8080"], id="entry-with-port"),
        pytest.param(["10.1.2.3\u0661".encode()], id="non-ascii-digit"),
        pytest.param([b"for=10.1.2.3"], id="forwarded-syntax"),
    ],
)
def test_resolve_client_ip_fails_closed(forwarded: list[bytes]) -> None:
    policy = policy_with(TEN, trusted=["127.0.0.1/32"])
    with pytest.raises(BadRequestError) as info:
        policy.resolve_client_ip("127.0.0.1", forwarded)
    assert info.value.reason == "invalid_forwarded_for"


def test_unreadable_peer_is_denied() -> None:
    with pytest.raises(HostDeniedError) as info:
        policy_with(TEN).resolve_client_ip("/run/outpost.sock", [])
    assert info.value.reason == "unknown_peer"


NESTED: list[dict[str, Any]] = [
    {"id": "wide", "cidrs": ["10.0.0.0/8"]},
    {"id": "narrow", "cidrs": ["10.1.0.0/16"], "can_call_sensitive": True},
    {"id": "narrow-twin", "cidrs": ["10.1.0.0/16"]},
    {"id": "v6", "cidrs": ["::/0"]},
    {"id": "mapped", "cidrs": ["::ffff:192.168.0.0/112"]},
]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        pytest.param("10.9.9.9", "wide", id="only-match"),
        pytest.param("10.1.2.3", "narrow", id="longest-prefix-wins"),
        pytest.param("::ffff:10.1.2.3", "narrow", id="mapped-address-unmapped"),
        pytest.param("2001:db8::1", "v6", id="ipv6"),
        pytest.param("192.168.4.4", "mapped", id="mapped-network-unmapped"),
    ],
)
def test_identify_picks_host(address: str, expected: str) -> None:
    caller = policy_with(*NESTED).identify(ip(address), [])
    assert caller.id == expected
    assert caller.kind == "host"


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("127.0.0.1", id="ipv4-not-listed"),
        pytest.param("192.169.0.1", id="mapped-network-not-widened"),
    ],
)
def test_identify_denies_unlisted(address: str) -> None:
    with pytest.raises(HostDeniedError) as info:
        policy_with(*NESTED[:3], NESTED[4]).identify(ip(address), [])
    assert info.value.reason == "no_host"


def test_ipv4_network_does_not_cover_ipv6_loopback() -> None:
    policy = policy_with({"id": "local", "cidrs": ["127.0.0.0/8"]})
    with pytest.raises(HostDeniedError):
        policy.identify(ip("::1"), [])


def test_mapped_peer_meets_ipv4_deny() -> None:
    policy = policy_with({"id": "v6-only", "cidrs": ["2001:db8::/32"]})
    client = policy.resolve_client_ip("::ffff:127.0.0.1", [])
    with pytest.raises(HostDeniedError):
        policy.identify(client, [])


def test_identify_copies_rights() -> None:
    caller = policy_with(*NESTED).identify(ip("10.1.2.3"), [])
    assert caller == Caller(
        id="narrow",
        kind="host",
        client_ip=ip("10.1.2.3"),
        can_call_sensitive=True,
        providers=None,
    )


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("127.0.0.1", id="ipv4-loopback"),
        pytest.param("127.200.0.1", id="ipv4-loopback-range"),
        pytest.param("::1", id="ipv6-loopback"),
        pytest.param("::ffff:127.0.0.1", id="mapped-loopback"),
    ],
)
def test_no_hosts_file_admits_loopback(address: str) -> None:
    caller = HostPolicy(None, {}, []).identify(ip(address), [])
    assert caller.id == "loopback"
    assert caller.can_call_sensitive is True
    assert caller.providers is None


@pytest.mark.parametrize(
    "address",
    [pytest.param("10.0.0.1", id="private"), pytest.param("::2", id="ipv6-other")],
)
def test_no_hosts_file_denies_others(address: str) -> None:
    with pytest.raises(HostDeniedError):
        HostPolicy(None, {}, []).identify(ip(address), [])


def test_empty_hosts_file_denies_loopback() -> None:
    with pytest.raises(HostDeniedError):
        HostPolicy(hosts(), {}, []).identify(ip("127.0.0.1"), [])


AGENTS: list[dict[str, Any]] = [
    {"id": "agent-1", "cidrs": ["127.0.0.1/32"], "auth_token_env": "AGENT_1"},
    {"id": "agent-2", "cidrs": ["127.0.0.2/32"], "auth_token_env": "AGENT_2"},
    {"id": "open", "cidrs": ["127.0.0.3/32"]},
]
AGENT_PSKS = {"agent-1": Secret(PSK_1), "agent-2": Secret(PSK_2)}


def agents() -> HostPolicy:
    return policy_with(*AGENTS, psks=AGENT_PSKS)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([], id="psk-absent"),
        pytest.param([b""], id="psk-empty"),
        pytest.param([b"psk-test-agent-1-WRONG-0123456789"], id="psk-wrong"),
        pytest.param([PSK_2.encode()], id="psk-of-other-host"),
        pytest.param(["ключ".encode()], id="psk-non-ascii"),
        pytest.param([b"\xff\xfe"], id="psk-invalid-utf8"),
        pytest.param([PSK_1.encode(), b"wrong"], id="psk-twice-correct-first"),
        pytest.param([b"wrong", PSK_1.encode()], id="psk-twice-correct-last"),
        pytest.param([PSK_1.encode(), PSK_1.encode()], id="psk-twice-both-correct"),
        pytest.param([PSK_1.encode() + b" "], id="psk-trailing-space"),
    ],
)
def test_psk_refused_identically(values: list[bytes]) -> None:
    with pytest.raises(AuthRequiredError) as info:
        agents().identify(ip("127.0.0.1"), values)
    error = info.value
    assert error.reason == "psk_invalid"
    assert error.message == callers._PSK_MESSAGE
    assert ("www-authenticate", 'X-Outpost-Auth realm="outpost"') in error.headers
    for value in values:
        if value:
            assert value.decode("utf-8", "replace") not in error.message


def test_psk_accepted() -> None:
    caller = agents().identify(ip("127.0.0.1"), [PSK_1.encode()])
    assert caller.id == "agent-1"


def test_psk_checked_again_for_a_known_address() -> None:
    policy = agents()
    first = policy.identify(ip("127.0.0.1"), [PSK_1.encode()])

    with pytest.raises(AuthRequiredError):
        policy.identify(ip("127.0.0.1"), [b"wrong"])
    with pytest.raises(AuthRequiredError):
        policy.identify(ip("127.0.0.1"), [])
    assert policy.identify(ip("127.0.0.1"), [PSK_1.encode()]) == first


def test_known_addresses_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(callers, "_CALLER_CACHE_SIZE", 4)
    policy = policy_with({"id": "net", "cidrs": ["10.0.0.0/8"]})
    for index in range(10):
        caller = policy.identify(ip(f"10.0.0.{index}"), [])
        assert caller.client_ip == ip(f"10.0.0.{index}")
    assert len(policy._callers) <= 4


def test_host_without_psk_needs_none() -> None:
    assert agents().identify(ip("127.0.0.3"), []).id == "open"


def test_psk_compared_on_equal_length_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[object, object]] = []
    compare = hmac.compare_digest

    def spy(first: bytes, second: bytes) -> bool:
        seen.append((first, second))
        return compare(first, second)

    monkeypatch.setattr("outpost.secret.hmac.compare_digest", spy)
    presented: tuple[list[bytes], ...] = (
        [PSK_1.encode()],
        [b"short"],
        [],
        [b"x" * 500],
        ["ключ".encode()],
        [b""],
        [PSK_1.encode(), b"wrong"],
    )
    for values in presented:
        with contextlib.suppress(AuthRequiredError):
            agents().identify(ip("127.0.0.1"), values)
    assert len(seen) == len(presented)
    for first, second in seen:
        assert isinstance(first, bytes)
        assert isinstance(second, bytes)
        assert len(first) == len(second) == 32


def test_missing_psk_is_configuration_error() -> None:
    with pytest.raises(ValueError, match="'agent-1'"):
        policy_with(AGENTS[0])


def test_empty_psk_is_configuration_error() -> None:
    with pytest.raises(ValueError, match="AGENT_1"):
        policy_with(AGENTS[0], psks={"agent-1": Secret("")})


def test_psk_for_unknown_host_is_configuration_error() -> None:
    with pytest.raises(ValueError, match="'ghost'"):
        policy_with(*AGENTS, psks={**AGENT_PSKS, "ghost": Secret("x")})


def test_equal_prefix_first_in_file_wins() -> None:
    caller = policy_with(*NESTED).identify(ip("10.1.0.1"), [])
    assert caller.id == "narrow"


@pytest.mark.parametrize(
    ("provider", "allowed"),
    [
        pytest.param("github", True, id="listed"),
        pytest.param("GitHub", True, id="listed-any-case"),
        pytest.param("slack", False, id="not-listed"),
    ],
)
def test_provider_access(provider: str, allowed: bool) -> None:
    caller = policy_with(TEN).identify(ip("10.0.0.1"), [])
    assert caller.may_use(provider) is allowed
    if allowed:
        check_provider(caller, provider)
        return
    with pytest.raises(ProviderDeniedError) as info:
        check_provider(caller, provider)
    assert info.value.reason == "provider_not_listed"


def test_caller_without_provider_list_may_use_all() -> None:
    caller = policy_with(*NESTED).identify(ip("10.9.9.9"), [])
    assert caller.may_use("anything")
