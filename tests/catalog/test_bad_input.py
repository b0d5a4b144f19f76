"""The bad-input matrix: every malformed request gets the error model and writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.factories import create_category, create_product, if_match, product_payload


async def _product_count(client: httpx.AsyncClient) -> int:
    response = await client.get("/api/v1/products", params={"limit": 100})
    return len(response.json()["data"])


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body["error"]


async def test_malformed_json_is_refused(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    response = await client.post(
        "/api/v1/products",
        content=b'{"sku": "A", ',
        headers={**admin, "content-type": "application/json"},
    )
    _error(response, 400, "MALFORMED_JSON")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"price": "-1.00"}, "body.price"),
        ({"price": "1.001"}, "body.price"),
        ({"price": "12345678901.00"}, "body.price"),
        ({"price": "cheap"}, "body.price"),
        ({"inventory_count": -1}, "body.inventory_count"),
        ({"inventory_count": "many"}, "body.inventory_count"),
        ({"name": "x" * 201}, "body.name"),
        ({"name": ""}, "body.name"),
        ({"description": "x" * 5001}, "body.description"),
        ({"sku": "has spaces"}, "body.sku"),
        ({"currency": "usd"}, "body.currency"),
        ({"gtin": "4006381333932"}, "body.gtin"),  # wrong check digit
        ({"category_id": "not-a-uuid"}, "body.category_id"),
        ({"attributes": {"k": {"nested": True}}}, "body.attributes.k"),
        ({"is_active": "maybe"}, "body.is_active"),
    ],
)
async def test_invalid_fields_are_named_in_the_error(
    client: httpx.AsyncClient, admin: dict[str, str], overrides: dict[str, Any], field: str
) -> None:
    before = await _product_count(client)
    response = await client.post(
        "/api/v1/products", json=product_payload(**overrides), headers=admin
    )
    error = _error(response, 422, "VALIDATION_FAILED")
    assert any(detail["field"].startswith(field) for detail in error["details"]), error
    assert await _product_count(client) == before


async def test_unknown_fields_are_refused_not_stored(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    payload = product_payload(version=99, id=str(uuid.uuid4()), deleted_at="2020-01-01T00:00:00Z")
    error = _error(
        await client.post("/api/v1/products", json=payload, headers=admin), 422, "VALIDATION_FAILED"
    )
    assert {d["field"] for d in error["details"]} == {"body.version", "body.id", "body.deleted_at"}


async def test_unknown_fields_are_refused_on_update(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    product = await create_product(client, admin)
    response = await client.patch(
        f"/api/v1/products/{product['id']}", json={"version": 7}, headers={**admin, **if_match(1)}
    )
    _error(response, 422, "VALIDATION_FAILED")


async def test_null_for_a_required_field_is_refused_on_update(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    product = await create_product(client, admin)
    response = await client.patch(
        f"/api/v1/products/{product['id']}", json={"price": None}, headers={**admin, **if_match(1)}
    )
    _error(response, 422, "VALIDATION_FAILED")
    assert (await client.get(f"/api/v1/products/{product['id']}")).json()["data"]["version"] == 1


async def test_a_body_over_the_limit_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    huge = product_payload(description="x" * 2_000_000)
    _error(
        await client.post("/api/v1/products", json=huge, headers=admin), 413, "PAYLOAD_TOO_LARGE"
    )


async def test_a_streamed_body_over_the_limit_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    async def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 65_536

    response = await client.post(
        "/api/v1/products", content=chunks(), headers={**admin, "content-type": "application/json"}
    )
    _error(response, 413, "PAYLOAD_TOO_LARGE")


async def test_a_wrong_content_type_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/products",
        content=b"sku=A&name=B",
        headers={**admin, "content-type": "application/x-www-form-urlencoded"},
    )
    _error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize("path", ["/api/v1/products/not-a-uuid", "/api/v1/categories/123"])
async def test_an_invalid_uuid_in_the_path_is_a_validation_error(
    client: httpx.AsyncClient, path: str
) -> None:
    error = _error(await client.get(path), 422, "VALIDATION_FAILED")
    assert error["details"][0]["field"].startswith("path.")


@pytest.mark.parametrize("cursor", ["garbage", "AAAA", "x" * 600, "eyJmb28iOiJiYXIifQ"])
async def test_a_forged_or_broken_cursor_is_refused(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get("/api/v1/products", params={"cursor": cursor})
    assert response.status_code in (400, 422)
    assert response.json()["error"]["code"] in ("INVALID_CURSOR", "VALIDATION_FAILED")


async def test_a_cursor_cannot_be_tampered_with_or_reused_elsewhere(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for _ in range(3):
        await create_product(client, admin, brand="Cursorco")
    page = await client.get("/api/v1/products", params={"brand": "Cursorco", "limit": 1})
    cursor = page.json()["meta"]["next_cursor"]
    assert cursor
    tampered = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    _error(
        await client.get(
            "/api/v1/products", params={"brand": "Cursorco", "limit": 1, "cursor": tampered}
        ),
        400,
        "INVALID_CURSOR",
    )
    _error(
        await client.get("/api/v1/products", params={"brand": "Other", "cursor": cursor}),
        400,
        "INVALID_CURSOR",
    )
    _error(
        await client.get(
            "/api/v1/products", params={"brand": "Cursorco", "sort": "price_asc", "cursor": cursor}
        ),
        400,
        "INVALID_CURSOR",
    )


@pytest.mark.parametrize("limit", ["0", "101", "-5", "ten"])
async def test_a_page_size_outside_1_to_100_is_refused(
    client: httpx.AsyncClient, limit: str
) -> None:
    _error(await client.get("/api/v1/products", params={"limit": limit}), 422, "VALIDATION_FAILED")


async def test_a_huge_search_string_is_refused(client: httpx.AsyncClient) -> None:
    _error(
        await client.get("/api/v1/products", params={"q": "lamp " * 100}), 422, "VALIDATION_FAILED"
    )


async def test_relevance_sort_without_a_query_is_refused(client: httpx.AsyncClient) -> None:
    _error(
        await client.get("/api/v1/products", params={"sort": "relevance"}), 422, "VALIDATION_FAILED"
    )


async def test_an_unknown_category_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    missing = str(uuid.uuid4())
    before = await _product_count(client)
    response = await client.post(
        "/api/v1/products", json=product_payload(category_id=missing), headers=admin
    )
    _error(response, 422, "UNKNOWN_CATEGORY")
    assert await _product_count(client) == before
    _error(
        await client.get("/api/v1/products", params={"category_id": missing}),
        422,
        "UNKNOWN_CATEGORY",
    )
    _error(
        await client.post(
            "/api/v1/categories", json={"name": "Orphan", "parent_id": missing}, headers=admin
        ),
        422,
        "UNKNOWN_CATEGORY",
    )


async def test_deleting_a_category_with_products_is_a_conflict(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    category = await create_category(client, admin)
    product = await create_product(client, admin, category_id=category["id"])
    url = f"/api/v1/categories/{category['id']}"
    _error(await client.delete(url, headers={**admin, **if_match(1)}), 409, "CATEGORY_NOT_EMPTY")
    assert (await client.get(url)).status_code == 200
    assert (await client.get(f"/api/v1/products/{product['id']}")).json()["data"][
        "category_id"
    ] == category["id"]


async def test_an_unknown_route_and_method_use_the_error_model(client: httpx.AsyncClient) -> None:
    _error(await client.get("/api/v1/nothing-here"), 404, "ROUTE_NOT_FOUND")
    _error(await client.put("/api/v1/products", json={}), 405, "METHOD_NOT_ALLOWED")
