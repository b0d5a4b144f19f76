"""Rate limits per caller (`RateLimitMiddleware`, IETF draft-6 `RateLimit-*` headers) and
exponential login throttling (`FailureThrottle`), counted in the `limits` library's storage:
Redis when configured, so that every process shares them, else memory per process."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mercato.core.errors import DomainError
from mercato.core.middleware import send_error

log = structlog.get_logger("mercato.ratelimit")

_T = TypeVar("_T")
_WARN_EVERY_SECONDS = 30.0
_RETRY_STORAGE_AFTER_SECONDS = 1.0
_KEY_PREFIX = "mercato:ratelimit"
_parse = functools.lru_cache(maxsize=128)(parse)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RateLimited(DomainError):
    code = "RATE_LIMITED"
    status = 429
    message = "Too many requests; retry later."


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int  # requests per window
    remaining: int
    reset_after: int  # seconds until a request is allowed again (≥ 1)
    window: int  # the window's length in seconds, for RateLimit-Policy


class SweptMemoryStorage(MemoryStorage):
    """`limits`' in-process storage, with expired counters swept at most once a second.

    The library's own storage starts a sweep task after every hit, and each sweep walks every
    counter: with 10,000 callers in a window a hit cost ~1.7 ms of CPU on the bench machine
    (65 µs with one), a full core at 600 requests/s. Expired counters are already ignored
    when read (`get`); the sweep only frees their memory, so once a second is enough.
    """

    def __init__(self, *, sweep_every_seconds: float = 1.0) -> None:
        super().__init__()
        self.sweep_every_seconds = sweep_every_seconds
        self._next_sweep = 0.0

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        await self.get(key)  # drops the counter if it has expired
        self._sweep_now_and_then()
        async with self.locks[key]:
            self.storage[key] += amount
            if self.storage[key] == amount:
                self.expirations[key] = time.time() + expiry
        return self.storage.get(key, amount)

    async def decr(self, key: str, amount: int = 1) -> int:
        await self.get(key)
        self._sweep_now_and_then()
        async with self.locks[key]:
            self.storage[key] = max(self.storage[key] - amount, 0)
        return self.storage.get(key, amount)

    def _sweep_now_and_then(self) -> None:
        now = time.time()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_every_seconds
        expired = [key for key, at in self.expirations.items() if at <= now]
        for key in expired:
            self.storage.pop(key, None)
            self.expirations.pop(key, None)
            self.locks.pop(key, None)


class RateLimiter:
    """Hits on named limits ("100/minute"), counted in a sliding window.

    Sliding, not fixed, window: a fixed window lets a caller spend its quota at the end of
    one window and again at the start of the next, twice the limit at once, which matters
    most for the sensitive limits (login). The sliding-window counter weighs the previous
    window's count by how much of it still overlaps, so it needs two counters per key, not
    a timestamp per hit: the exact moving window cost grew with the hits in the window
    (0.2 ms a request at 2,000 req/s from one address), this stays constant.

    Fails open: when Redis does not answer, hits are allowed (a warning is logged at most
    every 30 s): refusing all traffic when the limiter's store is down would turn a Redis
    outage into a full outage. After a failure Redis is left alone for a second, so that
    a hung server does not add its timeout to every request.
    """

    def __init__(self, storage: Storage, *, pool: ConnectionPool | None = None) -> None:
        self.storage = storage
        self._strategy = SlidingWindowCounterRateLimiter(storage)
        self._pool = pool
        self._unavailable_until = -math.inf
        self._last_warning = -math.inf

    @classmethod
    def create(cls, redis_url: str | None, *, key_prefix: str = _KEY_PREFIX) -> RateLimiter:
        """Redis-backed when a URL (redis://, rediss://) is given, per process otherwise."""
        if not redis_url:
            return cls(SweptMemoryStorage())
        url = redis_url.removeprefix("async+")
        # Our own pool: short timeouts (redis-py waits 5 s by default), one retry for a
        # connection dropped by a Redis restart, and something to close on shutdown.
        timeouts = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
        pool = ConnectionPool.from_url(url, retry=Retry(NoBackoff(), 1), **timeouts)
        storage = RedisStorage(
            f"async+{url}",
            wrap_exceptions=True,
            implementation="redispy",
            key_prefix=key_prefix,
            connection_pool=pool,  # type: ignore[arg-type]  # documented; typed as scalars
        )
        return cls(storage, pool=pool)

    @staticmethod
    def item(limit: str) -> RateLimitItem:
        """The parsed limit; raises ValueError for a malformed one."""
        return _parse(limit)

    async def hit(self, limit: str, *keys: str) -> Decision:
        """Count one request against `limit` for the caller identified by `keys`."""
        item = self.item(limit)
        window = item.get_expiry()

        async def count() -> Decision:
            allowed = await self._strategy.hit(item, *keys)
            stats = await self._strategy.get_window_stats(item, *keys)
            reset_after = max(1, math.ceil(stats.reset_time - time.time()))
            return Decision(allowed, item.amount, max(0, stats.remaining), reset_after, window)

        return await self.protected(count, Decision(True, item.amount, item.amount, window, window))

    async def protected(self, operation: Callable[[], Awaitable[_T]], fallback: _T) -> _T:
        """Run a storage operation; on a storage failure, log (rarely) and return `fallback`."""
        now = time.monotonic()
        if now < self._unavailable_until:
            return fallback
        try:
            return await operation()
        except StorageError as exc:
            now = time.monotonic()
            self._unavailable_until = now + _RETRY_STORAGE_AFTER_SECONDS
            if now - self._last_warning >= _WARN_EVERY_SECONDS:
                self._last_warning = now
                log.warning("rate_limit_storage_unavailable", error=str(exc), fail_open=True)
            return fallback

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()


class TrustedProxies:
    """Proxy addresses, networks, or "*" (any), as uvicorn's `forwarded_allow_ips`."""

    CACHED = 4096  # hosts remembered; X-Forwarded-For hops are the caller's to choose

    def __init__(self, entries: Iterable[str]) -> None:
        entries = [entry.strip() for entry in entries]
        self.any = "*" in entries
        self.networks = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]
        # Every request asks about its peer, nearly always one of a few addresses: parsing
        # it and testing each network was 1% of a server's CPU.
        self._seen: dict[str, bool] = {}

    def __contains__(self, host: str) -> bool:
        known = self._seen.get(host)
        if known is None:
            if len(self._seen) >= self.CACHED:
                self._seen.clear()
            known = self._seen[host] = self._trusted(host)
        return known

    def _trusted(self, host: str) -> bool:
        try:
            return self.any or any(ipaddress.ip_address(host) in n for n in self.networks)
        except ValueError:  # not an address
            return False


