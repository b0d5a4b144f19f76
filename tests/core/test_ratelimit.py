"""Rate limits and login throttling: headers, refusals, buckets, proxies, Redis, failing open."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Scope
from structlog.testing import CapturingLogger

from mercato.core import ratelimit
from mercato.core.middleware import RequestContextMiddleware
from mercato.core.observability import HttpMetrics
from mercato.core.ratelimit import (
    FailureThrottle,
    RateLimiter,
    RateLimitMiddleware,
    SweptMemoryStorage,
    TrustedProxies,
    client_ip,
)

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LOGIN = "/api/v1/auth/login"


def _identify(scope: Scope) -> str | None:
    """Stands in for the authentication middleware: the subject is taken on trust here."""
    for name, value in scope["headers"]:
        if name == b"x-subject":
            return str(value.decode())
    return None


async def _ok(_: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def make_app(
    limiter: RateLimiter,
    *,
    anonymous: str = "5/minute",
    authenticated: str = "8/minute",
    sensitive: str = "2/minute",
    trusted_proxies: Sequence[str] = ("127.0.0.1",),
    exempt_paths: frozenset[str] = frozenset(),
) -> Starlette:
    return Starlette(
        routes=[
            Route("/api/v1/items", _ok),
            Route(LOGIN, _ok, methods=["POST"]),
            Route("/health/live", _ok),
            Route("/hooks", _ok, methods=["POST"]),
        ],
        middleware=[
            Middleware(
                RequestContextMiddleware,
                metrics=HttpMetrics(CollectorRegistry()),
                access_log=False,
            ),
            Middleware(
                RateLimitMiddleware,
                limiter=limiter,
                anonymous=anonymous,
                authenticated=authenticated,
                sensitive=sensitive,
                sensitive_paths=frozenset({LOGIN}),
                identify=_identify,
                trusted_proxies=list(trusted_proxies),
                exempt_paths=exempt_paths,
            ),
        ],
    )


def http(app: Starlette, peer: str = "203.0.113.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def remaining(response: httpx.Response) -> int:
    return int(response.headers["ratelimit-remaining"])


async def test_anonymous_requests_count_down_then_are_refused_until_the_window_moves() -> None:
    app = make_app(RateLimiter.create(None), anonymous="3/second")
    async with http(app) as client:
        responses = [await client.get("/api/v1/items") for _ in range(3)]
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert [remaining(r) for r in responses] == [2, 1, 0]
        first = responses[0].headers
        assert (first["ratelimit-limit"], first["ratelimit-policy"]) == ("3", "3;w=1")
        assert first["ratelimit-reset"] == "1"
        assert "retry-after" not in first

        refused = await client.get("/api/v1/items")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == refused.headers["ratelimit-reset"] == "1"
        assert (refused.headers["ratelimit-limit"], remaining(refused)) == ("3", 0)
        error = refused.json()["error"]
        assert error["code"] == "RATE_LIMITED"
        assert error["request_id"] == refused.headers["x-request-id"]

        await asyncio.sleep(int(refused.headers["retry-after"]) + 0.05)
        again = await client.get("/api/v1/items")
        assert again.status_code == 200
        # A sliding window still weighs the last window's hits for a while; two windows on,
        # nothing of them is left.
        await asyncio.sleep(2.05)
        fresh = await client.get("/api/v1/items")
        assert remaining(fresh) == 2


async def test_health_checks_are_not_limited() -> None:
    app = make_app(RateLimiter.create(None), anonymous="1/minute")
    async with http(app) as client:
        for _ in range(3):
            response = await client.get("/health/live")
            assert response.status_code == 200
            assert "ratelimit-limit" not in response.headers


async def test_an_authenticated_caller_has_its_own_bucket_and_limit() -> None:
    app = make_app(RateLimiter.create(None), anonymous="2/minute", authenticated="4/minute")
    alice = {"X-Subject": "alice"}
    async with http(app) as client:
        account = [await client.get("/api/v1/items", headers=alice) for _ in range(4)]
        assert [remaining(r) for r in account] == [3, 2, 1, 0]
        assert account[0].headers["ratelimit-limit"] == "4"
        assert (await client.get("/api/v1/items", headers=alice)).status_code == 429

        # The same address, unauthenticated, and another account are unaffected.
        anonymous = await client.get("/api/v1/items")
        assert (anonymous.status_code, anonymous.headers["ratelimit-limit"]) == (200, "2")
        assert remaining(anonymous) == 1
        bob = await client.get("/api/v1/items", headers={"X-Subject": "bob"})
        assert (bob.status_code, remaining(bob)) == (200, 3)


async def test_sensitive_paths_have_the_stricter_limit_per_address() -> None:
    app = make_app(RateLimiter.create(None), anonymous="10/minute", sensitive="2/minute")
    async with http(app) as client:
        logins = [await client.post(LOGIN, json={}) for _ in range(2)]
        assert [r.status_code for r in logins] == [200, 200]
        # The tightest limit is reported: the sensitive one.
        assert [(r.headers["ratelimit-limit"], remaining(r)) for r in logins] == [
            ("2", 1),
            ("2", 0),
        ]
        assert logins[0].headers["ratelimit-policy"] == "2;w=60"
        refused = await client.post(LOGIN, json={})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "RATE_LIMITED"
        assert 1 <= int(refused.headers["retry-after"]) <= 60

        # Being authenticated does not escape it: the sensitive limit is always per address.
        signed_in = await client.post(LOGIN, json={}, headers={"X-Subject": "alice"})
        assert signed_in.status_code == 429
        # Other paths only count against the general limit.
        other = await client.get("/api/v1/items")
        assert (other.status_code, other.headers["ratelimit-limit"]) == (200, "10")
    async with http(app, peer="203.0.113.2") as elsewhere:
        assert (await elsewhere.post(LOGIN, json={})).status_code == 200


async def test_x_forwarded_for_is_honoured_only_from_a_trusted_proxy() -> None:
    app = make_app(RateLimiter.create(None), trusted_proxies=["127.0.0.1", "10.0.0.0/8"])
    async with http(app, peer="203.0.113.7") as direct:
        spoofed = [
            await direct.get("/api/v1/items", headers={"X-Forwarded-For": f"198.51.100.{n}"})
            for n in (1, 2)
        ]
        assert [remaining(r) for r in spoofed] == [4, 3]  # one bucket: the peer's
    async with http(app, peer="127.0.0.1") as proxy:
        for client in ("198.51.100.1", "198.51.100.2"):
            response = await proxy.get("/api/v1/items", headers={"X-Forwarded-For": client})
            assert remaining(response) == 4  # a bucket per forwarded client
        # A forged hop before the real one is ignored; trusted hops after it are skipped.
        forged = {"X-Forwarded-For": "192.0.2.99, 198.51.100.1, 10.1.2.3"}
        assert remaining(await proxy.get("/api/v1/items", headers=forged)) == 3


def test_client_ip_reads_forwarded_hops_right_to_left() -> None:
    trusted = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "::1"])

    def scope(peer: str, *forwarded: str) -> Scope:
        headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
        return {"type": "http", "client": (peer, 1), "headers": headers}

    assert client_ip(scope("203.0.113.5", "198.51.100.1"), trusted) == "203.0.113.5"
    assert client_ip(scope("::1", "2001:db8::7"), trusted) == "2001:db8::7"
    assert client_ip(scope("127.0.0.1", "192.0.2.1, 198.51.100.1", "10.0.0.2"), trusted) == (
        "198.51.100.1"
    )
    assert client_ip(scope("127.0.0.1", "10.0.0.3, 10.0.0.2"), trusted) == "10.0.0.3"
    assert client_ip(scope("127.0.0.1"), trusted) == "127.0.0.1"
    assert client_ip(scope("203.0.113.5"), TrustedProxies(["*"])) == "203.0.113.5"


def test_trusted_proxies_remember_a_bounded_number_of_answers() -> None:
    trusted = TrustedProxies(["10.0.0.0/8"])
    hosts = [f"10.0.{n // 256}.{n % 256}" for n in range(TrustedProxies.CACHED + 10)]
    for _ in range(2):  # asked again: the same answers, from memory or not
        assert all(host in trusted for host in hosts)
        assert "192.0.2.1" not in trusted
        assert "not-an-address" not in trusted
    # Hops in X-Forwarded-For are the caller's to choose: the memory never grows past its cap.
    assert len(trusted._seen) <= TrustedProxies.CACHED


async def test_failure_throttle_locks_exponentially_after_the_free_attempts() -> None:
    throttle = FailureThrottle(
        RateLimiter.create(None), free_attempts=3, base_seconds=1, max_seconds=5
    )
    account, address = "account:abc", "ip:192.0.2.1"
    waits = []
    for _ in range(7):
        await throttle.record_failure(account)
        waits.append(await throttle.retry_after(account, address))
    assert waits == [None, None, 1, 2, 4, 5, 5]
    assert await throttle.retry_after(address) is None

    await throttle.reset(account)
    assert await throttle.retry_after(account) is None
    await throttle.record_failure(account)  # the count starts over
    assert await throttle.retry_after(account) is None


async def test_a_failure_lock_runs_out() -> None:
    throttle = FailureThrottle(RateLimiter.create(None), free_attempts=1)
    await throttle.record_failure("ip:192.0.2.1")
    assert await throttle.retry_after("ip:192.0.2.1") == 1
    await asyncio.sleep(1.05)
    assert await throttle.retry_after("ip:192.0.2.1") is None


async def test_an_unreachable_redis_fails_open_and_warns_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logger = CapturingLogger()
    monkeypatch.setattr(ratelimit, "log", logger)
    limiter = RateLimiter.create("redis://127.0.0.1:1/0")
    try:
        async with http(make_app(limiter, anonymous="1/minute")) as client:
            responses = [await client.get("/api/v1/items") for _ in range(3)]
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert responses[0].headers["ratelimit-limit"] == "1"
        throttle = FailureThrottle(limiter, free_attempts=1)
        await throttle.record_failure("ip:192.0.2.1")
        assert await throttle.retry_after("ip:192.0.2.1") is None
        warnings = [call for call in logger.calls if call.method_name == "warning"]
        assert len(warnings) == 1
        assert warnings[0].args == ("rate_limit_storage_unavailable",)
    finally:
        await limiter.close()


def _redis_up() -> bool:
    url = urlsplit(REDIS_URL)
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_url() -> str:
    if not _redis_up():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis must run under CI (TEST_REDIS_URL={REDIS_URL})")
        pytest.skip(f"Redis is not running at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
async def two_limiters(redis_url: str) -> AsyncIterator[tuple[RateLimiter, RateLimiter]]:
    """Two limiters, as in two processes, sharing a key namespace of this test's own."""
    prefix = f"mercato-test-{uuid.uuid4().hex}"
    first = RateLimiter.create(redis_url, key_prefix=prefix)
    second = RateLimiter.create(redis_url, key_prefix=prefix)
    try:
        yield first, second
    finally:
        await first.storage.reset()  # deletes the keys under the prefix
        await first.close()
        await second.close()


