"""Who may do what to which account: object-level checks (BOLA), mass assignment, roles and
their permissions, and staff's management of users."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from mercato.core.security import PERMISSIONS
from mercato.identity import IdentityRuntime
from tests.factories import (
    STRONG_PASSWORD,
    TestUser,
    category_payload,
    if_match,
    make_user,
    product_payload,
    unique_email,
)


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


async def read_user(
    client: httpx.AsyncClient, admin: dict[str, str], user_id: uuid.UUID
) -> dict[str, Any]:
    response = await client.get(f"/api/v1/users/{user_id}", headers=admin)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


@pytest.fixture
async def alice(conn: asyncpg.Connection, runtime: IdentityRuntime) -> TestUser:
    return await make_user(conn, runtime, first_name="Alice", last_name="Anders")


@pytest.fixture
async def bob(conn: asyncpg.Connection, runtime: IdentityRuntime) -> TestUser:
    return await make_user(conn, runtime, first_name="Bob", last_name="Berg")


# --- BOLA -------------------------------------------------------------------------------


async def test_a_customer_cannot_read_change_or_delete_another_account(
    client: httpx.AsyncClient, admin: dict[str, str], alice: TestUser, bob: TestUser
) -> None:
    url = f"/api/v1/users/{bob.id}"
    before = await read_user(client, admin, bob.id)

    read = await client.get(url, headers=alice.headers)
    changed = await client.patch(
        url, json={"first_name": "Mallory"}, headers={**alice.headers, **if_match(1)}
    )
    deleted = await client.delete(url, headers={**alice.headers, **if_match(1)})
    roles = await client.put(
        f"{url}/roles", json={"roles": ["customer", "admin"]}, headers=alice.headers
    )

    for response in (read, changed, deleted, roles):
        assert response.status_code == 403, response.text
        assert error_code(response) == "FORBIDDEN"
        assert "Bob" not in response.text
    assert await read_user(client, admin, bob.id) == before


async def test_me_is_always_the_caller(
    client: httpx.AsyncClient, alice: TestUser, bob: TestUser
) -> None:
    me = await client.get("/api/v1/me", headers=alice.headers)
    assert me.status_code == 200
    data = me.json()["data"]
    assert (data["id"], data["email"]) == (str(alice.id), alice.email)
    assert (data["first_name"], data["last_name"]) == ("Alice", "Anders")
    assert data["roles"] == ["customer"]
    assert bob.email not in me.text
    assert "Bob" not in me.text

    # Nothing in the request selects another account: not a query parameter, not a path.
    by_query = await client.get(f"/api/v1/me?id={bob.id}&user_id={bob.id}", headers=alice.headers)
    assert by_query.status_code == 200
    assert by_query.json()["data"]["id"] == str(alice.id)
    by_path = await client.get(f"/api/v1/me/{bob.id}", headers=alice.headers)
    assert by_path.status_code in (404, 405)
    assert "Bob" not in by_path.text

    # And bob's token reads bob.
    assert (await client.get("/api/v1/me", headers=bob.headers)).json()["data"]["id"] == str(bob.id)


async def test_updating_me_changes_only_the_caller(
    client: httpx.AsyncClient, admin: dict[str, str], alice: TestUser, bob: TestUser
) -> None:
    bob_before = await read_user(client, admin, bob.id)

    response = await client.patch(
        "/api/v1/me",
        json={"first_name": "Alicia", "phone": "+4915100000001"},
        headers=alice.headers,
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["id"], data["first_name"], data["phone"]) == (
        str(alice.id),
        "Alicia",
        "+4915100000001",
    )

    assert await read_user(client, admin, bob.id) == bob_before
    alice_now = await read_user(client, admin, alice.id)
    assert (alice_now["first_name"], alice_now["last_name"]) == ("Alicia", "Anders")


async def test_me_needs_a_credential(client: httpx.AsyncClient) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(method, "/api/v1/me", json={})
        assert response.status_code == 401, (method, response.text)


# --- mass assignment --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"roles": ["admin"]},
        {"email_verified": True},
        {"id": str(uuid.uuid4())},
        {"email": "x@example.com"},
        {"version": 9},
        {"first_name": "Eve", "roles": ["admin"]},
        {"password_hash": "x"},
        {"session_version": 99},
    ],
    ids=lambda body: ",".join(body),
)
async def test_me_refuses_fields_a_user_may_not_set(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    alice: TestUser,
    body: dict[str, Any],
) -> None:
    before = await read_user(client, admin, alice.id)

    response = await client.patch("/api/v1/me", json=body, headers=alice.headers)

    assert response.status_code == 422, response.text
    assert error_code(response) == "VALIDATION_FAILED"
    after = await read_user(client, admin, alice.id)
    assert after == before
    assert after["roles"] == ["customer"]
    assert after["first_name"] == "Alice"
    # The token still works: the session version was not touched either.
    assert (await client.get("/api/v1/me", headers=alice.headers)).status_code == 200


async def test_a_name_cannot_be_cleared(
    client: httpx.AsyncClient, admin: dict[str, str], alice: TestUser
) -> None:
    response = await client.patch("/api/v1/me", json={"first_name": None}, headers=alice.headers)
    assert response.status_code == 422
    assert (await read_user(client, admin, alice.id))["first_name"] == "Alice"


@pytest.mark.parametrize(
    "extra",
    [{"roles": ["admin"]}, {"email_verified": True}, {"id": str(uuid.uuid4())}],
    ids=lambda extra: ",".join(extra),
)
async def test_registration_refuses_extra_fields(
    client: httpx.AsyncClient, conn: asyncpg.Connection, extra: dict[str, Any]
) -> None:
    users_before = await conn.fetchval("SELECT count(*) FROM identity.users")
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "email": unique_email(),
            "password": STRONG_PASSWORD,
            "first_name": "Eve",
            "last_name": "Evans",
            **extra,
        },
    )
    assert response.status_code == 422, response.text
    assert error_code(response) == "VALIDATION_FAILED"
    assert await conn.fetchval("SELECT count(*) FROM identity.users") == users_before


# --- roles ------------------------------------------------------------------------------


async def create_role(
    client: httpx.AsyncClient, admin: dict[str, str], name: str, permissions: list[str]
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/roles", json={"name": name, "permissions": permissions}, headers=admin
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def set_roles(
    client: httpx.AsyncClient, headers: dict[str, str], user_id: uuid.UUID, roles: list[str]
) -> httpx.Response:
    return await client.put(
        f"/api/v1/users/{user_id}/roles", json={"roles": roles}, headers=headers
    )


async def test_a_custom_role_takes_effect_on_the_next_request(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser
) -> None:
    token = customer.headers  # one token throughout: no new login

    async def post_product() -> int:
        response = await client.post("/api/v1/products", json=product_payload(), headers=token)
        return response.status_code

    async def post_category() -> int:
        response = await client.post("/api/v1/categories", json=category_payload(), headers=token)
        return response.status_code

    assert await post_product() == 403

    role = await create_role(client, admin, "catalog-editor", ["products:write"])
    assert role == {
        **role,
        "name": "catalog-editor",
        "permissions": ["products:write"],
        "builtin": False,
    }

    assigned = await set_roles(client, admin, customer.id, ["customer", "catalog-editor"])
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["data"]["roles"] == ["catalog-editor", "customer"]
    assert await post_product() == 201

    # Changing the role's permissions reaches every holder on their next request.
    changed = await client.patch(
        "/api/v1/roles/catalog-editor", json={"permissions": ["categories:write"]}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["permissions"] == ["categories:write"]
    assert await post_product() == 403
    assert await post_category() == 201

    await client.patch(
        "/api/v1/roles/catalog-editor", json={"permissions": ["products:write"]}, headers=admin
    )
    assert await post_product() == 201

    removed = await set_roles(client, admin, customer.id, ["customer"])
    assert removed.status_code == 200, removed.text
    assert removed.json()["data"]["roles"] == ["customer"]
    assert await post_product() == 403


async def test_deleting_a_custom_role_takes_it_from_its_holders(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser
) -> None:
    await create_role(client, admin, "catalog-editor", ["products:write"])
    await set_roles(client, admin, customer.id, ["customer", "catalog-editor"])

    deleted = await client.delete("/api/v1/roles/catalog-editor", headers=admin)
    assert deleted.status_code == 204

    post = await client.post("/api/v1/products", json=product_payload(), headers=customer.headers)
    assert post.status_code == 403
    assert (await read_user(client, admin, customer.id))["roles"] == ["customer"]
    missing = await client.get("/api/v1/roles/catalog-editor", headers=admin)
    assert missing.status_code == 404
    assert error_code(missing) == "ROLE_NOT_FOUND"


@pytest.mark.parametrize("name", ["customer", "staff", "admin"])
async def test_builtin_roles_cannot_be_changed_or_deleted(
    client: httpx.AsyncClient, admin: dict[str, str], name: str
) -> None:
    changed = await client.patch(
        f"/api/v1/roles/{name}", json={"permissions": ["products:write"]}, headers=admin
    )
    assert changed.status_code == 409, changed.text
    assert error_code(changed) == "ROLE_BUILTIN"
    described = await client.patch(
        f"/api/v1/roles/{name}", json={"description": "changed"}, headers=admin
    )
    assert described.status_code == 409
    deleted = await client.delete(f"/api/v1/roles/{name}", headers=admin)
    assert deleted.status_code == 409
    assert error_code(deleted) == "ROLE_BUILTIN"

    recreated = await client.post(
        "/api/v1/roles", json={"name": name, "permissions": []}, headers=admin
    )
    assert recreated.status_code == 409
    assert error_code(recreated) == "ROLE_EXISTS"

    role = await client.get(f"/api/v1/roles/{name}", headers=admin)
    assert role.json()["data"]["builtin"] is True
    assert role.json()["data"]["description"] != "changed"


async def test_a_role_can_only_hold_known_permissions(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    unknown = await client.post(
        "/api/v1/roles",
        json={"name": "wizard", "permissions": ["products:write", "castle:own"]},
        headers=admin,
    )
    assert unknown.status_code == 422
    assert error_code(unknown) == "VALIDATION_FAILED"
    assert "castle:own" in unknown.text
    assert (await client.get("/api/v1/roles/wizard", headers=admin)).status_code == 404

    await create_role(client, admin, "catalog-editor", ["products:write"])
    patched = await client.patch(
        "/api/v1/roles/catalog-editor", json={"permissions": ["castle:own"]}, headers=admin
    )
    assert patched.status_code == 422
    role = await client.get("/api/v1/roles/catalog-editor", headers=admin)
    assert role.json()["data"]["permissions"] == ["products:write"]


async def test_assigning_an_unknown_role_is_not_found(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser
) -> None:
    response = await set_roles(client, admin, customer.id, ["customer", "ghost"])
    assert response.status_code == 404
    assert error_code(response) == "ROLE_NOT_FOUND"
    assert response.json()["error"]["details"][0]["message"] == "ghost"
    assert (await read_user(client, admin, customer.id))["roles"] == ["customer"]

    nobody = await set_roles(client, admin, uuid.uuid4(), ["customer"])
    assert nobody.status_code == 404
    assert error_code(nobody) == "USER_NOT_FOUND"


async def test_staff_cannot_assign_roles(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    admin: dict[str, str],
    customer: TestUser,
) -> None:
    staff = await make_user(conn, runtime, roles=("staff",))

    for roles in (["customer", "staff"], ["customer", "admin"], ["customer"]):
        response = await set_roles(client, staff.headers, customer.id, roles)
        assert response.status_code == 403, response.text
        assert error_code(response) == "FORBIDDEN"
    upgrade_self = await set_roles(client, staff.headers, staff.id, ["admin"])
    assert upgrade_self.status_code == 403
    assert (await read_user(client, admin, staff.id))["roles"] == ["staff"]
    # Staff may read users, though.
    assert (
        await client.get(f"/api/v1/users/{customer.id}", headers=staff.headers)
    ).status_code == 200


async def test_nobody_grants_a_permission_they_do_not_hold(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    admin: dict[str, str],
    customer: TestUser,
) -> None:
    await create_role(client, admin, "catalog-editor", ["products:write"])
    await create_role(client, admin, "user-manager", ["users:manage", "users:read"])
    manager = await make_user(conn, runtime, roles=("user-manager",))

    grant = await set_roles(client, manager.headers, customer.id, ["customer", "catalog-editor"])
    assert grant.status_code == 403, grant.text
    assert error_code(grant) == "PERMISSION_NOT_HELD"
    assert grant.json()["error"]["details"] == [
        {"field": "permissions", "message": "products:write"}
    ]
    escalate = await set_roles(client, manager.headers, manager.id, ["user-manager", "admin"])
    assert escalate.status_code == 403
    assert error_code(escalate) == "PERMISSION_NOT_HELD"
    assert (await read_user(client, admin, customer.id))["roles"] == ["customer"]
    assert (await read_user(client, admin, manager.id))["roles"] == ["user-manager"]

    # Taking a role away needs its permissions too.
    await set_roles(client, admin, customer.id, ["customer", "catalog-editor"])
    revoke = await set_roles(client, manager.headers, customer.id, ["customer"])
    assert revoke.status_code == 403
    assert error_code(revoke) == "PERMISSION_NOT_HELD"

    # What they do hold, they may hand out (roles left as they are need nothing).
    allowed = await set_roles(
        client, manager.headers, customer.id, ["customer", "catalog-editor", "user-manager"]
    )
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["data"]["roles"] == ["catalog-editor", "customer", "user-manager"]


async def test_roles_cannot_be_created_with_permissions_one_lacks(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    admin: dict[str, str],
) -> None:
    await create_role(client, admin, "role-manager", ["roles:manage"])
    manager = await make_user(conn, runtime, roles=("role-manager",))

    created = await client.post(
        "/api/v1/roles",
        json={"name": "superuser", "permissions": ["users:manage"]},
        headers=manager.headers,
    )
    assert created.status_code == 403
    assert error_code(created) == "PERMISSION_NOT_HELD"

    await create_role(client, admin, "catalog-editor", ["products:write"])
    widened = await client.patch(
        "/api/v1/roles/role-manager",
        json={"permissions": ["roles:manage", "users:manage"]},
        headers=manager.headers,
    )
    assert widened.status_code == 403
    assert error_code(widened) == "PERMISSION_NOT_HELD"
    role = await client.get("/api/v1/roles/role-manager", headers=admin)
    assert role.json()["data"]["permissions"] == ["roles:manage"]


async def test_roles_list_the_builtins_with_admin_holding_everything(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser
) -> None:
    response = await client.get("/api/v1/roles", headers=admin)
    assert response.status_code == 200
    roles = {role["name"]: role for role in response.json()["data"]}
    assert {"customer", "staff", "admin"} <= roles.keys()
    assert roles["admin"]["permissions"] == sorted(PERMISSIONS)
    assert roles["customer"]["permissions"] == []
    assert "users:manage" not in roles["staff"]["permissions"]
    assert all(roles[name]["builtin"] for name in ("customer", "staff", "admin"))

    refused = await client.get("/api/v1/roles", headers=customer.headers)
    assert refused.status_code == 403


# --- staff's management of users -------------------------------------------------------


async def test_users_are_listed_in_pages_with_a_signed_cursor(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    admin: dict[str, str],
    admin_user: TestUser,
) -> None:
    created = {(await make_user(conn, runtime)).id for _ in range(5)}
    live = await conn.fetchval("SELECT count(*) FROM identity.users WHERE deleted_at IS NULL")

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/api/v1/users", params=params, headers=admin)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["meta"]["limit"] == 2
        assert body["meta"]["count"] == len(body["data"]) <= 2
        seen += [user["id"] for user in body["data"]]
        pages += 1
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            break
        assert pages < 50

    assert len(seen) == len(set(seen)) == live
    assert {str(user_id) for user_id in created} | {str(admin_user.id)} <= set(seen)
    assert pages == -(-live // 2)


async def test_a_tampered_or_foreign_cursor_is_refused(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    admin: dict[str, str],
) -> None:
    for _ in range(3):
        user = await make_user(conn, runtime)
        await client.patch("/api/v1/me", json={"last_name": "Byron"}, headers=user.headers)
    first = await client.get("/api/v1/users", params={"limit": 1}, headers=admin)
    cursor = first.json()["meta"]["next_cursor"]
    assert cursor

    flipped = cursor[:4] + ("A" if cursor[4] != "A" else "B") + cursor[5:]
    audit_page = await client.get("/api/v1/audit-events", params={"limit": 1}, headers=admin)
    for bad in (flipped, cursor[:-3], "not-a-cursor!", "x" * 600):
        response = await client.get("/api/v1/users", params={"cursor": bad}, headers=admin)
        assert response.status_code in (400, 422), (bad, response.text)
        if response.status_code == 400:
            assert error_code(response) == "INVALID_CURSOR"
    tampered = await client.get("/api/v1/users", params={"cursor": flipped}, headers=admin)
    assert tampered.status_code == 400
    assert error_code(tampered) == "INVALID_CURSOR"

    # A genuine cursor of another query is refused too.
    foreign = audit_page.json()["meta"]["next_cursor"]
    assert foreign
    response = await client.get("/api/v1/users", params={"cursor": foreign}, headers=admin)
    assert response.status_code == 400
    assert error_code(response) == "INVALID_CURSOR"


@pytest.mark.parametrize("limit", [0, -1, 101, 1000])
async def test_the_page_size_is_bounded(
    client: httpx.AsyncClient, admin: dict[str, str], limit: int
) -> None:
    response = await client.get("/api/v1/users", params={"limit": limit}, headers=admin)
    assert response.status_code == 422
    assert error_code(response) == "VALIDATION_FAILED"


async def test_a_customer_cannot_list_users(client: httpx.AsyncClient, customer: TestUser) -> None:
    response = await client.get("/api/v1/users", headers=customer.headers)
    assert response.status_code == 403


async def test_updating_a_user_needs_the_current_version(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser
) -> None:
    url = f"/api/v1/users/{customer.id}"
    current = await client.get(url, headers=admin)
    etag = current.headers["etag"]
    version = current.json()["data"]["version"]
    assert etag == f'"{version}"'

    missing = await client.patch(url, json={"first_name": "Grace"}, headers=admin)
    assert missing.status_code == 428
    assert error_code(missing) == "PRECONDITION_REQUIRED"

    stale = await client.patch(
        url, json={"first_name": "Grace"}, headers={**admin, **if_match(version + 5)}
    )
    assert stale.status_code == 412
    assert error_code(stale) == "PRECONDITION_FAILED"
    assert (await read_user(client, admin, customer.id))["first_name"] == "Ada"

    updated = await client.patch(
        url, json={"first_name": "Grace"}, headers={**admin, "If-Match": etag}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["first_name"] == "Grace"
    assert updated.headers["etag"] == f'"{version + 1}"'

    again = await client.patch(url, json={"first_name": "Ada"}, headers={**admin, "If-Match": etag})
    assert again.status_code == 412


async def test_deleting_a_user_ends_their_sessions(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser
) -> None:
    url = f"/api/v1/users/{customer.id}"
    assert (await client.get("/api/v1/me", headers=customer.headers)).status_code == 200
    version = (await read_user(client, admin, customer.id))["version"]

    missing = await client.delete(url, headers=admin)
    assert missing.status_code == 428
    stale = await client.delete(url, headers={**admin, **if_match(version + 1)})
    assert stale.status_code == 412

    deleted = await client.delete(url, headers={**admin, **if_match(version)})
    assert deleted.status_code == 204

    me = await client.get("/api/v1/me", headers=customer.headers)
    assert me.status_code == 401
    assert error_code(me) == "UNAUTHENTICATED"
    gone = await client.get(url, headers=admin)
    assert gone.status_code == 404
    assert error_code(gone) == "USER_NOT_FOUND"
    login = await client.post(
        "/api/v1/auth/login", json={"email": customer.email, "password": customer.password}
    )
    assert login.status_code == 401


async def test_a_lesser_manager_cannot_delete_an_administrator(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    admin: dict[str, str],
    admin_user: TestUser,
) -> None:
    await create_role(client, admin, "user-manager", ["users:manage", "users:read"])
    manager = await make_user(conn, runtime, roles=("user-manager",))

    demote = await set_roles(client, manager.headers, admin_user.id, ["customer"])
    assert demote.status_code == 403
    assert error_code(demote) == "PERMISSION_NOT_HELD"

    version = (await read_user(client, admin, admin_user.id))["version"]
    deleted = await client.delete(
        f"/api/v1/users/{admin_user.id}", headers={**manager.headers, **if_match(version)}
    )
    assert deleted.status_code == 403, deleted.text
    assert (await client.get("/api/v1/me", headers=admin)).status_code == 200
