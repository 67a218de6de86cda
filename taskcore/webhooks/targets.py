"""Where a webhook may go: the URL's form, the tenant's allow-list, and the addresses it reaches.

A per-request callback (header ``X-Synthgate-Callback`` or ``parameters.callback_url``)
is checked at submit; every delivery is checked again, against the addresses its host
resolves to at that moment (DNS may have changed meanwhile), and is sent to the address
it checked, never resolved a second time. The rules:

- ``http`` or ``https``, a host, no ``user:password@``, at most 2,048 characters;
- a per-request callback's host matches one of the tenant's ``callback_hosts``:
  host patterns (``hooks.example.com``, ``*.example.com``) or IP addresses and
  networks (``127.0.0.1``, ``10.0.0.0/8``). No list, no per-request callbacks. The
  tenant's own ``webhook_url`` is set by an administrator and needs no listing;
- every address the host resolves to is public, unless ``SYNTHGATE_WEBHOOK_ALLOW_PRIVATE``
  is true or the address lies in an address or network that ``callback_hosts`` names
  as such: a host-name pattern alone never opens the way to an internal address. An IPv6
  address that carries an IPv4 one (NAT64, 6to4, Teredo, IPv4-mapped or -compatible) is
  judged by the IPv4 address too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

CALLBACK_HEADER = "x-synthgate-callback"
CALLBACK_PARAMETER = "callback_url"
MAX_URL_LENGTH = 2048
MAX_HOST_PATTERNS = 64
RESOLVE_TIMEOUT_SECONDS = 5.0
_HOST_PATTERN_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-.*?")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CallbackRefused(ValueError):
    """A callback URL synthgate will not call; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    """A callback URL taken apart: where to connect, and what to call the host."""

    url: str
    https: bool
    host: str  # lower case, IPv6 without brackets
    port: int
    netloc: str  # for the Host header


def parse_target(url: str) -> Target:
    """Check a callback URL's form; raise :class:`CallbackRefused` with the reason."""
    if not url or len(url) > MAX_URL_LENGTH:
        raise CallbackRefused(f"The callback URL must have 1 to {MAX_URL_LENGTH} characters.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise CallbackRefused("The callback URL must be an http:// or https:// URL.")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("The callback URL must not carry a user name or password.")
    try:
        port = parts.port
    except ValueError:
        raise CallbackRefused("The callback URL has an invalid port.") from None
    host = (parts.hostname or "").lower()
    if not host or any(c.isspace() for c in url):
        raise CallbackRefused("The callback URL must name a host and hold no spaces.")
    https = parts.scheme == "https"
    return Target(url, https, host, port or (443 if https else 80), parts.netloc)


def normalize_hosts(patterns: Iterable[str]) -> tuple[str, ...]:
    """Validated, lower-case allow-list entries: host patterns, addresses or networks."""
    result: list[str] = []
    for raw in patterns:
        entry = raw.strip().lower()
        if not entry:
            continue
        network = _network(entry)
        if network is None and not set(entry) <= _HOST_PATTERN_CHARS:
            raise ValueError(
                f"invalid callback host {raw!r}: use a host name pattern such as "
                "'hooks.example.com' or '*.example.com', or an address or network"
            )
        if network is not None and "/" not in entry:
            entry = str(network.network_address)  # one address, as written
        elif network is not None:
            entry = str(network)
        result.append(entry)
    if len(result) > MAX_HOST_PATTERNS:
        raise ValueError(f"at most {MAX_HOST_PATTERNS} callback hosts")
    return tuple(dict.fromkeys(result))


def host_listed(host: str, patterns: Iterable[str]) -> bool:
    """Whether ``host`` (a name or an address) is in the allow-list."""
    address = _address(host)
    for pattern in patterns:
        network = _network(pattern)
        if network is not None:
            if address is not None and address in network:
                return True
        elif fnmatchcase(host, pattern):
            return True
    return False


def address_allowed(address: Address, patterns: Iterable[str], allow_private: bool) -> bool:
    """Public addresses; others only when allowed for all, or listed as addresses. An IPv6
    address that carries an IPv4 one (:func:`embedded_ipv4`) is judged by that too."""
    if allow_private:
        return True
    networks = [n for n in map(_network, patterns) if n is not None]
    judged: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        carried = embedded_ipv4(address)
        judged = [*carried] if address.ipv4_mapped is not None else [address, *carried]
    return all(
        (one.is_global and not one.is_multicast) or any(one in network for network in networks)
        for one in judged
    )


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215, for local use
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291, deprecated


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: IPv4-mapped, NAT64 (the well-known
    prefix, and the local-use one in its /96 and /48 layouts), 6to4, Teredo (server and
    client) and IPv4-compatible. Python counts most of these as global whatever they
    carry; on an IPv6-only cluster with DNS64/NAT64 they reach the IPv4 address."""
    value = int(address)
    found = [a for a in (address.ipv4_mapped, address.sixtofour, *(address.teredo or ())) if a]
    if address in _NAT64 or address in _IPV4_COMPATIBLE or address in _NAT64_LOCAL:
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if address in _NAT64_LOCAL:  # RFC 6052 /48: 16 bits, the "u" octet, 16 bits
        found.append(ipaddress.IPv4Address((value >> 64 & 0xFFFF) << 16 | value >> 40 & 0xFFFF))
    return found


def check_addresses(
    target: Target, addresses: list[Address], patterns: Iterable[str], allow_private: bool
) -> list[Address]:
    """The addresses, if every one of them may be called."""
    patterns = tuple(patterns)
    if not addresses:
        raise CallbackRefused(f"The callback host {target.host!r} has no address.")
    for address in addresses:
        if not address_allowed(address, patterns, allow_private):
            raise CallbackRefused(
                f"The callback host {target.host!r} resolves to {address}, a private or "
                "internal address; callbacks go to public addresses only."
            )
    return addresses


def resolve(target: Target) -> list[Address]:
    """The host's addresses (blocking); raises OSError when it cannot be resolved."""
    infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    return _addresses(infos)


async def resolve_async(target: Target) -> list[Address]:
    """:func:`resolve` on the event loop, within :data:`RESOLVE_TIMEOUT_SECONDS`."""
    loop = asyncio.get_running_loop()
    lookup = loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    try:
        infos = await asyncio.wait_for(lookup, RESOLVE_TIMEOUT_SECONDS)
    except TimeoutError:
        raise OSError(f"resolving {target.host!r} timed out") from None
    return _addresses(infos)


def check_listed(target: Target, patterns: Iterable[str]) -> None:
    if not host_listed(target.host, patterns):
        raise CallbackRefused(
            f"The callback host {target.host!r} is not in this tenant's allowed callback "
            "hosts; ask the service administrators to add it."
        )


def _addresses(infos: Iterable[tuple[Any, ...]]) -> list[Address]:
    found = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    return sorted(found, key=lambda a: (a.version, int(a)))


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _network(text: str) -> Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
