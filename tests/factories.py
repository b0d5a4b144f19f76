"""Factories: valid payloads with unique values, and helpers that create through the API."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import httpx

from mercato.core.database import Database
from mercato.events import EventDraft, record_events

_counter = itertools.count(1)


def product_payload(**overrides: Any) -> dict[str, Any]:
    n = next(_counter)
    payload: dict[str, Any] = {
        "sku": f"TEST-{n:06d}",
        "name": f"Test Product {n}",
        "description": "A sturdy thing for testing",
        "brand": "Acme",
        "price": "19.99",
        "inventory_count": 5,
    }
    payload.update(overrides)
    return payload


def category_payload(**overrides: Any) -> dict[str, Any]:
    n = next(_counter)
    payload: dict[str, Any] = {"name": f"Category {n}", "slug": f"category-{n}"}
    payload.update(overrides)
    return payload


async def create_category(
    client: httpx.AsyncClient, admin: dict[str, str], **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/categories", json=category_payload(**overrides), headers=admin
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def create_product(
    client: httpx.AsyncClient, admin: dict[str, str], **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/products", json=product_payload(**overrides), headers=admin
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def if_match(version: int) -> dict[str, str]:
    return {"If-Match": f'"{version}"'}


async def record_product_events(db: Database, count: int, *, payload_bytes: int = 0) -> None:
    """Commit `count` product events in one transaction (each for a new product id)."""
    drafts = [
        EventDraft(
            type="product.updated",
            aggregate_type="product",
            aggregate_id=str(uuid.uuid4()),
            aggregate_version=1,
            payload={"n": n, "blob": "x" * payload_bytes},
        )
        for n in range(count)
    ]
    async with db.transaction() as conn:
        await record_events(conn, drafts)
