"""The security audit log: an entry for each security event, queryable, append-only."""

from __future__ import annotations

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


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


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


async def audit_rows(conn: asyncpg.Connection, action: str, *, subject_id: Any = None) -> list[Any]:
    if subject_id is None:
        rows = await conn.fetch(
            "SELECT * FROM identity.audit_log WHERE action = $1 ORDER BY id", action
        )
    else:
        rows = await conn.fetch(
            "SELECT * FROM identity.audit_log WHERE action = $1 AND subject_id = $2 ORDER BY id",
            action,
            subject_id,
        )
    return list(rows)


# --- the audit log ----------------------------------------------------------------------


def assert_entry(
    row: Any,
    response: httpx.Response,
    *,
    actor_id: Any,
    subject_id: Any,
    outcome: str = "success",
) -> None:
    assert row["outcome"] == outcome
    assert row["actor_id"] == actor_id
    assert row["subject_id"] == subject_id
    assert row["ip"] == "127.0.0.1"
    assert row["user_agent"] == USER_AGENT
    assert row["request_id"] is not None
    assert row["request_id"] == response.headers["x-request-id"]


UA = {"User-Agent": USER_AGENT}


async def test_logins_are_audited_whatever_their_outcome(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    user = await make_user(conn, runtime)

    ok = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": user.password}, headers=UA
    )
    assert ok.status_code == 200, ok.text
    (success,) = await audit_rows(conn, "login", subject_id=user.id)
    assert_entry(success, ok, actor_id=user.id, subject_id=user.id)

    bad = await client.post(
        "/api/v1/auth/login",
        json={"email": user.email, "password": "wrong-password-entirely"},
        headers={**UA, "X-Request-Id": "probe-request-0001"},
    )
    assert bad.status_code == 401
    assert bad.headers["x-request-id"] == "probe-request-0001"
    failure = (await audit_rows(conn, "login", subject_id=user.id))[-1]
    assert_entry(failure, bad, actor_id=None, subject_id=user.id, outcome="failure")
    assert failure["request_id"] == "probe-request-0001"
    assert "wrong-password" not in str(failure)

    nobody = await client.post(
        "/api/v1/auth/login",
        json={"email": unique_email(), "password": "wrong-password-entirely"},
        headers=UA,
    )
    assert nobody.status_code == 401
    unknown = (await audit_rows(conn, "login"))[-1]
    assert_entry(unknown, nobody, actor_id=None, subject_id=None, outcome="failure")


