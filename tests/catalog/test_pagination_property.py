"""Keyset pagination never skips or repeats a row, even while rows are added between pages."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mercato.app import create_app
from mercato.catalog import service
from mercato.catalog.schemas import CategoryCreate, ProductCreate
from mercato.core.database import Database
from tests.database import SingleConnectionDatabase
from tests.settings import make_settings

SORTS = ["newest", "price_asc", "price_desc", "name_asc", "name_desc"]
# Few distinct prices and names, so that many rows tie on the sort key and only the id
# tie-breaker keeps the order total.
PRICES = [Decimal("1.00"), Decimal("2.50"), Decimal("9.99")]
NAMES = ["Alpha Lamp", "Beta Lamp", "Gamma Lamp"]
_sku = itertools.count()


def _product(draw_price: int, draw_name: int, category_id: uuid.UUID, brand: str) -> ProductCreate:
    return ProductCreate(
        sku=f"PROP-{next(_sku)}-{uuid.uuid4().hex[:6]}",
        name=NAMES[draw_name],
        price=PRICES[draw_price],
        brand=brand,
        category_id=category_id,
    )


def _sort_key(product: dict[str, Any], sort: str) -> Any:
    return {
        "newest": datetime.fromisoformat(product["created_at"]),
        "price_asc": Decimal(product["price"]),
        "price_desc": Decimal(product["price"]),
        "name_asc": product["name"],
        "name_desc": product["name"],
    }[sort]


async def _scenario(
    url: str,
    rows: list[tuple[int, int, int]],
    inserts: list[list[tuple[int, int, int]]],
    page_size: int,
    sort: str,
    by_category: bool,
) -> None:
    conn = await asyncpg.connect(url)
    await Database.init_connection(conn)
    transaction = conn.transaction()
    await transaction.start()
    try:
        db = SingleConnectionDatabase(conn)
        root = await service.create_category(
            conn, CategoryCreate(name=f"Root {uuid.uuid4().hex[:8]}")
        )
        leaves = [
            await service.create_category(
                conn, CategoryCreate(name=f"Leaf {i} {uuid.uuid4().hex[:8]}", parent_id=root["id"])
            )
            for i in range(2)
        ]
        homes = [root["id"], leaves[0]["id"], leaves[1]["id"]]
        brand = f"prop-{uuid.uuid4().hex[:8]}"

        async def add(spec: tuple[int, int, int]) -> str:
            price, name, home = spec
            row = await service.create_product(conn, _product(price, name, homes[home], brand))
            return str(row["id"])

        initial = {await add(spec) for spec in rows}
        app = create_app(make_settings(), database=db)  # type: ignore[arg-type]
        params: dict[str, Any] = {"sort": sort, "limit": page_size}
        params.update({"category_id": str(root["id"])} if by_category else {"brand": brand})
        seen: list[dict[str, Any]] = []
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                pending = iter(inserts)
                cursor = None
                for _ in range(200):
                    response = await http.get(
                        "/api/v1/products",
                        params={**params, **({"cursor": cursor} if cursor else {})},
                    )
                    assert response.status_code == 200, response.text
                    page = response.json()
                    assert len(page["data"]) <= page_size
                    seen.extend(page["data"])
                    cursor = page["meta"]["next_cursor"]
                    if cursor is None:
                        break
                    for spec in next(pending, []):
                        await add(spec)
        ids = [p["id"] for p in seen]
        assert len(ids) == len(set(ids)), "a row was repeated"
        assert initial <= set(ids), "a row that existed throughout was skipped"
        keys = [(_sort_key(p, sort), p["id"]) for p in seen]
        descending = sort in ("newest", "price_desc", "name_desc")
        assert keys == sorted(keys, reverse=descending)
    finally:
        await transaction.rollback()
        await conn.close()


spec = st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(spec, max_size=25),
    inserts=st.lists(st.lists(spec, max_size=3), max_size=8),
    page_size=st.integers(1, 6),
    sort=st.sampled_from(SORTS),
    by_category=st.booleans(),
)
def test_pages_never_skip_or_repeat_rows(
    shared_db_url: str,
    rows: list[tuple[int, int, int]],
    inserts: list[list[tuple[int, int, int]]],
    page_size: int,
    sort: str,
    by_category: bool,
) -> None:
    asyncio.run(_scenario(shared_db_url, rows, inserts, page_size, sort, by_category))
