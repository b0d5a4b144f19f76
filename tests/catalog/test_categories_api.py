from __future__ import annotations

import httpx

from tests.factories import create_category, create_product, if_match


async def test_categories_form_a_tree(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    root = await create_category(client, admin, name="Zeta Root", slug="zeta-root")
    child = await create_category(
        client, admin, name="Alpha Child", slug="alpha-child", parent_id=root["id"]
    )
    assert child["path"] == f"{root['path']}{child['id']}/"
    assert (root["depth"], child["depth"]) == (0, 1)

    tree = (await client.get("/api/v1/categories")).json()["data"]
    node = next(n for n in tree if n["id"] == root["id"])
    assert [c["id"] for c in node["children"]] == [child["id"]]


async def test_a_slug_is_made_from_the_name_when_not_given(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/categories", json={"name": "Garden & Outdoor Café"}, headers=admin
    )
    assert response.json()["data"]["slug"] == "garden-outdoor-cafe"


async def test_sibling_slugs_are_unique(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await create_category(client, admin, slug="twins")
    response = await client.post(
        "/api/v1/categories", json={"name": "Twins", "slug": "twins"}, headers=admin
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CATEGORY_SLUG_TAKEN"


async def test_moving_a_category_moves_its_subtree(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    a = await create_category(client, admin)
    b = await create_category(client, admin)
    a_child = await create_category(client, admin, parent_id=a["id"])
    product = await create_product(client, admin, category_id=a_child["id"])

    moved = await client.patch(
        f"/api/v1/categories/{a['id']}",
        json={"parent_id": b["id"]},
        headers={**admin, **if_match(1)},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["data"]["path"] == f"{b['path']}{a['id']}/"
    assert moved.json()["data"]["version"] == 2
    child_now = (await client.get(f"/api/v1/categories/{a_child['id']}")).json()["data"]
    assert child_now["path"] == f"{b['path']}{a['id']}/{a_child['id']}/"
    assert child_now["depth"] == 2
    under_b = await client.get("/api/v1/products", params={"category_id": b["id"]})
    assert [p["id"] for p in under_b.json()["data"]] == [product["id"]]


async def test_a_category_cannot_move_under_its_own_descendant(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    a = await create_category(client, admin)
    a_child = await create_category(client, admin, parent_id=a["id"])
    response = await client.patch(
        f"/api/v1/categories/{a['id']}",
        json={"parent_id": a_child["id"]},
        headers={**admin, **if_match(1)},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CATEGORY_CYCLE"
    itself = await client.patch(
        f"/api/v1/categories/{a['id']}",
        json={"parent_id": a["id"]},
        headers={**admin, **if_match(1)},
    )
    assert itself.json()["error"]["code"] == "CATEGORY_CYCLE"


async def test_nesting_is_limited(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    parent = None
    for _ in range(7):
        parent = await create_category(client, admin, parent_id=parent["id"] if parent else None)
    response = await client.post(
        "/api/v1/categories", json={"name": "Too deep", "parent_id": parent["id"]}, headers=admin
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "CATEGORY_TOO_DEEP"


async def test_a_category_with_children_cannot_be_deleted(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    a = await create_category(client, admin)
    await create_category(client, admin, parent_id=a["id"])
    response = await client.delete(
        f"/api/v1/categories/{a['id']}", headers={**admin, **if_match(1)}
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CATEGORY_HAS_CHILDREN"


async def test_deleting_with_move_products_to_rehomes_the_products(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    old = await create_category(client, admin)
    new = await create_category(client, admin)
    product = await create_product(client, admin, category_id=old["id"])
    response = await client.delete(
        f"/api/v1/categories/{old['id']}",
        params={"move_products_to": new["id"]},
        headers={**admin, **if_match(1)},
    )
    assert response.status_code == 204
    assert (await client.get(f"/api/v1/categories/{old['id']}")).status_code == 404
    moved = (await client.get(f"/api/v1/products/{product['id']}")).json()["data"]
    assert (moved["category_id"], moved["version"]) == (new["id"], 2)


async def test_a_stale_category_update_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    category = await create_category(client, admin)
    url = f"/api/v1/categories/{category['id']}"
    assert (
        await client.patch(url, json={"name": "New"}, headers={**admin, **if_match(1)})
    ).status_code == 200
    stale = await client.patch(url, json={"name": "Newer"}, headers={**admin, **if_match(1)})
    assert stale.status_code == 412
    etag = (await client.get(url)).headers["etag"]
    assert etag == '"2"'