async def test_a_password_change_is_audited(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    user = await make_user(conn, runtime)
    response = await client.post(
        "/api/v1/me/password",
        json={"current_password": user.password, "new_password": NEW_PASSWORD},
        headers={**user.headers, **UA},
    )
    assert response.status_code == 200, response.text
    (row,) = await audit_rows(conn, "password.changed", subject_id=user.id)
    assert_entry(row, response, actor_id=user.id, subject_id=user.id)
    assert NEW_PASSWORD not in str(row)
    assert user.password not in str(row)


async def test_staff_actions_are_audited(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    admin: dict[str, str],
    admin_user: TestUser,
    customer: TestUser,
) -> None:
    assigned = await client.put(
        f"/api/v1/users/{customer.id}/roles",
        json={"roles": ["customer", "staff"]},
        headers={**admin, **UA},
    )
    assert assigned.status_code == 200, assigned.text
    (roles,) = await audit_rows(conn, "roles.assigned", subject_id=customer.id)
    assert_entry(roles, assigned, actor_id=admin_user.id, subject_id=customer.id)
    assert roles["details"] == {"roles": ["customer", "staff"], "previous_roles": ["customer"]}

    key = await client.post(
        "/api/v1/api-keys",
        json={"name": "warehouse sync", "scopes": ["products:write"]},
        headers={**admin, **UA},
    )
    assert key.status_code == 201, key.text
    key_data = key.json()["data"]
    (created,) = await audit_rows(conn, "api_key.created")
    assert created["actor_id"] == admin_user.id
    assert created["ip"] == "127.0.0.1"
    assert created["user_agent"] == USER_AGENT
    assert created["request_id"] == key.headers["x-request-id"]
    assert created["details"]["api_key_id"] == key_data["id"]
    assert created["details"]["scopes"] == ["products:write"]
    assert key_data["key"] not in str(created)  # the secret is never logged

    version = assigned.json()["data"]["version"]
    deleted = await client.delete(
        f"/api/v1/users/{customer.id}", headers={**admin, **UA, **if_match(version)}
    )
    assert deleted.status_code == 204, deleted.text
    (gone,) = await audit_rows(conn, "user.deleted", subject_id=customer.id)
    assert_entry(gone, deleted, actor_id=admin_user.id, subject_id=customer.id)


async def test_a_long_user_agent_is_cut_short(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    user = await make_user(conn, runtime)
    await client.post(
        "/api/v1/auth/login",
        json={"email": user.email, "password": user.password},
        headers={"User-Agent": "A" * 5000},
    )
    (row,) = await audit_rows(conn, "login", subject_id=user.id)
    assert row["user_agent"] == "A" * 300


async def test_the_audit_log_can_be_queried_by_staff(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    admin: dict[str, str],
    admin_user: TestUser,
    customer: TestUser,
) -> None:
    users = [await make_user(conn, runtime) for _ in range(3)]
    for user in users:
        response = await client.patch(
            f"/api/v1/users/{user.id}",
            json={"last_name": "Audited"},
            headers={**admin, **if_match(1)},
        )
        assert response.status_code == 200, response.text
    own = await client.patch("/api/v1/me", json={"first_name": "Self"}, headers=users[1].headers)
    assert own.status_code == 200

    # By action: newest first, in pages.
    first = await client.get(
        "/api/v1/audit-events", params={"action": "user.updated", "limit": 2}, headers=admin
    )
    assert first.status_code == 200, first.text
    page1 = first.json()
    assert page1["meta"]["count"] == 2
    cursor = page1["meta"]["next_cursor"]
    assert cursor
    second = await client.get(
        "/api/v1/audit-events",
        params={"action": "user.updated", "limit": 2, "cursor": cursor},
        headers=admin,
    )
    assert second.status_code == 200, second.text
    page2 = second.json()
    assert page2["meta"]["next_cursor"] is None
    entries = page1["data"] + page2["data"]
    assert len(entries) == 4
    ids = [entry["id"] for entry in entries]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 4
    assert {entry["action"] for entry in entries} == {"user.updated"}
    assert [entry["subject_id"] for entry in entries] == [
        str(users[1].id),
        str(users[2].id),
        str(users[1].id),
        str(users[0].id),
    ]
    assert entries[0]["actor_id"] == str(users[1].id)
    assert {entry["actor_id"] for entry in entries[1:]} == {str(admin_user.id)}
    assert entries[1]["details"] == {"fields": ["last_name"]}

    # By subject.
    by_subject = await client.get(
        "/api/v1/audit-events", params={"subject_id": str(users[1].id)}, headers=admin
    )
    assert by_subject.status_code == 200
    subject_entries = by_subject.json()["data"]
    assert len(subject_entries) == 2
    assert {entry["subject_id"] for entry in subject_entries} == {str(users[1].id)}

    # By actor.
    by_actor = await client.get(
        "/api/v1/audit-events",
        params={"actor_id": str(admin_user.id), "action": "user.updated"},
        headers=admin,
    )
    assert [entry["subject_id"] for entry in by_actor.json()["data"]] == [
        str(user.id) for user in reversed(users)
    ]

    # A cursor is bound to its filters.
    other = await client.get(
        "/api/v1/audit-events",
        params={"subject_id": str(users[1].id), "cursor": cursor},
        headers=admin,
    )
    assert other.status_code == 400
    assert error_code(other) == "INVALID_CURSOR"

    too_many = await client.get("/api/v1/audit-events", params={"limit": 1000}, headers=admin)
    assert too_many.status_code == 422
    unknown_filter = await client.get(
        "/api/v1/audit-events", params={"ip": "127.0.0.1"}, headers=admin
    )
    assert unknown_filter.status_code == 422

    refused = await client.get("/api/v1/audit-events", headers=customer.headers)
    assert refused.status_code == 403
    assert error_code(refused) == "FORBIDDEN"
    anonymous = await client.get("/api/v1/audit-events")
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE identity.audit_log SET action = 'x'",
        "UPDATE identity.audit_log SET outcome = 'success' WHERE false",
        "DELETE FROM identity.audit_log",
        "DELETE FROM identity.audit_log WHERE action = 'login'",
        "TRUNCATE identity.audit_log",
    ],
)
async def test_the_audit_log_is_append_only(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    statement: str,
) -> None:
    user = await make_user(conn, runtime)
    await client.post("/api/v1/auth/login", json={"email": user.email, "password": user.password})
    before = [dict(row) for row in await conn.fetch("SELECT * FROM identity.audit_log")]
    assert before

    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        async with conn.transaction():
            await conn.execute(statement)

    after = [dict(row) for row in await conn.fetch("SELECT * FROM identity.audit_log")]
    assert after == before