async def test_instances_share_limits_through_redis(
    two_limiters: tuple[RateLimiter, RateLimiter],
) -> None:
    first, second = (make_app(limiter, anonymous="3/minute") for limiter in two_limiters)
    async with http(first) as one, http(second) as other:
        assert remaining(await one.get("/api/v1/items")) == 2
        assert remaining(await other.get("/api/v1/items")) == 1
        assert remaining(await one.get("/api/v1/items")) == 0
        refused = await other.get("/api/v1/items")
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60


async def test_failure_throttle_is_shared_through_redis(
    two_limiters: tuple[RateLimiter, RateLimiter],
) -> None:
    one, other = (FailureThrottle(limiter, free_attempts=2) for limiter in two_limiters)
    await one.record_failure("account:abc")
    assert await other.retry_after("account:abc") is None
    await other.record_failure("account:abc")
    assert await one.retry_after("account:abc") == 1
    await one.record_failure("account:abc")
    assert await other.retry_after("account:abc") == 2
    await other.reset("account:abc")
    assert await one.retry_after("account:abc") is None


async def test_exempt_paths_are_never_counted_or_refused() -> None:
    app = make_app(
        RateLimiter.create(None), anonymous="2/minute", exempt_paths=frozenset({"/hooks"})
    )
    async with http(app) as client:
        hooks = [await client.post("/hooks") for _ in range(5)]
        assert [r.status_code for r in hooks] == [200] * 5
        assert "ratelimit-limit" not in hooks[0].headers
        assert [(await client.get("/api/v1/items")).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]


