"""Caller identity: who is making this request, and what may they do.

A caller is an identity object (:class:`Caller`), never a bare address, so
that other kinds of caller can join the pipeline without reshaping it. Today
the one kind is ``"host"``: an entry of ``hosts.yaml`` found by the client's
address and, when the entry sets ``auth_token_env``, proven by a pre-shared key.

Trust assumptions, written where the code relies on them:

- The client address is the socket peer. ``X-Forwarded-For`` is believed only
  when the peer is inside ``trusted_proxies``; the chain is then walked from
  the right, skipping trusted addresses, and the first untrusted one is the
  client (all trusted: the leftmost). One unparsable entry fails the request.
  ``X-Real-IP`` and ``Forwarded`` are never read.
- IPv4-mapped IPv6 addresses (``::ffff:10.1.2.3``) are treated as IPv4, for
  peers, forwarded entries and configured networks alike.
- The longest matching prefix picks the host; equal prefixes go to the first
  host in the file.
- Every way a pre-shared key can be wrong (absent, repeated, empty, not
  ASCII, not equal) gets the same 401 with the same message, and the key is
  compared through SHA-256 digests in constant time.

Without ``hosts.yaml`` only loopback (127.0.0.0/8 and ::1) may call, as the
implicit host ``loopback``. That host may make sensitive calls and use every
provider: a file-less setup is one developer on one machine, and with the
default ``treat_writes_as_sensitive`` every POST (an LLM completion too) is
sensitive, so anything less would leave the minimal setup unusable. Writing
a ``hosts.yaml`` is how to restrict it. ``hosts: []`` denies every caller.

This module must never echo a presented key, never read an address from a
header that an untrusted peer could set, and never widen a configured network.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, NoReturn

from outpost.config.models import HostEntry, HostsFile
from outpost.config.urls import IPNetwork, parse_cidr
from outpost.errors import (
    AuthRequiredError,
    BadRequestError,
    HostDeniedError,
    ProviderDeniedError,
)
from outpost.secret import Secret

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
CallerKind = Literal["host"]

LOOPBACK_HOST: Final = HostEntry(
    id="loopback",
    cidrs=["127.0.0.0/8", "::1/128"],
    can_call_sensitive=True,
    description="implicit host used when no hosts file is configured",
)
PSK_HEADER: Final = "x-outpost-auth"
# Addresses remembered per policy; the cache is emptied when it reaches
# this size, so a scan from many addresses cannot grow memory without bound.
_CALLER_CACHE_SIZE: Final = 4096
_PSK_MESSAGE: Final = (
    "this host must send its pre-shared key in one X-Outpost-Auth header; "
    "ask the operator for the key"
)


@dataclass(frozen=True)
class Caller:
    """An identified caller: who it is and what it may do.

    ``providers`` is None when every provider is allowed.
    """

    id: str
    kind: CallerKind
    client_ip: IPAddress
    can_call_sensitive: bool
    providers: frozenset[str] | None

    def may_use(self, provider: str) -> bool:
        """Return True if this caller may use ``provider`` (any case)."""
        return self.providers is None or provider.lower() in self.providers


@dataclass(frozen=True)
class _HostRecord:
    entry: HostEntry
    psk: Secret | None


class HostPolicy:
    """The hosts file compiled for lookup: networks by prefix, keys by host.

    ``hosts`` is None when no file is configured. ``psks`` maps each host id
    with ``auth_token_env`` to its Secret, because the config loader reads the
    variables. ``trusted_proxies`` lists the CIDRs of reverse proxies whose
    ``X-Forwarded-For`` is believed. Raises ValueError when the keys and the
    file disagree.
    """

    def __init__(
        self,
        hosts: HostsFile | None,
        psks: Mapping[str, Secret],
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        entries = [LOOPBACK_HOST] if hosts is None else list(hosts.hosts)
        records = [_HostRecord(entry, _psk_for(entry, psks)) for entry in entries]
        _check_unused_psks(entries, psks)
        self._trusted = tuple(parse_cidr(cidr) for cidr in trusted_proxies)
        self._networks = _sort_networks(records)
        # The policy never changes, so the host and the Caller found for an
        # address stay right; the key is still checked on every request.
        self._callers: dict[IPAddress, tuple[_HostRecord, Caller]] = {}

    def resolve_client_ip(self, peer: str, forwarded_for: Sequence[bytes]) -> IPAddress:
        """Return the client address for a request from socket ``peer``.

        ``forwarded_for`` contains every ``X-Forwarded-For`` header line in order.
        """
        client = _parse_peer(peer)
        if not self._is_trusted(client):
            return client

        chain = _parse_forwarded_for(forwarded_for)
        for address in reversed(chain):
            if not self._is_trusted(address):
                return address
        return chain[0] if chain else client

    def identify(self, client_ip: IPAddress, psk_values: Sequence[bytes]) -> Caller:
        """Return the caller at ``client_ip`` proven by ``psk_values``.

        ``psk_values`` contains every ``X-Outpost-Auth`` header value. Raises
        HostDeniedError when no host covers the address and AuthRequiredError
        when the host's key is not presented exactly once and correctly.
        """
        client_ip = _unmap(client_ip)
        found = self._callers.get(client_ip)
        if found is None:
            found = self._build_caller(client_ip)
        record, caller = found
        if record.psk is not None:
            _check_psk(record.psk, psk_values)
        return caller

    def _build_caller(self, client_ip: IPAddress) -> tuple[_HostRecord, Caller]:
        record = self._find_host(client_ip)
        entry = record.entry
        providers = None if entry.providers is None else frozenset(entry.providers)
        caller = Caller(
            id=entry.id,
            kind="host",
            client_ip=client_ip,
            can_call_sensitive=entry.can_call_sensitive,
            providers=providers,
        )
        if len(self._callers) >= _CALLER_CACHE_SIZE:
            self._callers.clear()
        self._callers[client_ip] = (record, caller)
        return record, caller

    def _find_host(self, client_ip: IPAddress) -> _HostRecord:
        for network, record in self._networks:
            if client_ip in network:
                return record
        raise HostDeniedError(
            f"no host entry covers the address {str(client_ip)!r}; ask the "
            "operator to add its network to hosts.yaml",
            reason="no_host",
        )

    def _is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self._trusted)


def check_provider(caller: Caller, provider: str) -> None:
    """Raise ProviderDeniedError if ``caller`` may not use ``provider``."""
    if not caller.may_use(provider):
        raise ProviderDeniedError(
            f"host {caller.id!r} may not use provider {provider.lower()!r}; "
            "ask the operator to add it to the host's providers list",
            reason="provider_not_listed",
        )


def _psk_for(entry: HostEntry, psks: Mapping[str, Secret]) -> Secret | None:
    if entry.auth_token_env is None:
        return None
    psk = psks.get(entry.id)
    if psk is None or not psk:
        raise ValueError(
            f"host {entry.id!r} needs a pre-shared key from "
            f"{entry.auth_token_env!r}, but none was given; set the variable"
        )
    return psk


def _check_unused_psks(
    entries: Sequence[HostEntry], psks: Mapping[str, Secret]
) -> None:
    keyed = {entry.id for entry in entries if entry.auth_token_env is not None}
    unused = sorted(set(psks) - keyed)
    if unused:
        raise ValueError(
            f"pre-shared key given for {unused[0]!r}, which is not a host with "
            "auth_token_env; remove it or fix the host id"
        )


def _sort_networks(
    records: Sequence[_HostRecord],
) -> list[tuple[IPNetwork, _HostRecord]]:
    # sorted() is stable, so equal prefixes keep file order: first host wins.
    pairs = [
        (parse_cidr(cidr), record) for record in records for cidr in record.entry.cidrs
    ]
    return sorted(pairs, key=lambda pair: pair[0].prefixlen, reverse=True)


def _check_psk(psk: Secret, values: Sequence[bytes]) -> None:
    # One message for every failure, and a digest comparison even for values
    # that look wrong, so the response reveals nothing about the key.
    presented = values[0] if len(values) == 1 else b""
    is_ascii = presented.isascii()
    matches = psk.matches(presented)
    if len(values) != 1 or not presented or not is_ascii or not matches:
        _deny_psk()


def _deny_psk() -> NoReturn:
    raise AuthRequiredError(_PSK_MESSAGE, reason="psk_invalid")


def _parse_peer(peer: str) -> IPAddress:
    try:
        return _parse_address(peer)
    except ValueError:
        raise HostDeniedError(
            "the connection's peer address could not be read; connect over TCP",
            reason="unknown_peer",
        ) from None


@functools.lru_cache(maxsize=_CALLER_CACHE_SIZE)
def _parse_address(text: str) -> IPAddress:
    # Parsing costs several microseconds and agents reconnect from the same
    # few addresses; a ValueError is raised again on every call, not cached.
    return _unmap(ipaddress.ip_address(text))


def _parse_forwarded_for(lines: Sequence[bytes]) -> list[IPAddress]:
    chain: list[IPAddress] = []
    for line in lines:
        for item in line.split(b","):
            chain.append(_parse_forwarded_entry(item.strip()))
    return chain


def _parse_forwarded_entry(item: bytes) -> IPAddress:
    try:
        return _unmap(ipaddress.ip_address(item.decode("ascii")))
    except ValueError:
        shown = item[:60].decode("ascii", "backslashreplace")
        raise BadRequestError(
            f"X-Forwarded-For entry {shown!r} is not an IP address; the proxy in "
            "front of Outpost must send plain addresses, comma-separated",
            reason="invalid_forwarded_for",
        ) from None


def _unmap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
