"""Import progress on the stream: staff with `imports:manage` follow a job live; others are
refused the topic."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories import TestUser, identity_runtime, make_user
from tests.ingest.conftest import ACME
from tests.realtime.conftest import StreamClient, serving, stream_client


async def _users(database_url: str, *roles: str) -> list[TestUser]:
    async with identity_runtime(database_url) as runtime, runtime.db.transaction() as conn:
        return [await make_user(conn, runtime, roles=(role,)) for role in roles]


async def _authenticate(client: StreamClient, user: TestUser) -> None:
    token = user.headers["Authorization"].removeprefix("Bearer ")
    await client.send({"type": "auth", "token": token})
    assert (await client.receive())["type"] == "authenticated"


async def _until_ended(client: StreamClient) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while not events or events[-1]["type"] not in ("import.succeeded", "import.failed"):
        message = await client.receive(timeout=30)
        if message["type"] == "event":
            events.append(message["event"])
    return events


async def test_staff_follow_an_import_live_and_customers_may_not(fresh_db_url: str) -> None:
    admin, customer = await _users(fresh_db_url, "admin", "customer")
    feed, mapping = ACME
    async with (
        serving(fresh_db_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=20) as http,
        stream_client(address) as staff,
        stream_client(address) as outsider,
    ):
        await _authenticate(outsider, customer)
        await outsider.send({"type": "subscribe", "topics": ["imports"]})
        refused = await outsider.receive()
        assert (refused["type"], refused["code"]) == ("error", "FORBIDDEN_TOPIC")

        await _authenticate(staff, admin)
        assert (await staff.subscribe(["imports"]))["topics"] == ["imports"]
        response = await http.post(
            "/api/v1/imports",
            headers=admin.headers,
            data={"source": "acme"},
            files={
                "file": (feed.name, feed.read_bytes(), "text/csv"),
                "mapping": (mapping.name, mapping.read_bytes(), "application/toml"),
            },
        )
        assert response.status_code == 202
        job_id = response.json()["data"]["id"]
        events = await _until_ended(staff)
    assert {e["aggregate_id"] for e in events} == {job_id}
    assert events[-1]["type"] == "import.succeeded"
    assert events[-1]["payload"]["products_created"] == 3
    versions = [e["aggregate_version"] for e in events]
    assert versions == sorted(set(versions))  # increasing, no repeats
