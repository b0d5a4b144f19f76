"""The SSRF guard's plain functions, and the request the sender builds from a vetted URL."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest

from mercato.webhooks import ssrf
from mercato.webhooks.sender import Sender

LOOPBACK = ssrf.parse_networks(["127.0.0.0/8"])


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "private"),  # IPv6 unique-local (AWS's metadata address)
        ("fc00::1", "private"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "private"),  # reserved, and not global
        ("100.64.0.1", "non-global"),  # carrier-grade NAT
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: judged as the IPv4 address
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback (embedded in 2002:7f00:1::)"),  # 6to4 around 127.0.0.1
        ("2002:a00:1::", "private (embedded in 2002:a00:1::)"),
    ],
)
def test_non_global_addresses_are_refused(address: str, reason: str) -> None:
    assert ssrf.refusal(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_global_addresses_are_allowed(address: str) -> None:
    assert ssrf.refusal(ipaddress.ip_address(address)) is None


def test_an_allow_listed_network_is_allowed_including_its_mapped_form() -> None:
    for address in ("127.0.0.1", "::ffff:127.0.0.1"):
        assert ssrf.refusal(ipaddress.ip_address(address), LOOPBACK) is None
    assert ssrf.refusal(ipaddress.ip_address("::1"), LOOPBACK) == "loopback"
    assert ssrf.refusal(ipaddress.ip_address("10.0.0.1"), LOOPBACK) == "private"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "http://user@example.com/x",
        "https://user:secret@example.com/x",
        "http:///no-host",
        "http://example.com:99999/x",
        "http://exa mple.com/x",
        "http://example.com/\r\nX-Injected: 1",
        "https://example.com/" + "x" * 2048,
    ],
)
def test_urls_of_the_wrong_form_are_refused(url: str) -> None:
    with pytest.raises(ssrf.UrlRefused):
        ssrf.parse_url(url)


def test_a_url_is_split_into_what_the_sender_needs() -> None:
    assert ssrf.parse_url("HTTPS://Example.COM/hooks?a=1#frag") == (
        "https",
        "example.com",
        443,
        "/hooks?a=1",
    )
    assert ssrf.parse_url("http://[::1]:8080") == ("http", "::1", 8080, "/")


async def test_a_name_is_refused_when_any_address_it_resolves_to_is() -> None:
    # localhost resolves to 127.0.0.1 (and often ::1): refused without an allow-list.
    with pytest.raises(ssrf.UrlRefused, match="loopback"):
        await ssrf.vet("http://localhost:8080/hooks", (), within=2)
    with pytest.raises(ssrf.UrlRefused, match="does not resolve"):
        await ssrf.vet("http://no-such-host.invalid/hooks", (), within=2)
    target = await ssrf.vet("http://127.0.0.1:8080/x", LOOPBACK, within=2)
    assert target.addresses == (ipaddress.ip_address("127.0.0.1"),)


async def test_https_connects_to_the_vetted_address_and_verifies_the_name() -> None:
    """The request goes to the address that was checked (no second DNS lookup), with the
    Host header and the TLS server name set to the URL's host."""
    seen: list[httpx.Request] = []

    class Unread(httpx.AsyncByteStream):  # streamed, as a network answer is
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204, stream=Unread())

    sender = Sender(
        timeout=2,
        max_response_bytes=100,
        allowed_networks=ssrf.parse_networks(["127.0.0.0/8", "::1/128"]),
        connections=1,
        transport=httpx.MockTransport(handler),
    )
    event = {
        "event_id": "6f1c1d7e-0000-4000-8000-000000000001",
        "type": "order.paid",
        "position": 7,
        "occurred_at": "2026-01-01T00:00:00+00:00",
        "payload": {},
    }
    try:
        attempt = await sender.send(
            "https://localhost:8443/hooks?x=1", ["whsec_" + "A" * 44], event
        )
        plain = await sender.send("http://127.0.0.1/hooks", ["whsec_" + "A" * 44], event)
    finally:
        await sender.close()
    assert (attempt.status_code, plain.status_code) == (204, 204)
    secure, insecure = seen
    assert secure.url.host in {"127.0.0.1", "::1"}
    assert secure.url.port == 8443
    assert secure.url.raw_path == b"/hooks?x=1"
    assert secure.headers["host"] == "localhost:8443"
    assert secure.extensions["sni_hostname"] == "localhost"
    assert insecure.headers["host"] == "127.0.0.1"
    assert "sni_hostname" not in insecure.extensions
    assert secure.headers["accept-encoding"] == "identity"
