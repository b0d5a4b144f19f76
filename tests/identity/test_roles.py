"""Custom roles: permissions take effect on the next request, and nobody grants what they lack."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from mercato.core.security import PERMISSIONS
from mercato.identity import IdentityRuntime
from tests.factories import (
    TestUser,
    category_payload,
    make_user,
    product_payload,
)
from tests.identity.conftest import create_role, set_roles


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


# --- roles ------------------------------------------------------------------------------


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
