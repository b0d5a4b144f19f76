"""Staff manage users: paginated lists, optimistic concurrency, deletion ends sessions, and no lesser manager touches an administrator."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from mercato.identity import IdentityRuntime
from tests.factories import (
    TestUser,
    if_match,
    make_user,
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