def client_ip(scope: Scope, trusted: TrustedProxies) -> str:
    """The caller's address: the peer, or, when the peer is a trusted proxy, the nearest
    untrusted hop of X-Forwarded-For (read right to left, as each proxy appends). Agrees
    with uvicorn's proxy_headers, which `mercato serve` enables with the same list.
    """
    client = scope.get("client")
    peer: str = client[0] if client else "unknown"
    if peer not in trusted:
        return peer
    values = [v.decode("latin-1") for n, v in scope["headers"] if n == b"x-forwarded-for"]
    hops = [hop.strip() for hop in ",".join(values).split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0] if hops else peer


def rate_limit_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"ratelimit-policy", f"{decision.limit};w={decision.window}".encode()),
        (b"ratelimit-limit", str(decision.limit).encode()),
        (b"ratelimit-remaining", str(decision.remaining).encode()),
        (b"ratelimit-reset", str(decision.reset_after).encode()),
    ]
    if not decision.allowed:
        headers.append((b"retry-after", str(decision.reset_after).encode()))
    return headers


class RateLimitMiddleware:
    """Limits every HTTP request (health checks aside) per account, else per address.

    An authenticated call (`identify` returns a subject id) counts against
    `authenticated` as "account:<id>"; any other against `anonymous` as "ip:<address>".
    A non-safe request (not GET, HEAD or OPTIONS) to one of `sensitive_paths` also counts
    against `sensitive`, always per address. `identify` must only return a subject whose
    credential has been verified: an unverified one lets a caller pick fresh buckets.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        anonymous: str,
        authenticated: str,
        sensitive: str,
        sensitive_paths: frozenset[str],
        identify: Callable[[Scope], str | None],
        trusted_proxies: list[str],
        exempt_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.limiter = limiter
        for limit in (anonymous, authenticated, sensitive):
            limiter.item(limit)  # a malformed limit fails at startup, not per request
        self.anonymous = anonymous
        self.authenticated = authenticated
        self.sensitive = sensitive
        self.sensitive_paths = sensitive_paths
        self.identify = identify
        self.trusted = TrustedProxies(trusted_proxies)
        # Callers that prove themselves another way and must not be refused in a burst
        # (the payment provider's signed webhooks).
        self.exempt_paths = exempt_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"].startswith("/health")
            or scope["path"] in self.exempt_paths
        ):
            await self.app(scope, receive, send)
            return
        address = client_ip(scope, self.trusted)
        subject = self.identify(scope)
        general = self.authenticated if subject else self.anonymous
        key = f"account:{subject}" if subject else f"ip:{address}"
        if scope["path"] in self.sensitive_paths and scope["method"] not in _SAFE_METHODS:
            decisions = await asyncio.gather(
                self.limiter.hit(general, key),
                # Its own namespace: with equal limits the keys would otherwise coincide.
                self.limiter.hit(self.sensitive, "sensitive", f"ip:{address}"),
            )
            # Report a refusal first (the longest), else the limit with the least left.
            decision = min(decisions, key=lambda d: (d.allowed, d.remaining, -d.reset_after))
        else:
            # Awaited directly: gather would wrap even one hit in a task of its own, and
            # every request pays for the one hit.
            decision = await self.limiter.hit(general, key)
        headers = rate_limit_headers(decision)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        if not decision.allowed:
            error = RateLimited(f"Too many requests; retry in {decision.reset_after} s.")
            await send_error(send_with_headers, error)
            return
        await self.app(scope, receive, send_with_headers)


class FailureThrottle:
    """Exponential lockout after repeated failures, e.g. wrong passwords.

    Failure number n ≥ `free_attempts` of a key locks it for base * 2^(n - free_attempts)
    seconds (1, 2, 4, ... by default), at most `max_seconds`, rounded up to whole seconds:
    `free_attempts` attempts never wait. `reset` (on success) starts over; otherwise a
    count is forgotten a day after its first failure. Counts and locks (a counter whose
    expiry is the lock) live in the limiter's storage, shared through Redis; fails open.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        free_attempts: int = 5,
        base_seconds: float = 1,
        max_seconds: float = 900,
    ) -> None:
        self.limiter = limiter
        self.storage = limiter.storage
        self.free_attempts = free_attempts
        self.base_seconds = base_seconds
        self.max_seconds = max_seconds

    def lock_seconds(self, failures: int) -> int | None:
        """How long failure number `failures` locks its key, None if not at all."""
        if failures < self.free_attempts:
            return None
        exponent = min(failures - self.free_attempts, 64)
        return max(1, math.ceil(min(self.max_seconds, self.base_seconds * 2.0**exponent)))

    async def retry_after(self, *keys: str) -> int | None:
        """Seconds until the most locked of `keys` is free again, None if none is locked."""
        waits = await asyncio.gather(*(self._remaining(key) for key in keys))
        longest = max(waits, default=0.0)
        return math.ceil(longest) if longest > 0 else None

    async def record_failure(self, *keys: str) -> None:
        await asyncio.gather(
            *(self.limiter.protected(functools.partial(self._fail, k), None) for k in keys)
        )

    async def reset(self, *keys: str) -> None:
        await asyncio.gather(
            *(self.limiter.protected(functools.partial(self._clear, k), None) for k in keys)
        )

    async def _remaining(self, key: str) -> float:
        # A missing key "expires" now; Redis reports whole seconds.
        expiry = functools.partial(self.storage.get_expiry, f"throttle/lock/{key}")
        return await self.limiter.protected(expiry, -math.inf) - time.time()

    async def _clear(self, key: str) -> None:
        await self.storage.clear(f"throttle/failures/{key}")
        await self.storage.clear(f"throttle/lock/{key}")

    async def _fail(self, key: str) -> None:
        failures = await self.storage.incr(f"throttle/failures/{key}", 86_400)
        seconds = self.lock_seconds(failures)
        if seconds is not None:
            # incr only sets the expiry of a new counter: clear first to restart the lock.
            await self.storage.clear(f"throttle/lock/{key}")
            await self.storage.incr(f"throttle/lock/{key}", seconds)
