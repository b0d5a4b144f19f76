"""The Server-Sent Events stream: same order and resume semantics as the WebSocket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from tests.realtime.conftest import serving


async def _read_events(response: httpx.Response, count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                events.append(
                    {
                        "id": int(fields["id"]),
                        "event": fields["event"],
                        "data": orjson.loads(fields["data"]),
                    }
                )
                if len(events) == count:
                    return events
            fields = {}
        elif not line.startswith(":") and ":" in line:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return events


async def test_sse_replays_then_follows_and_resumes_with_last_event_id(
    fresh_db_url: str, write_events: Callable[..., Any]
) -> None:
    async with (
        serving(fresh_db_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=20) as http,
    ):
        await write_events(3)
        async with http.stream(
            "GET", "/api/v1/stream/sse", params={"topics": "products", "after": 0}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            reading = asyncio.create_task(_read_events(response, 5))
            await asyncio.sleep(0.3)
            await write_events(2)
            first = await asyncio.wait_for(reading, 20)
        assert [e["id"] for e in first] == [1, 2, 3, 4, 5]
        assert all(e["event"] == "product.updated" for e in first)
        assert [e["data"]["position"] for e in first] == [1, 2, 3, 4, 5]

        await write_events(2)  # while disconnected
        headers = {"Last-Event-ID": str(first[-1]["id"])}
        async with http.stream(
            "GET", "/api/v1/stream/sse", params={"topics": "products"}, headers=headers
        ) as response:
            resumed = await asyncio.wait_for(_read_events(response, 2), 20)
    assert [e["id"] for e in resumed] == [6, 7]


async def test_sse_refuses_unknown_topics(fresh_db_url: str) -> None:
    async with (
        serving(fresh_db_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        response = await http.get("/api/v1/stream/sse", params={"topics": "products,secrets"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_FAILED"
