"""Events and their signed delivery to webhook endpoints, as Stripe sends them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx

from mercato.sandbox.protocol import Call, dumps, new_id, now, signature_header

ATTEMPTS = 4  # the first try and up to 3 retries
API_VERSION = "2024-06-20"
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"

log = logging.getLogger("mercato.sandbox")

Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    secret: str

    def as_json(self) -> dict[str, str]:
        return {"url": self.url, "secret": self.secret}


@dataclass(slots=True)
class Delivery:
    """One event to one endpoint: `pending`, then `delivered` or `failed` (after every try)."""

    event: str
    url: str
    status: str = "pending"
    attempts: int = 0
    response_status: int | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "url": self.url,
            "status": self.status,
            "attempts": self.attempts,
            "response_status": self.response_status,
            "error": self.error,
        }


class Webhooks:
    """Records every event; sends it to each endpoint unless paused (a lost webhook)."""

    def __init__(
        self,
        endpoints: list[Endpoint],
        spawn: Spawn,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: float = 0.25,
    ) -> None:
        self.endpoints = endpoints
        self.events: list[dict[str, Any]] = []
        self.deliveries: list[Delivery] = []
        self.paused = False
        self.backoff = backoff  # seconds before the first retry; doubles for each next one
        self._by_id: dict[str, dict[str, Any]] = {}
        self._spawn = spawn
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def emit(self, type_: str, obj: dict[str, Any], call: Call | None = None) -> dict[str, Any]:
        """Record an event about `obj` (a snapshot) and, unless paused, send it."""
        event: dict[str, Any] = {
            "id": new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "type": type_,
            "created": now(),
            "livemode": False,
            "pending_webhooks": len(self.endpoints),
            "request": {
                "id": call.request_id if call else None,
                "idempotency_key": call.idempotency_key if call else None,
            },
            "data": {"object": obj},
        }
        self.events.append(event)
        self._by_id[event["id"]] = event
        if not self.paused:
            self.send(event)
        return event

    def event(self, event_id: str) -> dict[str, Any] | None:
        return self._by_id.get(event_id)

    def send(self, event: dict[str, Any]) -> int:
        """Deliver `event` to every endpoint in the background; the number of endpoints."""
        for endpoint in self.endpoints:
            delivery = Delivery(event=event["id"], url=endpoint.url)
            self.deliveries.append(delivery)
            self._spawn(self._deliver(dumps(event), endpoint, delivery))
        return len(self.endpoints)

    async def _deliver(self, payload: bytes, endpoint: Endpoint, delivery: Delivery) -> None:
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            delivery.attempts += 1
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": USER_AGENT,
                # Signed afresh for each attempt, as Stripe does: the timestamp is the send time.
                "Stripe-Signature": signature_header(endpoint.secret, payload, now()),
            }
            try:
                response = await self._http().post(endpoint.url, content=payload, headers=headers)
            except httpx.HTTPError as exc:
                delivery.error = f"{type(exc).__name__}: {exc}"
                continue
            delivery.response_status = response.status_code
            if response.is_success:
                delivery.status = "delivered"
                delivery.error = None
                return
        delivery.status = "failed"
        log.warning(
            "webhook %s to %s failed after %d attempts", delivery.event, endpoint.url, ATTEMPTS
        )

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self._transport, timeout=10.0)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
