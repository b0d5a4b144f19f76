"""Webhook tests: a real receiver on loopback (uvicorn in this process), the app on a
database of the test's own, and the delivery job run by the test with tiny backoffs."""

from __future__ import annotations

import asyncio
import importlib.util
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.factories import staff_headers
from tests.sandbox.conftest import serving
from tests.settings import make_settings

from mercato.app import create_app
from mercato.core.config import Settings
from mercato.core.database import Database
from mercato.events import EventDraft, record_events
from mercato.events import repository as events_repository
from mercato.webhooks import DeliveryJob

API = "/api/v1/webhooks"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "verify_webhook.py"
FAST = {
    "webhook_backoff_seconds": 0.01,
    "webhook_backoff_max_seconds": 0.05,
    "webhook_timeout_seconds": 2.0,
}


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("verify_webhook_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Received:
    path: str
    headers: httpx.Headers
    body: bytes

    @property
    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = orjson.loads(self.body)
        return message


Behaviour = Callable[[Request], Awaitable[Response]]


async def ok(_: Request) -> Response:
    return Response("thanks", status_code=200)


@dataclass
class Receiver:
    """An endpoint per path: records every request, answers with the path's behaviour."""

    base_url: str = ""
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def answer(self, path: str, behaviour: Behaviour) -> str:
        self.behaviours[path] = behaviour
        return self.url(path)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.received.append(Received(request.url.path, httpx.Headers(request.headers.raw), body))
        return await self.behaviours.get(request.url.path, ok)(request)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def positions(self, path: str) -> list[int]:
        return [r.message["position"] for r in self.at(path)]

    async def wait_for(self, path: str, count: int, timeout: float = 8) -> list[Received]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.at(path)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{count} requests to {path} expected, got {self.at(path)}")
            await asyncio.sleep(0.01)
        return self.at(path)


def status(code: int, **headers: str) -> Behaviour:
    async def answer(_: Request) -> Response:
        return Response(status_code=code, headers=headers)

    return answer


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/{path:path}", receiver.handle, methods=["POST", "GET"])])
    async with serving(app) as url:
        receiver.base_url = url
        yield receiver


def webhook_settings(database_url: str, **overrides: Any) -> Settings:
    """The app's settings, without the in-process jobs: the tests run delivery themselves."""
    values: dict[str, Any] = {"database_url": database_url, "relay_in_process": False, **FAST}
    return make_settings(**{**values, **overrides}).with_local_secrets()


@dataclass
class Env:
    """The app on its own database, an administrator, and a pool for the test's own work."""

    settings: Settings
    client: httpx.AsyncClient
    admin: dict[str, str]
    db: Database

    async def subscribe(self, url: str, event_types: list[str] | None = None) -> dict[str, Any]:
        response = await self.client.post(
            f"{API}/subscriptions",
            json={"url": url, "event_types": event_types or ["*"]},
            headers=self.admin,
        )
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def subscription(self, subscription_id: str) -> dict[str, Any]:
        response = await self.client.get(
            f"{API}/subscriptions/{subscription_id}", headers=self.admin
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def deliveries(self, subscription_id: str, **params: Any) -> list[dict[str, Any]]:
        response = await self.client.get(
            f"{API}/deliveries",
            params={"subscription_id": subscription_id, "limit": 100, **params},
            headers=self.admin,
        )
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    async def log(self, *types: str) -> list[int]:
        """Record events of these types and move them into the log (as the relay would);
        returns their positions."""
        drafts = [
            EventDraft(
                type=event_type,
                aggregate_type="test",
                aggregate_id=str(uuid.uuid4()),
                aggregate_version=1,
                payload={"n": n, "type": event_type},
            )
            for n, event_type in enumerate(types)
        ]
        async with self.db.transaction() as conn:
            await record_events(conn, drafts)
        async with self.db.transaction() as conn:
            last = await events_repository.move_outbox_to_log(conn, limit=1_000)
        return list(range(last - len(types) + 1, last + 1))

    @asynccontextmanager
    async def delivering(self, **overrides: Any) -> AsyncIterator[None]:
        """The delivery job, running until the block ends."""
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        stop = asyncio.Event()
        job = DeliveryJob(self.db, settings, idle=0.02)
        task = asyncio.create_task(job.run(stop))
        try:
            yield
        finally:
            stop.set()
            await task


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 8) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def env(fresh_db_url: str) -> AsyncIterator[Env]:
    settings = webhook_settings(fresh_db_url)
    admin = await staff_headers(fresh_db_url)
    app = create_app(settings)
    db = await Database.connect(fresh_db_url, min_size=1, max_size=12)
    try:
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield Env(settings, client, admin, db)
    finally:
        await db.close()
