"""Personal data: sealed at rest and absent from the events about accounts."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import orjson

from mercato.identity import IdentityRuntime
from mercato.identity.accounts import SEALED_FIELDS
from tests.factories import (
    STRONG_PASSWORD,
    TestUser,
    make_user,
    unique_email,
)
from tests.identity.conftest import outbox

USER_AGENT = "AuditProbe/2.1 (pytest; +https://example.com/probe)"
NEW_PASSWORD = "quartz-meadow-falcon-4412"
ADDRESS = {
    "line1": "Xylophonweg 42",
    "line2": "Hinterhaus Zwo",
    "city": "Quedlinburgheim",
    "postal_code": "D-98765",
    "country": "DE",
}
PHONE = "+4915112345678"


def distinctive_email() -> str:
    return f"Zebulon.Quackenbush.{uuid.uuid4().hex[:8]}@Example.com"


async def register(
    client: httpx.AsyncClient,
    email: str,
    *,
    first_name: str = "Ottoline",
    last_name: str = "Vanderpump",
    **extra: Any,
) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/register",
        json={
            "email": email,
            "password": STRONG_PASSWORD,
            "first_name": first_name,
            "last_name": last_name,
            **extra,
        },
    )


async def live_user_id(conn: asyncpg.Connection, runtime: IdentityRuntime, email: str) -> Any:
    return await conn.fetchval(
        "SELECT id FROM identity.users WHERE email_index = $1 AND deleted_at IS NULL",
        runtime.blind_index.email(email),
    )


async def delete_me(client: httpx.AsyncClient, user: TestUser) -> httpx.Response:
    return await client.request(
        "DELETE", "/api/v1/me", json={"password": user.password}, headers=user.headers
    )


# --- personal data at rest --------------------------------------------------------------


async def test_personal_data_is_unreadable_in_the_table(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    email = distinctive_email()
    user = await make_user(
        conn, runtime, email=email, first_name="Zebulon", last_name="Quackenbush"
    )
    updated = await client.patch(
        "/api/v1/me", json={"phone": PHONE, "address": ADDRESS}, headers=user.headers
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["address"] == ADDRESS  # the API does show it, to its owner

    registered_email = f"Philomena.Wigglesworth.{uuid.uuid4().hex[:8]}@Example.org"
    response = await register(
        client,
        registered_email,
        first_name="Philomena",
        last_name="Wigglesworth",
        phone="+4917098765432",
    )
    assert response.status_code == 202, response.text
    assert await live_user_id(conn, runtime, registered_email) is not None

    secrets = [
        email,
        "Zebulon",
        "Quackenbush",
        PHONE,
        PHONE.removeprefix("+"),
        *(value for value in ADDRESS.values() if value != "DE"),
        registered_email,
        "Philomena",
        "Wigglesworth",
        "+4917098765432",
    ]
    rows = await conn.fetch("SELECT * FROM identity.users")
    assert len(rows) >= 2
    dumped = str([dict(row) for row in rows])
    for secret in secrets:
        for form in {secret, secret.lower(), secret.upper()}:
            assert form not in dumped, form
    for row in rows:
        assert isinstance(row["email_index"], bytes)
        assert len(row["email_index"]) == 32
        for field in SEALED_FIELDS:
            assert row[field] is None or isinstance(row[field], bytes)

    # Nor do they leak into the audit log or the outbox beside the table.
    beside = str(await conn.fetch("SELECT * FROM identity.audit_log")) + str(
        await conn.fetch("SELECT * FROM events.outbox")
    )
    for secret in secrets:
        assert secret.lower() not in beside.lower(), secret


async def test_the_email_index_ignores_case_and_spacing(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    email = distinctive_email()
    user = await make_user(conn, runtime, email=email)
    login = await client.post(
        "/api/v1/auth/login", json={"email": email.lower(), "password": user.password}
    )
    assert login.status_code == 200, login.text
    # Registering the same address in another case makes no second account.
    again = await register(client, email.upper())
    assert again.status_code == 202
    count = await conn.fetchval(
        "SELECT count(*) FROM identity.users WHERE email_index = $1",
        runtime.blind_index.email(email),
    )
    assert count == 1


# --- events -----------------------------------------------------------------------------


def assert_no_personal_data(payload: Any, *values: str) -> None:
    text = orjson.dumps(payload).decode().lower()
    for value in values:
        assert value.lower() not in text, value


async def test_registration_publishes_an_event_without_personal_data(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    email = unique_email()
    response = await register(client, email, phone=PHONE)
    assert response.status_code == 202, response.text
    user_id = await live_user_id(conn, runtime, email)

    (event,) = await outbox(conn, "user.registered", user_id)
    assert event["aggregate_type"] == "user"
    assert event["aggregate_version"] == 1
    assert event["schema_version"] == 1
    payload = event["payload"]
    assert payload["id"] == str(user_id)
    assert payload["roles"] == ["customer"]
    assert payload["email_verified"] is False
    assert payload["deleted_at"] is None
    assert set(payload) == {
        "id",
        "email_verified",
        "roles",
        "version",
        "created_at",
        "updated_at",
        "deleted_at",
    }
    assert_no_personal_data(payload, email, "Ottoline", "Vanderpump", PHONE)


async def test_registering_a_taken_address_publishes_nothing(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    user = await make_user(conn, runtime)
    before = await conn.fetchval("SELECT count(*) FROM events.outbox")
    response = await register(client, user.email)
    assert response.status_code == 202
    assert await conn.fetchval("SELECT count(*) FROM events.outbox") == before


async def test_profile_changes_and_deletion_publish_events(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    user = await make_user(conn, runtime, first_name="Hortensia", last_name="Fairweather")

    patched = await client.patch(
        "/api/v1/me",
        json={"last_name": "Brightwater", "phone": PHONE, "address": ADDRESS},
        headers=user.headers,
    )
    assert patched.status_code == 200, patched.text
    (updated,) = await outbox(conn, "user.updated", user.id)
    assert updated["aggregate_type"] == "user"
    assert updated["aggregate_version"] == patched.json()["data"]["version"]
    assert updated["payload"]["id"] == str(user.id)
    assert_no_personal_data(
        updated["payload"], user.email, "Hortensia", "Brightwater", PHONE, ADDRESS["line1"]
    )

    deleted = await delete_me(client, user)
    assert deleted.status_code == 204, deleted.text
    (gone,) = await outbox(conn, "user.deleted", user.id)
    assert gone["aggregate_type"] == "user"
    assert gone["aggregate_version"] > updated["aggregate_version"]
    assert gone["payload"]["deleted_at"] is not None
    assert_no_personal_data(gone["payload"], user.email, "Hortensia", "Brightwater")


async def test_a_wrong_password_does_not_delete_the_account(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    user = await make_user(conn, runtime)
    response = await client.request(
        "DELETE", "/api/v1/me", json={"password": "not-my-password-42"}, headers=user.headers
    )
    assert response.status_code == 401
    assert await outbox(conn, "user.deleted", user.id) == []
    assert (await client.get("/api/v1/me", headers=user.headers)).status_code == 200


async def test_a_role_change_publishes_the_old_and_new_roles(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    admin: dict[str, str],
    admin_user: TestUser,
    customer: TestUser,
) -> None:
    response = await client.put(
        f"/api/v1/users/{customer.id}/roles", json={"roles": ["customer", "staff"]}, headers=admin
    )
    assert response.status_code == 200, response.text

    (event,) = await outbox(conn, "role.changed", customer.id)
    assert event["aggregate_type"] == "user"
    assert event["aggregate_version"] == response.json()["data"]["version"]
    assert event["payload"] == {
        "user_id": str(customer.id),
        "roles": ["customer", "staff"],
        "previous_roles": ["customer"],
        "changed_by": str(admin_user.id),
    }

    # Setting the same roles again changes nothing and publishes nothing.
    same = await client.put(
        f"/api/v1/users/{customer.id}/roles", json={"roles": ["staff", "customer"]}, headers=admin
    )
    assert same.status_code == 200
    assert len(await outbox(conn, "role.changed", customer.id)) == 1
