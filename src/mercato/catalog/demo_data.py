"""Deterministic demo and benchmark data for the catalog, loaded with COPY.

The same arguments always produce the same rows (seeded RNG, ids derived from the row
number), and re-running only adds what is missing, so seeding is idempotent and a larger
run extends a smaller one.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from mercato.catalog.rules import child_path, depth_of

SEED = 42
_NAMESPACE = uuid.UUID("6f1e2f0c-5d3e-4d8f-9a57-7c1f3b9d2a10")
_BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
_SYLLABLES = (
    "ka lo mi ra ne to su vi be da fo gu hi ja le mo nu pe qui ri sa te ul va wo xi yo ze "
    "bar cor dun fel gar hol kin lor mar nor pol ran sol tor ven wil zan"
).split()
_PRODUCT_NOUNS = (
    "chair lamp table desk sofa shelf rug mirror clock vase kettle toaster blender mixer "
    "jacket shirt boots sneakers scarf gloves backpack wallet watch headphones speaker "
    "keyboard mouse monitor charger cable drone camera tripod lens tent lantern bottle "
    "mug pan skillet knife board towel pillow blanket candle planter hammer drill saw"
).split()
_BRANDS = [f"Brand{n:02d}" for n in range(60)]


def vocabulary(size: int = 2_000) -> list[str]:
    rng = random.Random(SEED)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))))
    return sorted(words)


def category_id(index: int) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"category-{index}")


def product_id(index: int) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"product-{index}")


def sku(index: int) -> str:
    return f"SKU-{index:08d}"


def gtin13(number: int) -> str:
    body = f"{2_000_000_000_000 + number:013d}"[:12]
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def categories(count: int) -> list[tuple[uuid.UUID, uuid.UUID | None, str, str, str, int]]:
    """A two-level tree: about one root per ten categories, the rest spread below them."""
    roots = max(1, count // 10)
    rows: list[tuple[uuid.UUID, uuid.UUID | None, str, str, str, int]] = []
    paths: dict[uuid.UUID, str] = {}
    for index in range(count):
        cid = category_id(index)
        parent = None if index < roots else category_id(index % roots)
        path = child_path(paths[parent] if parent else None, cid)
        paths[cid] = path
        name = f"Department {index}" if parent is None else f"Aisle {index}"
        rows.append((cid, parent, name, f"cat-{index}", path, depth_of(path)))
    return rows


def products(count: int, category_count: int) -> Iterator[tuple[object, ...]]:
    rng = random.Random(SEED)
    words = vocabulary()
    leaves = [category_id(i) for i in range(max(1, category_count // 10), category_count)] or [
        category_id(0)
    ]
    for index in range(count):
        name_words = [*rng.sample(words, rng.randint(2, 4)), rng.choice(_PRODUCT_NOUNS)]
        description = " ".join(rng.choices(words, k=rng.randint(20, 40)))
        yield (
            product_id(index),
            sku(index),
            " ".join(name_words).title(),
            description,
            rng.choice(_BRANDS),
            gtin13(index),
            Decimal(rng.randint(199, 99_999)) / 100,
            leaves[index % len(leaves)],
            rng.choice((0, 0, 5, 10, 25, 50, 100, 250)),
            _BASE_TIME + timedelta(seconds=index * 17),
        )


async def seed_catalog(conn: asyncpg.Connection, *, product_count: int, category_count: int) -> int:
    """Load the data set; returns the number of products added. Runs in one transaction."""
    async with conn.transaction():
        # Already complete (the usual re-run): skip generating and copying every row again.
        products_present = await conn.fetchval(
            "SELECT count(*) FROM catalog.products WHERE sku >= $1 AND sku < $2",
            sku(0),
            sku(product_count),
        )
        categories_present = await conn.fetchval(
            "SELECT count(*) FROM catalog.categories WHERE id = ANY($1::uuid[])",
            [category_id(n) for n in range(category_count)],
        )
        if products_present == product_count and categories_present == category_count:
            return 0
        await conn.executemany(
            "INSERT INTO catalog.categories (id, parent_id, name, slug, path, depth) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            categories(category_count),
        )
        await conn.execute(
            "CREATE TEMP TABLE seed_products (id uuid, sku text, name text, description text, "
            "brand text, gtin text, price numeric(12,2), category_id uuid, inventory_count int, "
            "created_at timestamptz) ON COMMIT DROP"
        )
        await conn.copy_records_to_table(
            "seed_products", records=products(product_count, category_count)
        )
        status = await conn.execute(
            "INSERT INTO catalog.products (id, sku, name, description, brand, gtin, price, "
            "category_id, inventory_count, created_at, updated_at) "
            "SELECT id, sku, name, description, brand, gtin, price, category_id, "
            "inventory_count, created_at, created_at FROM seed_products "
            "ON CONFLICT DO NOTHING"
        )
        await conn.execute("ANALYZE catalog.products")
    return int(status.split()[-1])
