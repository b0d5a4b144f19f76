from __future__ import annotations

import uuid

import httpx

from mercato.catalog.schemas import CategoryOut, ProductOut
from tests.factories import create_category, create_product, if_match, product_payload


async def test_a_created_product_can_be_read_back(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/products", json=product_payload(price="12.5"), headers=admin
    )
    assert response.status_code == 201
    created = response.json()["data"]
    assert created["price"] == "12.50"
    assert created["version"] == 1
    assert response.headers["location"] == f"/api/v1/products/{created['id']}"

    read = await client.get(f"/api/v1/products/{created['id']}")
    assert read.status_code == 200
    assert read.json() == {"data": created, "meta": {}}
    assert read.headers["etag"] == '"1"'


async def test_if_none_match_with_the_current_etag_answers_304(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    product = await create_product(client, admin)
    first = await client.get(f"/api/v1/products/{product['id']}")
    again = await client.get(
        f"/api/v1/products/{product['id']}", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""
    other = await client.get(
        f"/api/v1/products/{product['id']}", headers={"If-None-Match": '"999"'}
    )
    assert other.status_code == 200


async def test_an_update_needs_the_current_version(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    product = await create_product(client, admin)
    url = f"/api/v1/products/{product['id']}"

    missing = await client.patch(url, json={"price": "1.00"}, headers=admin)
    assert missing.status_code == 428
    assert missing.json()["error"]["code"] == "PRECONDITION_REQUIRED"

    updated = await client.patch(
        url, json={"price": "1.00", "brand": None}, headers={**admin, **if_match(1)}
    )
    assert updated.status_code == 200
    body = updated.json()["data"]
    assert (body["price"], body["brand"], body["version"]) == ("1.00", None, 2)
    assert updated.headers["etag"] == '"2"'

    stale = await client.patch(url, json={"price": "2.00"}, headers={**admin, **if_match(1)})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "PRECONDITION_FAILED"
    assert (await client.get(url)).json()["data"]["price"] == "1.00"


async def test_if_match_star_skips_the_version_check(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    product = await create_product(client, admin)
    response = await client.patch(
        f"/api/v1/products/{product['id']}",
        json={"name": "Renamed"},
        headers={**admin, "If-Match": "*"},
    )
    assert response.status_code == 200
    assert response.json()["data"]["name"] == "Renamed"


async def test_a_weak_etag_never_satisfies_if_match(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    product = await create_product(client, admin)
    response = await client.patch(
        f"/api/v1/products/{product['id']}",
        json={"name": "X"},
        headers={**admin, "If-Match": 'W/"1"'},
    )
    assert response.status_code == 412


async def test_a_deleted_product_disappears_and_can_be_restored(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    product = await create_product(client, admin)
    url = f"/api/v1/products/{product['id']}"

    deleted = await client.delete(url, headers={**admin, **if_match(1)})
    assert deleted.status_code == 204
    gone = await client.get(url)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "PRODUCT_NOT_FOUND"
    listed = await client.get("/api/v1/products", params={"brand": "Acme", "limit": 100})
    assert product["id"] not in {p["id"] for p in listed.json()["data"]}
    staff_view = await client.get(url, params={"include_deleted": "true"}, headers=admin)
    assert staff_view.json()["data"]["deleted_at"] is not None

    restored = await client.post(f"{url}/restore", headers=admin)
    assert restored.status_code == 200
    assert restored.json()["data"]["deleted_at"] is None
    assert restored.json()["data"]["version"] == 3
    assert (await client.get(url)).status_code == 200


async def test_restoring_a_live_product_is_a_conflict(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    product = await create_product(client, admin)
    response = await client.post(f"/api/v1/products/{product['id']}/restore", headers=admin)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "PRODUCT_NOT_DELETED"


async def test_an_inactive_product_is_hidden_from_shoppers_but_not_staff(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    product = await create_product(client, admin, is_active=False)
    url = f"/api/v1/products/{product['id']}"
    assert (await client.get(url)).status_code == 404
    assert (await client.get(url, headers=admin)).status_code == 200


async def test_a_duplicate_sku_is_a_conflict_and_writes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    product = await create_product(client, admin)
    response = await client.post(
        "/api/v1/products", json=product_payload(sku=product["sku"], name="Twin"), headers=admin
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "SKU_ALREADY_EXISTS"
    search = await client.get("/api/v1/products", params={"q": "Twin"})
    assert search.json()["data"] == []


async def test_changing_sku_to_a_taken_one_is_a_conflict(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    first = await create_product(client, admin)
    second = await create_product(client, admin)
    response = await client.patch(
        f"/api/v1/products/{second['id']}",
        json={"sku": first["sku"]},
        headers={**admin, **if_match(1)},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "SKU_ALREADY_EXISTS"


async def test_an_unknown_product_is_not_found(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    url = f"/api/v1/products/{uuid.uuid4()}"
    assert (await client.get(url)).json()["error"]["code"] == "PRODUCT_NOT_FOUND"
    patch = await client.patch(url, json={"name": "x"}, headers={**admin, "If-Match": "*"})
    assert patch.status_code == 404


async def test_filters_narrow_the_listing(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    brand = f"Brand-{uuid.uuid4().hex[:8]}"
    cheap = await create_product(client, admin, brand=brand, price="5.00", inventory_count=0)
    dear = await create_product(client, admin, brand=brand, price="50.00", inventory_count=3)

    async def ids(**params: str) -> list[str]:
        response = await client.get("/api/v1/products", params={"brand": brand, **params})
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["data"]]

    assert set(await ids()) == {cheap["id"], dear["id"]}
    assert await ids(min_price="10") == [dear["id"]]
    assert await ids(max_price="10") == [cheap["id"]]
    assert await ids(in_stock="true") == [dear["id"]]
    assert await ids(in_stock="false") == [cheap["id"]]
    assert await ids(sort="price_asc") == [cheap["id"], dear["id"]]
    assert await ids(sort="price_desc") == [dear["id"], cheap["id"]]


async def test_a_category_filter_includes_descendants(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    root = await create_category(client, admin)
    child = await create_category(client, admin, parent_id=root["id"])
    other = await create_category(client, admin)
    in_root = await create_product(client, admin, category_id=root["id"])
    in_child = await create_product(client, admin, category_id=child["id"])
    await create_product(client, admin, category_id=other["id"])

    response = await client.get("/api/v1/products", params={"category_id": root["id"]})
    assert [p["id"] for p in response.json()["data"]] == [in_child["id"], in_root["id"]]
    only_child = await client.get("/api/v1/products", params={"category_id": child["id"]})
    assert [p["id"] for p in only_child.json()["data"]] == [in_child["id"]]


async def test_search_ranks_name_matches_first_and_matches_prefixes(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    word = "zq" + uuid.uuid4().hex[:6]
    in_description = await create_product(
        client, admin, name="Plain Thing", description=f"mentions {word}thing once"
    )
    in_name = await create_product(client, admin, name=f"{word}thing Lamp")

    response = await client.get("/api/v1/products", params={"q": word})
    assert response.status_code == 200
    assert [p["id"] for p in response.json()["data"]] == [in_name["id"], in_description["id"]]


async def test_search_text_full_of_operators_is_harmless(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await create_product(client, admin, name="Quoted Lamp")
    for q in [
        "'); DROP TABLE catalog.products; --",
        'lamp & | ! ( ) :* <-> "',
        "!!!",
        "quoted:* & (lamp",
    ]:
        response = await client.get("/api/v1/products", params={"q": q})
        assert response.status_code == 200, (q, response.text)
    hits = await client.get("/api/v1/products", params={"q": "quoted:* & (lamp"})
    assert any(p["name"] == "Quoted Lamp" for p in hits.json()["data"])


async def test_list_pages_carry_an_etag(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await create_product(client, admin)
    first = await client.get("/api/v1/products")
    again = await client.get("/api/v1/products", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


async def test_if_none_match_never_turns_a_write_into_a_304(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/products", json=product_payload(), headers={**admin, "If-None-Match": "*"}
    )
    assert response.status_code == 201
    assert response.json()["data"]["version"] == 1


async def test_the_json_representation_matches_the_documented_model(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    category = await create_category(client, admin)
    product = await create_product(
        client, admin, category_id=category["id"], attributes={"color": "red", "watts": 40}
    )
    assert set(product) == set(ProductOut.model_fields)
    ProductOut.model_validate(product)
    assert set(category) == set(CategoryOut.model_fields)
    CategoryOut.model_validate(category)
