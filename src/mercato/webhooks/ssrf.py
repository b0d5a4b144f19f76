"""The SSRF guard: webhooks go to public addresses only (or to allow-listed networks).

A subscription's URL is checked when it is created or changed, and again before every
attempt, because what a name resolves to can change at any time. The check resolves the
host once, refuses it unless EVERY address is allowed, and hands back those addresses:
the sender connects to one of them, never to the name, so a second lookup (DNS
rebinding: public at check time, 127.0.0.1 a moment later) has nothing to change.

Allowed means global (not private, loopback, link-local such as the cloud metadata
service at 169.254.169.254, unique-local, multicast, reserved or unspecified), with
IPv4 addresses embedded in IPv6 ones (mapped, 6to4, Teredo) judged as the IPv4 address
they reach, unless the address lies inside a configured network
(`webhook_allowed_networks`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = {"http": 80, "https": 443}
MAX_URL_LENGTH = 2048


class UrlRefused(Exception):
    """The URL may not receive webhooks; the message says why (safe to show the caller)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A vetted URL: where to connect (an allowed address) and what to ask for there."""

    scheme: str
    host: str  # the name (IDNA-encoded) or address literal from the URL
    port: int
    path: str  # path and query, at least "/"
    addresses: tuple[Address, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == SCHEMES[self.scheme] else f"{host}:{self.port}"

    def url_for(self, address: Address) -> str:
        """The URL that connects to `address` itself (the Host header names the host)."""
        literal = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{literal}:{self.port}{self.path}"


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def parse_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an absolute http(s) URL without credentials."""
    if len(url) > MAX_URL_LENGTH or any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise UrlRefused("The URL is too long or contains spaces or control characters.")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UrlRefused("Only http and https URLs can receive webhooks.")
    if "@" in parts.netloc:
        # Credentials in URLs end up in logs and proxies; receivers verify signatures instead.
        raise UrlRefused("The URL must not contain a user name or password.")
    try:
        port = parts.port or SCHEMES[scheme]
    except ValueError as exc:
        raise UrlRefused("The URL's port is not valid.") from exc
    host = parts.hostname
    if not host:
        raise UrlRefused("The URL has no host.")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise UrlRefused("The URL's host name is not valid.") from exc
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port, path


def refusal(address: Address, allowed: Sequence[Network] = ()) -> str | None:
    """Why connecting to `address` is refused, or None when it is allowed."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket.
        address = address.ipv4_mapped
    if any(address.version == network.version and address in network for network in allowed):
        return None
    reason = _special(address)
    if reason is None and isinstance(address, ipaddress.IPv6Address):
        for embedded in _embedded_ipv4(address):
            inner = _special(embedded)
            if inner is not None:
                return f"{inner} (embedded in {address})"
    return reason


def _special(address: Address) -> str | None:
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("non-global", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address tunnels to (6to4, Teredo's server and client)."""
    found: list[ipaddress.IPv4Address] = []
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


async def resolve(host: str, port: int, *, within: float) -> list[Address]:
    """Every address `host` resolves to (an address literal resolves to itself)."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [literal]
    try:
        infos = await asyncio.wait_for(
            asyncio.to_thread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM), within
        )
    except (OSError, TimeoutError) as exc:
        raise UrlRefused(f"The host {host} does not resolve.") from exc
    addresses: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def vet(url: str, allowed: Sequence[Network], *, within: float) -> Target:
    """Check `url` now: its form, and every address its host resolves to."""
    scheme, host, port, path = parse_url(url)
    addresses = await resolve(host, port, within=within)
    if not addresses:
        raise UrlRefused(f"The host {host} does not resolve.")
    for address in addresses:
        reason = refusal(address, allowed)
        if reason is not None:
            raise UrlRefused(f"The host {host} resolves to {address}, a {reason} address.")
    return Target(scheme, host, port, path, tuple(addresses))
