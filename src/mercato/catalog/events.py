"""The events the catalog publishes. Payloads carry the resource as the API shows it."""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel

from mercato.catalog.repository import category_json, product_json
from mercato.catalog.schemas import CategoryOut, ProductOut
from mercato.events import EventDraft

PRODUCT_CREATED = "product.created"
PRODUCT_UPDATED = "product.updated"
PRODUCT_DELETED = "product.deleted"
PRODUCT_RESTORED = "product.restored"
INVENTORY_CHANGED = "inventory.changed"
CATEGORY_CREATED = "category.created"
CATEGORY_UPDATED = "category.updated"
CATEGORY_DELETED = "category.deleted"


class InventoryChanged(BaseModel):
    product_id: str
    inventory_count: int
    previous_count: int
    visible: bool


# The payload model of every event type and schema version the catalog publishes; their
# JSON Schemas are committed under schemas/events/ (`mercato schema events`).
EVENT_PAYLOADS: dict[tuple[str, int], type[BaseModel]] = {
    (PRODUCT_CREATED, 1): ProductOut,
    (PRODUCT_UPDATED, 1): ProductOut,
    (PRODUCT_DELETED, 1): ProductOut,
    (PRODUCT_RESTORED, 1): ProductOut,
    (INVENTORY_CHANGED, 1): InventoryChanged,
    (CATEGORY_CREATED, 1): CategoryOut,
    (CATEGORY_UPDATED, 1): CategoryOut,
    (CATEGORY_DELETED, 1): CategoryOut,
}


def product_event(event_type: str, row: asyncpg.Record) -> EventDraft:
    return EventDraft(
        type=event_type,
        aggregate_type="product",
        aggregate_id=str(row["id"]),
        aggregate_version=row["version"],
        payload=product_json(row),
    )


def inventory_changed(row: asyncpg.Record, *, previous_count: int) -> EventDraft:
    # Its own aggregate type, so that per-aggregate versions stay strictly increasing
    # even though it shares the product's version number.
    return EventDraft(
        type=INVENTORY_CHANGED,
        aggregate_type="inventory",
        aggregate_id=str(row["id"]),
        aggregate_version=row["version"],
        payload={
            "product_id": str(row["id"]),
            "inventory_count": row["inventory_count"],
            "previous_count": previous_count,
            # Streams show staff-only products to anonymous subscribers as tombstones.
            "visible": row["is_active"] and row["deleted_at"] is None,
        },
    )


def category_event(event_type: str, row: asyncpg.Record) -> EventDraft:
    # A deleted row has no next version of its own; its deletion is the version after.
    version = row["version"] + 1 if event_type == CATEGORY_DELETED else row["version"]
    return EventDraft(
        type=event_type,
        aggregate_type="category",
        aggregate_id=str(row["id"]),
        aggregate_version=version,
        payload=category_json(row),
    )
