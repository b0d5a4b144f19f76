"""Sending one message: vet the URL, connect to the vetted address, sign, POST, and read
a bounded part of the answer. Never raises for the receiver's faults: every outcome is an
`Attempt` (a status code, or an error) for the delivery log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from mercato.core.config import Settings
from mercato.webhooks import rules, ssrf
from mercato.webhooks.signature import signature_header

USER_AGENT = "Mercato-Webhooks/1"
MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class Attempt:
    status_code: int | None
    error: str | None
    duration_ms: int
    response_excerpt: str | None


class Sender:
    def __init__(
        self,
        *,
        timeout: float,
        max_response_bytes: int,
        allowed_networks: Sequence[ssrf.Network],
        connections: int,
        transport: httpx.AsyncBaseTransport | None = None,  # tests: httpx.MockTransport
    ) -> None:
        self._timeout = timeout
        self._max_response_bytes = max_response_bytes
        self._allowed = tuple(allowed_networks)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            # No proxies or .netrc from the environment: a proxy would connect to the
            # name, not to the address the guard vetted.
            trust_env=False,
            # No kept-alive connections: the pool keys connections by the address
            # connected to, so one kept for https://a.example could be reused for
            # https://b.example on the same address, with a.example's certificate.
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=0),
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Sender:
        return cls(
            timeout=settings.webhook_timeout_seconds,
            max_response_bytes=settings.webhook_max_response_bytes,
            allowed_networks=ssrf.parse_networks(settings.webhook_allowed_networks),
            connections=settings.webhook_concurrency + 2,  # two for manual replays
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def vet(self, url: str) -> ssrf.Target:
        return await ssrf.vet(url, self._allowed, within=self._timeout)

    async def send(self, url: str, secrets: Sequence[str], event: dict[str, Any]) -> Attempt:
        started = time.monotonic()
        try:
            target = await self.vet(url)
            status, raw = await self._post(target, secrets, event)
        except ssrf.UrlRefused as exc:
            return _failed(started, f"refused: {exc}")
        except (TimeoutError, httpx.TimeoutException):
            return _failed(started, "timeout")
        except httpx.HTTPError as exc:
            return _failed(started, f"{type(exc).__name__}: {exc}")
        return Attempt(status, None, _elapsed_ms(started), rules.excerpt(raw) if raw else None)

    async def _post(
        self, target: ssrf.Target, secrets: Sequence[str], event: dict[str, Any]
    ) -> tuple[int, bytes]:
        body = rules.message_body(event)
        message_id = str(event["event_id"])
        timestamp = int(time.time())
        headers = {
            "host": target.host_header,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            # Raw bytes only: a compressed answer could inflate far past the read cap.
            "accept-encoding": "identity",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(
                secrets, message_id=message_id, timestamp=timestamp, body=body
            ),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        # httpx's timeouts bound each step; this bounds the whole attempt, so a receiver
        # that dribbles its answer cannot hold a delivery slot for long.
        async with asyncio.timeout(self._timeout * 2):
            async with self._http.stream(
                "POST",
                target.url_for(target.addresses[0]),
                content=body,
                headers=headers,
                extensions=extensions,
            ) as response:
                return response.status_code, await self._read_capped(response)

    async def _read_capped(self, response: httpx.Response) -> bytes:
        limit = self._max_response_bytes
        received = bytearray()
        if limit:
            async for chunk in response.aiter_raw():
                received += chunk[: limit - len(received)]
                if len(received) >= limit:
                    break
        return bytes(received)


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _failed(started: float, error: str) -> Attempt:
    return Attempt(None, error[:MAX_ERROR_CHARS], _elapsed_ms(started), None)