async def test_in_process_counters_are_swept_on_a_clock_not_after_every_hit() -> None:
    """`limits`' own memory storage swept every counter after each hit, so a hit cost more
    the more callers there were (1.7 ms of CPU with 10,000 on the bench machine). Ours
    sweeps at most once per interval; expired counters are ignored when read meanwhile."""
    storage = SweptMemoryStorage(sweep_every_seconds=3600)
    limiter = RateLimiter(storage)
    await storage.incr("expired", 0.01)  # the first call sweeps, and sets the clock
    await asyncio.sleep(0.05)
    for n in range(200):
        assert (await limiter.hit("5/second", f"ip:10.0.0.{n % 50}")).allowed
        await asyncio.sleep(0)  # would let a sweep task run
    assert "expired" in storage.expirations  # not walked: the interval has not passed
    assert await storage.get("expired") == 0  # and ignored when read (which drops it)
    assert "expired" not in storage.expirations
    refused = [await limiter.hit("5/second", "ip:10.9.9.9") for _ in range(7)]
    assert [d.allowed for d in refused] == [True] * 5 + [False] * 2

    swept = SweptMemoryStorage(sweep_every_seconds=0)
    await swept.incr("short", 0.01)
    await swept.incr("long", 60)
    await asyncio.sleep(0.05)
    await swept.incr("another", 60)  # sweeps: "short" has expired
    assert set(swept.storage) == {"long", "another"}
    assert set(swept.expirations) == {"long", "another"}
    assert await swept.decr("long") == 0
