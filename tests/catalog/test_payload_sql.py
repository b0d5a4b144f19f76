"""The product payload PostgreSQL builds for set-based writers (imports) is the one the API
and the catalog's own events carry."""

from __future__ import annotations

import asyncpg
import orjson

from mercato.catalog import PRODUCT_COLUMNS, product_payload_sql
from mercato.catalog.repository import product_json


async def test_the_sql_payload_equals_the_python_one(conn: asyncpg.Connection) -> None:
    category = await conn.fetchval(
        "INSERT INTO catalog.categories (id, name, slug, path, depth) "
        "VALUES (gen_random_uuid(), 'Kettles', 'kettles', '/x/', 0) RETURNING id"
    )
    await conn.execute(
        "INSERT INTO catalog.products (sku, name, description, brand, gtin, mpn, price, "
        "currency, category_id, inventory_count, attributes, is_active, deleted_at) VALUES "
        "('K-1', 'Kettle', 'Steel \"pro\" kettle', 'Bosch', '4006381333931', 'TWK7203', 39.90, "
        '\'EUR\', $1, 7, \'{"colour": "silver", "litres": 1.7}\', false, now())',
        category,
    )
    await conn.execute("INSERT INTO catalog.products (sku, name, price) VALUES ('K-2', 'Bare', 0)")
    rows = await conn.fetch(
        f"SELECT {PRODUCT_COLUMNS}, {product_payload_sql('p')} AS payload "
        "FROM catalog.products p ORDER BY sku"
    )
    for row in rows:
        as_python = orjson.loads(orjson.dumps(product_json(row)))
        as_python.pop("payload")
        assert row["payload"] == as_python
