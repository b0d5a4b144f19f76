"""Category tree changes racing each other on real transactions (a pool, many clients)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from mercato.app import create_app
from tests.factories import create_category, staff_headers
from tests.settings import make_settings


@pytest.fixture
async def pooled_client(fresh_db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url=fresh_db_url, db_pool_max=10))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def _paths_are_consistent(url: str) -> list[str]:
    """Every category's path is its parent's path plus its own id."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT c.id, c.path, c.depth, p.path AS parent_path FROM catalog.categories c "
            "LEFT JOIN catalog.categories p ON p.id = c.parent_id"
        )
    finally:
        await conn.close()
    return [
        str(r["id"])
        for r in rows
        if r["path"] != f"{r['parent_path'] or '/'}{r['id']}/"
        or r["depth"] != r["path"].count("/") - 2
    ]


async def test_a_create_racing_a_move_never_gets_a_stale_path(
    pooled_client: httpx.AsyncClient, fresh_db_url: str
) -> None:
    staff = {**(await staff_headers(fresh_db_url)), "If-Match": "*"}
    for _ in range(15):
        mover = await create_category(pooled_client, staff)
        child = await create_category(pooled_client, staff, parent_id=mover["id"])
        target = await create_category(pooled_client, staff)
        move, create = await asyncio.gather(
            pooled_client.patch(
                f"/api/v1/categories/{mover['id']}", json={"parent_id": target["id"]}, headers=staff
            ),
            pooled_client.post(
                "/api/v1/categories",
                json={"name": "Racer", "parent_id": child["id"]},
                headers=staff,
            ),
        )
        assert (move.status_code, create.status_code) == (200, 201), (move.text, create.text)
    assert await _paths_are_consistent(fresh_db_url) == []


async def test_opposite_moves_never_deadlock_or_make_a_cycle(
    pooled_client: httpx.AsyncClient, fresh_db_url: str
) -> None:
    staff = {**(await staff_headers(fresh_db_url)), "If-Match": "*"}
    for _ in range(15):
        a = await create_category(pooled_client, staff)
        b = await create_category(pooled_client, staff)
        results = await asyncio.gather(
            pooled_client.patch(
                f"/api/v1/categories/{a['id']}", json={"parent_id": b["id"]}, headers=staff
            ),
            pooled_client.patch(
                f"/api/v1/categories/{b['id']}", json={"parent_id": a["id"]}, headers=staff
            ),
        )
        statuses = sorted(r.status_code for r in results)
        assert statuses == [200, 409], [r.text for r in results]
        assert any(r.json().get("error", {}).get("code") == "CATEGORY_CYCLE" for r in results)
    assert await _paths_are_consistent(fresh_db_url) == []
