"""The catalog's use cases. Each runs inside the caller's transaction and never commits."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from mercato.catalog import events, repository
from mercato.catalog.errors import (
    CategoryCycle,
    CategoryHasChildren,
    CategoryNotEmpty,
    CategoryNotFound,
    CategoryTooDeep,
    ProductNotDeleted,
    ProductNotFound,
    UnknownCategory,
)
from mercato.catalog.rules import (
    MAX_CATEGORY_DEPTH,
    ProductFilters,
    child_path,
    depth_of,
    is_within,
    slugify,
)
from mercato.catalog.schemas import CategoryCreate, CategoryUpdate, ProductCreate
from mercato.core.database import Executor
from mercato.core.errors import PreconditionFailed, ValidationFailed
from mercato.events import record_events

MAX_CATEGORIES_LISTED = 10_000


def _check_version(row: asyncpg.Record, expected_version: int | None) -> None:
    if expected_version is not None and row["version"] != expected_version:
        raise PreconditionFailed()


async def _require_category(db: Executor, category_id: uuid.UUID) -> asyncpg.Record:
    category = await repository.get_category(db, category_id)
    if category is None:
        raise UnknownCategory()
    return category


# --- products ---------------------------------------------------------------------------


async def create_product(db: Executor, data: ProductCreate) -> asyncpg.Record:
    if data.category_id is not None:
        await _require_category(db, data.category_id)
    row = await repository.insert_product(db, data.model_dump())
    await record_events(db, [events.product_event(events.PRODUCT_CREATED, row)])
    return row


async def update_product(
    db: Executor, product_id: uuid.UUID, *, changes: dict[str, Any], expected_version: int | None
) -> asyncpg.Record:
    current = await repository.lock_product(db, product_id)
    if current is None or current["deleted_at"] is not None:
        raise ProductNotFound()
    _check_version(current, expected_version)
    if changes.get("category_id") is not None:
        await _require_category(db, changes["category_id"])
    if not changes:
        return current
    row = await repository.update_product(db, product_id, changes)
    drafts = [events.product_event(events.PRODUCT_UPDATED, row)]
    if row["inventory_count"] != current["inventory_count"]:
        drafts.append(events.inventory_changed(row, previous_count=current["inventory_count"]))
    await record_events(db, drafts)
    return row


async def delete_product(
    db: Executor, product_id: uuid.UUID, *, expected_version: int | None
) -> None:
    current = await repository.lock_product(db, product_id)
    if current is None or current["deleted_at"] is not None:
        raise ProductNotFound()
    _check_version(current, expected_version)
    row = await repository.set_product_deleted(db, product_id, deleted=True)
    await record_events(db, [events.product_event(events.PRODUCT_DELETED, row)])


async def restore_product(
    db: Executor, product_id: uuid.UUID, *, expected_version: int | None
) -> asyncpg.Record:
    current = await repository.lock_product(db, product_id)
    if current is None:
        raise ProductNotFound()
    if current["deleted_at"] is None:
        raise ProductNotDeleted()
    _check_version(current, expected_version)
    row = await repository.set_product_deleted(db, product_id, deleted=False)
    await record_events(db, [events.product_event(events.PRODUCT_RESTORED, row)])
    return row


async def resolve_filters(
    db: Executor, *, category_id: uuid.UUID | None, filters: ProductFilters
) -> ProductFilters:
    """Turn a category id into the path prefix that selects its whole subtree."""
    if category_id is None:
        return filters
    category = await repository.get_category(db, category_id)
    if category is None:
        raise UnknownCategory()
    return ProductFilters(
        category_path=category["path"],
        min_price=filters.min_price,
        max_price=filters.max_price,
        brand=filters.brand,
        in_stock=filters.in_stock,
        tsquery=filters.tsquery,
    )


# --- categories -------------------------------------------------------------------------


async def create_category(db: Executor, data: CategoryCreate) -> asyncpg.Record:
    await repository.lock_category_tree(db)
    parent_path = None
    if data.parent_id is not None:
        parent = await _require_category(db, data.parent_id)
        parent_path = parent["path"]
    category_id = uuid.uuid4()
    path = child_path(parent_path, category_id)
    if depth_of(path) > MAX_CATEGORY_DEPTH:
        raise CategoryTooDeep(f"Categories may be nested at most {MAX_CATEGORY_DEPTH} deep.")
    slug = data.slug or slugify(data.name)
    if not slug:
        raise ValidationFailed(
            details=[
                {"field": "body.slug", "message": "give a slug: none can be made from the name"}
            ]
        )
    row = await repository.insert_category(
        db,
        {
            "id": category_id,
            "parent_id": data.parent_id,
            "name": data.name,
            "slug": slug,
            "path": path,
            "depth": depth_of(path),
            "description": data.description,
        },
    )
    await record_events(db, [events.category_event(events.CATEGORY_CREATED, row)])
    return row


async def update_category(
    db: Executor, category_id: uuid.UUID, *, data: CategoryUpdate, expected_version: int | None
) -> asyncpg.Record:
    await repository.lock_category_tree(db)
    current = await repository.lock_category(db, category_id)
    if current is None:
        raise CategoryNotFound()
    _check_version(current, expected_version)
    changes = {name: getattr(data, name) for name in data.model_fields_set}
    for required in ("name", "slug"):
        if required in changes and changes[required] is None:
            raise ValidationFailed(
                details=[{"field": f"body.{required}", "message": "cannot be null"}]
            )
    drafts = []
    if "parent_id" in changes and changes["parent_id"] != current["parent_id"]:
        new_path, descendants = await _move_descendants(db, current, changes["parent_id"])
        changes.update(path=new_path, depth=depth_of(new_path))
        drafts += [events.category_event(events.CATEGORY_UPDATED, d) for d in descendants]
    if not changes:
        return current
    row = await repository.update_category(db, category_id, changes)
    await record_events(db, [events.category_event(events.CATEGORY_UPDATED, row), *drafts])
    return row


async def _move_descendants(
    db: Executor, category: asyncpg.Record, new_parent_id: uuid.UUID | None
) -> tuple[str, list[asyncpg.Record]]:
    """Re-root the category's descendants under its new path; return it and them."""
    parent_path = None
    if new_parent_id is not None:
        parent = await _require_category(db, new_parent_id)
        if is_within(parent["path"], category["path"]):
            raise CategoryCycle()
        parent_path = parent["path"]
    new_path = child_path(parent_path, category["id"])
    deepest = await repository.deepest_depth_within(db, category["path"])
    if deepest - category["depth"] + depth_of(new_path) > MAX_CATEGORY_DEPTH:
        raise CategoryTooDeep(f"Categories may be nested at most {MAX_CATEGORY_DEPTH} deep.")
    moved = await repository.move_descendants(db, old_path=category["path"], new_path=new_path)
    return new_path, moved


