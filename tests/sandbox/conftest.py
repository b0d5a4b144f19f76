from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mercato.sandbox import create_sandbox_app, sandbox_state

API_KEY = "sk_test_mercato"
SECRET = "whsec_test_secret"
SETTLE_DELAY = 0.2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serving(app: Starlette, http: str = "auto") -> AsyncIterator[str]:
    """`app` on a real port (uvicorn, in this process); yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, http=http, log_level="warning", lifespan="on"
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class Receiver:
    """A webhook endpoint that records what it gets; answers 500 to the first `failures`."""

    def __init__(self) -> None:
        self.url = ""
        self.failures = 0
        self.received: list[tuple[httpx.Headers, bytes]] = []
        self.app = Starlette(routes=[Route("/hooks", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        self.received.append((httpx.Headers(request.headers.raw), await request.body()))
        if self.failures:
            self.failures -= 1
            return Response(status_code=500)
        return Response(status_code=200)

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        events = [json.loads(body) for _, body in self.received]
        return [e for e in events if type_ is None or e["type"] == type_]

    async def wait_for(
        self, type_: str, count: int = 1, timeout: float = 5
    ) -> list[dict[str, Any]]:
        for _ in range(int(timeout / 0.01)):
            if len(self.events(type_)) >= count:
                return self.events(type_)
            await asyncio.sleep(0.01)
        raise AssertionError(f"{count} x {type_} not received; got {self.events()}")


def stripe_client(app: Starlette, api_key: str = API_KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app),
        base_url="http://sandbox",
        headers={"Authorization": f"Bearer {api_key}"},
    )


@pytest.fixture
async def app() -> AsyncIterator[Starlette]:
    """A sandbox without webhook endpoints."""
    app = create_sandbox_app(settle_delay=SETTLE_DELAY)
    yield app
    await sandbox_state(app).aclose()


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with stripe_client(app) as client:
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    async with serving(receiver.app) as url:
        receiver.url = f"{url}/hooks"
        yield receiver


@pytest.fixture
async def hooked(receiver: Receiver) -> AsyncIterator[Starlette]:
    """A sandbox that sends webhooks to `receiver`, signed with SECRET, retrying quickly."""
    app = create_sandbox_app(webhook_endpoints=[(receiver.url, SECRET)], settle_delay=SETTLE_DELAY)
    sandbox_state(app).webhooks.backoff = 0.01
    yield app
    await sandbox_state(app).aclose()


@pytest.fixture
async def hooked_client(hooked: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with stripe_client(hooked) as client:
        yield client


async def create_intent(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/payment_intents", data={"amount": "1000", "currency": "eur", **params}
    )
    assert response.status_code == 200, response.text
    intent: dict[str, Any] = response.json()
    return intent


async def confirm(
    client: httpx.AsyncClient, intent_id: str, method: str | None = None, key: str | None = None
) -> httpx.Response:
    return await client.post(
        f"/v1/payment_intents/{intent_id}/confirm",
        data={"payment_method": method} if method else {},
        headers={"Idempotency-Key": key} if key else {},
    )


async def charges(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await client.get("/_sandbox/charges")).json()
    return found
