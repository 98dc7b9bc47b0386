"""Parsing of upstream base URLs and caller networks."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAPPED_PREFIX = ipaddress.IPv6Network("::ffff:0:0/96")


@dataclass(frozen=True)
class BaseUrl:
    """An upstream origin plus an optional path prefix, such as ``/api``."""

    scheme: str
    host: str
    port: int
    path_prefix: str

    # Cached because the proxy builds every upstream URL from it.
    @functools.cached_property
    def origin(self) -> str:
        """Return ``scheme://host:port``, the only place credentials may go."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{host}{port}"

    @functools.cached_property
    def host_header(self) -> str:
        """Return the ``Host`` header value for this origin."""
        return self.origin.split("://", 1)[1]


def parse_base_url(value: str) -> BaseUrl:
    """Parse and check a provider's ``base_url``.

    Raises ValueError for anything but an absolute http(s) URL without
    credentials, query or fragment.
    """
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError(
            f"base_url {value!r} must start with http:// or https://, "
            "for example https://api.github.com"
        )
    if not parts.hostname:
        raise ValueError(f"base_url {value!r} has no host name")
    if parts.username or parts.password:
        raise ValueError(
            "base_url must not carry a user name or password; "
            "put the credential in the auth block instead"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"base_url {value!r} must not have a query or fragment")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"base_url {value!r} has an invalid port") from exc
    default = 443 if parts.scheme == "https" else 80
    return BaseUrl(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or default,
        path_prefix=parts.path.rstrip("/"),
    )


def parse_cidr(value: str) -> IPNetwork:
    """Parse a CIDR (or a single address), unmapping IPv4-mapped IPv6 networks.

    ``::ffff:10.0.0.0/104`` becomes ``10.0.0.0/8``. Peers are unmapped the
    same way, so an IPv6 network never matches an IPv4 peer and no entry is
    ever widened.
    """
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError as exc:
        raise ValueError(
            f"invalid CIDR {value!r}; expected a network such as 10.0.0.0/8 or ::1/128"
        ) from exc
    # ``10.0.0.7/8`` is a typo for either one address or the whole network,
    # and reading it as the network would admit far more callers than meant.
    address = value.strip().split("/")[0]
    if ipaddress.ip_address(address) != network.network_address:
        raise ValueError(
            f"CIDR {value!r} has bits set after its prefix; write {network} for "
            f"the whole network, or {address}/{network.max_prefixlen} for one address"
        )
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED_PREFIX):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}", strict=False)
    return network
