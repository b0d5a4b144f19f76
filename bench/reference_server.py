"""The reference server: what Python allows for W1 to W3 on this machine.

A minimal Starlette + asyncpg + orjson app with no middleware, running exactly the SQL the
app runs (bench/run.py checks the statements against mercato.catalog.repository before each
run), with the same pool settings. Routes are shaped like the app's so the same wrk scripts
hit both; the page cursor is unsigned: `cursor=<created_at iso>_<product id>`.

    DATABASE_URL=postgresql://... uvicorn reference_server:app --loop uvloop --http httptools
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

PRODUCT_COLUMNS = (
    "id, sku, name, description, brand, gtin, mpn, price, currency, category_id, inventory_count, "
    "attributes, is_active, version, created_at, updated_at, deleted_at"
)
P_COLUMNS = ", ".join(f"p.{column.strip()}" for column in PRODUCT_COLUMNS.split(","))

# W1: repository.get_product for a public caller (live products only).
SQL_PRODUCT = (
    f"SELECT {PRODUCT_COLUMNS} FROM catalog.products "
    "WHERE id = $1 AND deleted_at IS NULL AND is_active"
)
# W2: service.resolve_filters looks the category up, then repository.list_products walks
# each category of the subtree through its own index and merges the walks.
SQL_CATEGORY = (
    "SELECT id, parent_id, name, slug, path, depth, description, version, created_at, "
    "updated_at FROM catalog.categories WHERE id = $1"
)
SQL_CATEGORY_PAGE = (
    "SELECT p.* FROM catalog.categories c CROSS JOIN LATERAL ("
    f"SELECT {P_COLUMNS} FROM catalog.products p "
    "WHERE p.category_id = c.id AND p.deleted_at IS NULL AND p.is_active "
    "ORDER BY p.created_at DESC, p.id DESC LIMIT $1) p "
    "WHERE c.path LIKE $2 ORDER BY p.created_at DESC, p.id DESC LIMIT $1"
)
SQL_CATEGORY_PAGE_AFTER = (
    "SELECT p.* FROM catalog.categories c CROSS JOIN LATERAL ("
    f"SELECT {P_COLUMNS} FROM catalog.products p "
    "WHERE p.category_id = c.id AND p.deleted_at IS NULL AND p.is_active "
    "AND (p.created_at, p.id) < ($1, $2) "
    "ORDER BY p.created_at DESC, p.id DESC LIMIT $3) p "
    "WHERE c.path LIKE $4 ORDER BY p.created_at DESC, p.id DESC LIMIT $3"
)
# W3: full-text search, ranked.
SQL_SEARCH = (
    f"SELECT {P_COLUMNS}, ts_rank_cd(p.search_vector, query) AS rank "
    "FROM catalog.products p, to_tsquery('english', $1) AS query "
    "WHERE p.deleted_at IS NULL AND p.is_active AND p.search_vector @@ query "
    "ORDER BY ts_rank_cd(p.search_vector, query) DESC, p.id DESC LIMIT $2"
)

PAGE_SIZE = 20
JSON_HEADERS = {"cache-control": "no-cache"}


async def init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def reset_connection(conn: asyncpg.Connection) -> None:
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _product(row: asyncpg.Record) -> dict[str, Any]:
    product = dict(row)
    product.pop("rank", None)
    product["id"] = str(product["id"])
    product["price"] = str(product["price"])
    if product["category_id"] is not None:
        product["category_id"] = str(product["category_id"])
    return product


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, JSON_HEADERS, "application/json")


def _not_found() -> Response:
    return _json({"error": {"code": "not_found"}}, 404)


def _prefix_tsquery(text: str) -> str | None:
    """The app's rule, reduced to what the benchmark sends: lowercase words, prefix-matched."""
    words = [word.lower() for word in text.split() if word.isalnum()][:8]
    return " & ".join(f"{word}:*" if len(word) >= 2 else word for word in words) or None


def _page(rows: list[asyncpg.Record], cursor: bool) -> Response:
    next_cursor = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        if cursor:
            last = rows[-1]
            next_cursor = f"{last['created_at'].isoformat()}_{last['id']}"
    meta = {"limit": PAGE_SIZE, "count": len(rows), "next_cursor": next_cursor}
    return _json({"data": [_product(row) for row in rows], "meta": meta})


async def get_product(request: Request) -> Response:
    try:
        product_id = uuid.UUID(request.path_params["product_id"])
    except ValueError:
        return _not_found()
    row = await request.app.state.pool.fetchrow(SQL_PRODUCT, product_id)
    if row is None:
        return _not_found()
    return _json({"data": _product(row), "meta": {}})


async def list_products(request: Request) -> Response:
    pool: asyncpg.Pool = request.app.state.pool
    params = request.query_params
    limit = PAGE_SIZE + 1
    if (q := params.get("q")) is not None:
        tsquery = _prefix_tsquery(q)
        rows = await pool.fetch(SQL_SEARCH, tsquery, limit) if tsquery else []
        return _page(rows, cursor=False)
    try:
        category_id = uuid.UUID(params["category_id"])
    except (KeyError, ValueError):
        return _json({"error": {"code": "validation_failed"}}, 422)
    category = await pool.fetchrow(SQL_CATEGORY, category_id)
    if category is None:
        return _not_found()
    path = category["path"] + "%"
    if (cursor := params.get("cursor")) is not None:
        raw_time, _, raw_id = cursor.rpartition("_")
        after_time, after_id = datetime.fromisoformat(raw_time), uuid.UUID(raw_id)
        rows = await pool.fetch(SQL_CATEGORY_PAGE_AFTER, after_time, after_id, limit, path)
    else:
        rows = await pool.fetch(SQL_CATEGORY_PAGE, limit, path)
    return _page(rows, cursor=True)


async def ready(request: Request) -> Response:
    await request.app.state.pool.fetchval("SELECT 1")
    return _json({"status": "ok"})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(
        os.environ["DATABASE_URL"],
        min_size=2,
        max_size=20,
        init=init_connection,
        reset=reset_connection,
        server_settings={"application_name": "mercato-reference", "statement_timeout": "5000"},
    )
    try:
        yield
    finally:
        await app.state.pool.close()


app = Starlette(
    routes=[
        Route("/api/v1/products", list_products),
        Route("/api/v1/products/{product_id}", get_product),
        Route("/health/ready", ready),
    ],
    lifespan=lifespan,
)
