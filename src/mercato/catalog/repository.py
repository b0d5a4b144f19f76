"""Every query the catalog runs: plain SQL, parameterised, on asyncpg.

Dynamic parts of a query (which filters, which sort) are chosen from fixed fragments in this
file; values always travel as bind parameters, never as text.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import asyncpg

from mercato.catalog.errors import CategorySlugTaken, SkuAlreadyExists, UnknownCategory
from mercato.catalog.rules import SORT_KEYS, ProductFilters, ProductSort
from mercato.core.database import Executor

PRODUCT_COLUMNS = (
    "id, sku, name, description, brand, gtin, mpn, price, currency, category_id, inventory_count, "
    "attributes, is_active, version, created_at, updated_at, deleted_at"
)
CATEGORY_COLUMNS = (
    "id, parent_id, name, slug, path, depth, description, version, created_at, updated_at"
)
LIVE = "deleted_at IS NULL AND is_active"

WRITABLE_PRODUCT_FIELDS = (
    "sku",
    "name",
    "description",
    "brand",
    "gtin",
    "mpn",
    "price",
    "currency",
    "category_id",
    "inventory_count",
    "attributes",
    "is_active",
)


def product_json(row: asyncpg.Record) -> dict[str, Any]:
    """A product row as its API representation (orjson handles UUIDs and datetimes)."""
    product = dict(row)
    price: Decimal = product["price"]
    product["price"] = str(price)
    # asyncpg's UUID type is its own (fast) class, which orjson does not know.
    product["id"] = str(product["id"])
    if product["category_id"] is not None:
        product["category_id"] = str(product["category_id"])
    product.pop("rank", None)
    return product


def product_payload_sql(alias: str) -> str:
    """`product_json` computed by PostgreSQL from the products row `alias`, for set-based
    writers (imports) that record their events in the same statement. Times are UTC with
    microseconds, as orjson writes them."""

    def stamp(column: str) -> str:
        return f"to_char({alias}.{column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"

    fields = {
        "id": f"{alias}.id::text",
        "sku": f"{alias}.sku",
        "name": f"{alias}.name",
        "description": f"{alias}.description",
        "brand": f"{alias}.brand",
        "gtin": f"{alias}.gtin",
        "mpn": f"{alias}.mpn",
        "price": f"{alias}.price::text",
        "currency": f"{alias}.currency",
        "category_id": f"{alias}.category_id::text",
        "inventory_count": f"{alias}.inventory_count",
        "attributes": f"{alias}.attributes",
        "is_active": f"{alias}.is_active",
        "version": f"{alias}.version",
        "created_at": stamp("created_at"),
        "updated_at": stamp("updated_at"),
        "deleted_at": stamp("deleted_at"),
    }
    return "jsonb_build_object(" + ", ".join(f"'{k}', {v}" for k, v in fields.items()) + ")"


def category_json(row: asyncpg.Record) -> dict[str, Any]:
    category = dict(row)
    category["id"] = str(category["id"])
    if category["parent_id"] is not None:
        category["parent_id"] = str(category["parent_id"])
    return category


def _translate_integrity_error(error: asyncpg.IntegrityConstraintViolationError) -> Exception:
    constraint: str | None = getattr(error, "constraint_name", None)
    if constraint == "uq_products_sku":
        return SkuAlreadyExists()
    if constraint == "fk_products_category_id_categories":
        return UnknownCategory()
    if constraint == "uq_categories_parent_id_slug":
        return CategorySlugTaken()
    unknown: Exception = error
    return unknown


# --- products ---------------------------------------------------------------------------


async def get_product(
    db: Executor,
    product_id: uuid.UUID,
    *,
    include_inactive: bool = False,
    include_deleted: bool = False,
) -> asyncpg.Record | None:
    if include_deleted:
        visibility = "TRUE"
    elif include_inactive:
        visibility = "deleted_at IS NULL"
    else:
        visibility = LIVE
    return await db.fetchrow(
        f"SELECT {PRODUCT_COLUMNS} FROM catalog.products WHERE id = $1 AND {visibility}",
        product_id,
    )


async def lock_product(db: Executor, product_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"SELECT {PRODUCT_COLUMNS} FROM catalog.products WHERE id = $1 FOR UPDATE",
        product_id,
    )


async def insert_product(db: Executor, fields: dict[str, Any]) -> asyncpg.Record:
    columns = [name for name in WRITABLE_PRODUCT_FIELDS if name in fields]
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    try:
        return await db.fetchrow(
            f"INSERT INTO catalog.products ({', '.join(columns)}) VALUES ({placeholders}) "
            f"RETURNING {PRODUCT_COLUMNS}",
            *(fields[name] for name in columns),
        )
    except asyncpg.IntegrityConstraintViolationError as error:
        raise _translate_integrity_error(error) from error


async def update_product(
    db: Executor, product_id: uuid.UUID, changes: dict[str, Any]
) -> asyncpg.Record:
    columns = [name for name in WRITABLE_PRODUCT_FIELDS if name in changes]
    assignments = [f"{name} = ${i}" for i, name in enumerate(columns, start=2)]
    assignments += ["version = version + 1", "updated_at = clock_timestamp()"]
    try:
        return await db.fetchrow(
            f"UPDATE catalog.products SET {', '.join(assignments)} WHERE id = $1 "
            f"RETURNING {PRODUCT_COLUMNS}",
            product_id,
            *(changes[name] for name in columns),
        )
    except asyncpg.IntegrityConstraintViolationError as error:
        raise _translate_integrity_error(error) from error


async def set_product_deleted(
    db: Executor, product_id: uuid.UUID, *, deleted: bool
) -> asyncpg.Record:
    return await db.fetchrow(
        "UPDATE catalog.products SET deleted_at = CASE WHEN $2 THEN clock_timestamp() END, "
        "version = version + 1, updated_at = clock_timestamp() WHERE id = $1 "
        f"RETURNING {PRODUCT_COLUMNS}",
        product_id,
        deleted,
    )


def _product_conditions(filters: ProductFilters, args: list[Any], *, alias: str) -> list[str]:
    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    conditions = [f"{alias}.deleted_at IS NULL", f"{alias}.is_active"]
    if filters.min_price is not None:
        conditions.append(f"{alias}.price >= {param(filters.min_price)}")
    if filters.max_price is not None:
        conditions.append(f"{alias}.price <= {param(filters.max_price)}")
    if filters.brand is not None:
        conditions.append(f"{alias}.brand = {param(filters.brand)}")
    if filters.in_stock is True:
        conditions.append(f"{alias}.inventory_count > 0")
    elif filters.in_stock is False:
        conditions.append(f"{alias}.inventory_count = 0")
    return conditions


async def list_products(
    db: Executor,
    *,
    filters: ProductFilters,
    sort: ProductSort,
    after: list[Any] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """One page of live products in `sort` order, starting after the keyset `after`.

    With a category filter, each category of the subtree is walked through its own index
    from the cursor (LIMIT n each) and the walks are merged: the cost is the page size times
    the subtree's width, whatever the number of products or the page number.
    """
    key = SORT_KEYS[sort]
    args: list[Any] = []

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    direction = "DESC" if key.descending else "ASC"
    comparison = "<" if key.descending else ">"
    rank_select = ""
    from_extra = ""
    if filters.tsquery is not None:
        from_extra = f", to_tsquery('english', {param(filters.tsquery)}) AS query"
        rank_select = ", ts_rank_cd(p.search_vector, query) AS rank"
    sort_expr = "ts_rank_cd(p.search_vector, query)" if key.column == "rank" else f"p.{key.column}"

    conditions = _product_conditions(filters, args, alias="p")
    if filters.tsquery is not None:
        conditions.append("p.search_vector @@ query")
    if after is not None:
        after_key, after_id = after
        cast = "::real" if key.column == "rank" else ""
        conditions.append(
            f"({sort_expr}, p.id) {comparison} ({param(after_key)}{cast}, {param(after_id)})"
        )
    order = f"ORDER BY {sort_expr} {direction}, p.id {direction}"
    limit_param = param(limit)

    if filters.category_path is not None and filters.tsquery is None:
        path_param = param(filters.category_path + "%")
        sql = (
            f"SELECT p.* FROM catalog.categories c CROSS JOIN LATERAL ("
            f"SELECT {_prefixed(PRODUCT_COLUMNS, 'p')} FROM catalog.products p "
            f"WHERE p.category_id = c.id AND {' AND '.join(conditions)} "
            f"{order} LIMIT {limit_param}) p "
            f"WHERE c.path LIKE {path_param} "
            f"ORDER BY p.{key.column} {direction}, p.id {direction} LIMIT {limit_param}"
        )
    else:
        if filters.category_path is not None:
            conditions.append(
                "p.category_id IN (SELECT id FROM catalog.categories "
                f"WHERE path LIKE {param(filters.category_path + '%')})"
            )
        sql = (
            f"SELECT {_prefixed(PRODUCT_COLUMNS, 'p')}{rank_select} "
            f"FROM catalog.products p{from_extra} WHERE {' AND '.join(conditions)} "
            f"{order} LIMIT {limit_param}"
        )
    return await db.fetch(sql, *args)


def _prefixed(columns: str, alias: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in columns.split(","))


async def count_products_in_category(db: Executor, category_id: uuid.UUID) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM catalog.products WHERE category_id = $1", category_id
    )
    return count


async def move_products(
    db: Executor, *, source: uuid.UUID, target: uuid.UUID
) -> list[asyncpg.Record]:
    return await db.fetch(
        "UPDATE catalog.products SET category_id = $2, version = version + 1, "
        f"updated_at = clock_timestamp() WHERE category_id = $1 RETURNING {PRODUCT_COLUMNS}",
        source,
        target,
    )


# --- categories -------------------------------------------------------------------------


async def get_category(db: Executor, category_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"SELECT {CATEGORY_COLUMNS} FROM catalog.categories WHERE id = $1",
        category_id,
    )


async def lock_category(db: Executor, category_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"SELECT {CATEGORY_COLUMNS} FROM catalog.categories WHERE id = $1 FOR UPDATE",
        category_id,
    )


async def list_categories(db: Executor, *, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        f"SELECT {CATEGORY_COLUMNS} FROM catalog.categories ORDER BY path LIMIT $1",
        limit,
    )


async def insert_category(db: Executor, fields: dict[str, Any]) -> asyncpg.Record:
    try:
        return await db.fetchrow(
            "INSERT INTO catalog.categories (id, parent_id, name, slug, path, depth, description) "
            f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {CATEGORY_COLUMNS}",
            fields["id"],
            fields["parent_id"],
            fields["name"],
            fields["slug"],
            fields["path"],
            fields["depth"],
            fields["description"],
        )
    except asyncpg.IntegrityConstraintViolationError as error:
        raise _translate_integrity_error(error) from error


async def update_category(
    db: Executor, category_id: uuid.UUID, changes: dict[str, Any]
) -> asyncpg.Record:
    columns = [
        c for c in ("name", "slug", "description", "parent_id", "path", "depth") if c in changes
    ]
    assignments = [f"{name} = ${i}" for i, name in enumerate(columns, start=2)]
    assignments += ["version = version + 1", "updated_at = clock_timestamp()"]
    try:
        return await db.fetchrow(
            f"UPDATE catalog.categories SET {', '.join(assignments)} WHERE id = $1 "
            f"RETURNING {CATEGORY_COLUMNS}",
            category_id,
            *(changes[name] for name in columns),
        )
    except asyncpg.IntegrityConstraintViolationError as error:
        raise _translate_integrity_error(error) from error


async def move_descendants(db: Executor, *, old_path: str, new_path: str) -> list[asyncpg.Record]:
    """Rewrite the paths of a category's descendants after the category moved."""
    return await db.fetch(
        "UPDATE catalog.categories SET path = $2 || substr(path, length($1) + 1), "
        "depth = depth + ($3::int), version = version + 1, updated_at = clock_timestamp() "
        f"WHERE path LIKE $1 || '%' AND path <> $1 RETURNING {CATEGORY_COLUMNS}",
        old_path,
        new_path,
        new_path.count("/") - old_path.count("/"),
    )


async def deepest_depth_within(db: Executor, path: str) -> int:
    depth: int = await db.fetchval(
        "SELECT max(depth) FROM catalog.categories WHERE path LIKE $1 || '%'", path
    )
    return depth


# Any number that no other advisory lock in Mercato uses: "mercato/catalog tree".
_CATEGORY_TREE_LOCK = 0x6D65726361746F01


async def lock_category_tree(db: Executor) -> None:
    """Serialise changes to the tree's shape until the transaction ends.

    A move rewrites the paths of a whole subtree; a concurrent create under one of those
    descendants would otherwise read the old path, and two opposite moves would deadlock.
    Category writes are rare admin actions, so one lock for the whole tree costs nothing.
    """
    await db.execute("SELECT pg_advisory_xact_lock($1)", _CATEGORY_TREE_LOCK)


async def has_children(db: Executor, category_id: uuid.UUID) -> bool:
    found: bool = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM catalog.categories WHERE parent_id = $1)", category_id
    )
    return found


async def delete_category(db: Executor, category_id: uuid.UUID) -> None:
    await db.execute("DELETE FROM catalog.categories WHERE id = $1", category_id)