async def delete_category(
    db: Executor,
    category_id: uuid.UUID,
    *,
    expected_version: int | None,
    move_products_to: uuid.UUID | None,
) -> None:
    await repository.lock_category_tree(db)
    current = await repository.lock_category(db, category_id)
    if current is None:
        raise CategoryNotFound()
    _check_version(current, expected_version)
    if await repository.has_children(db, category_id):
        raise CategoryHasChildren()
    if move_products_to is not None:
        if move_products_to == category_id:
            raise ValidationFailed(
                details=[{"field": "query.move_products_to", "message": "must be another category"}]
            )
        await _require_category(db, move_products_to)
        moved = await repository.move_products(db, source=category_id, target=move_products_to)
        drafts = [events.product_event(events.PRODUCT_UPDATED, row) for row in moved]
    elif await repository.count_products_in_category(db, category_id) > 0:
        raise CategoryNotEmpty()
    else:
        drafts = []
    await repository.delete_category(db, category_id)
    await record_events(db, [*drafts, events.category_event(events.CATEGORY_DELETED, current)])


def category_tree(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    """Nest categories (rows ordered by path, so parents come first) into a tree."""
    nodes: dict[uuid.UUID, dict[str, Any]] = {}
    roots: list[dict[str, Any]] = []
    for row in rows:
        node = {
            "id": str(row["id"]),
            "name": row["name"],
            "slug": row["slug"],
            "depth": row["depth"],
            "children": [],
        }
        nodes[row["id"]] = node
        parent = nodes.get(row["parent_id"]) if row["parent_id"] else None
        (parent["children"] if parent else roots).append(node)
    _sort_by_name(roots)
    return roots


def _sort_by_name(nodes: list[dict[str, Any]]) -> None:
    nodes.sort(key=lambda node: (node["name"].casefold(), node["slug"]))
    for node in nodes:
        _sort_by_name(node["children"])
