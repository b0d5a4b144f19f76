"""Who may do what to which account: object-level checks (BOLA), mass assignment, roles and
their permissions, and staff's management of users."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from mercato.identity import IdentityRuntime
from tests.factories import (
    STRONG_PASSWORD,
    TestUser,
    if_match,
    make_user,
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
